"""production.py term: marker() x7, then sleeper() prints "ready" and sleeps.

  plain    no handler: the test's signal ends it
  handler  a SIGTERM handler that prints "handler ran" and sys.exit(5)s
  ignore   a SIGTERM handler that only notes it; the program prints
           "survived" and exits 0 (a handler the program installed is left
           alone)
"""
import os
import signal
import sys
import time

mode = sys.argv[1]
noted = []


def marker(i):
    return i


def on_term(signum, frame):
    os.write(1, b"handler ran\n")  # not print: may interrupt one
    if mode == "handler":
        sys.exit(5)
    noted.append(signum)


def sleeper():
    print("ready", flush=True)  # here, so that sleeper is running when the test acts
    deadline = time.time() + 20
    while time.time() < deadline and not noted:
        time.sleep(0.01)


def main():
    if mode != "plain":
        signal.signal(signal.SIGTERM, on_term)
    for i in range(7):
        marker(i)
    sleeper()
    print("survived" if noted else "timeout", flush=True)


main()
