"""Ends in the way named by argv[1]; marker() is called 7 times first.

  end    falls off the end of the script        (status 0)
  exit3  sys.exit(3)                             (status 3)
  raise  uncaught RuntimeError from a nested call (status 1, traceback)
  kbint  raise KeyboardInterrupt                 (killed by SIGINT on 3.8+)
"""
import sys


def marker(i):
    return i


def fail(mode):
    if mode == "raise":
        raise RuntimeError("boom from exits workload")
    if mode == "kbint":
        raise KeyboardInterrupt


def main(mode):
    for i in range(7):
        marker(i)
    print("exits workload:", mode)
    sys.stdout.flush()
    if mode == "exit3":
        sys.exit(3)
    fail(mode)


main(sys.argv[1])
