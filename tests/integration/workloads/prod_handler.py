"""production.py program_handler: the program's own SIGUSR2 handler.

  after   installs a handler with signal.signal once running
  before  sitecustomize (prod_handler_site.py) installed it before the
          profiler started; this script only waits for it to run
Prints "ready", then "handled by <who>" from the handler, then "done".
"""
import os
import signal
import sys
import time

got = []


def on_usr2(signum, frame):
    os.write(1, b"handled by program\n")  # not print: may interrupt one
    got.append(signum)


def wait_for_handler():
    deadline = time.time() + 10
    while time.time() < deadline:
        if got:
            return True
        if sys.argv[1] == "before":
            import sitecustomize
            if sitecustomize.got:
                return True
        time.sleep(0.005)
    return False


def main():
    if sys.argv[1] == "after":
        signal.signal(signal.SIGUSR2, on_usr2)
    print("ready", flush=True)
    print("done" if wait_for_handler() else "handler never ran", flush=True)


main()
