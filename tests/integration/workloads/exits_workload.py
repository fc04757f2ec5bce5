"""Ends in the way named by argv[1]; marker() is called 7 times first.

  end    falls off the end of the script        (status 0)
  exit3  sys.exit(3)                             (status 3)
  raise  uncaught RuntimeError from a nested call (status 1, traceback)
  kbint  raise KeyboardInterrupt                 (killed by SIGINT on 3.8+)
  delexit  os._exit(5) from a __del__ that runs while the interpreter
         finalizes, after libpyprof's atexit callback (status 5)

argv[2], if given: as many more distinct functions, each called once
first, so that the final profile takes a while to write.
"""
import os
import sys

from prod_bigprof import make


class ExitWhenFreed:
    def __init__(self, exit_now):
        self.exit_now = exit_now

    def __del__(self):
        sys.stdout.flush()
        self.exit_now(5)


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
    if mode != "delexit":
        fail(mode)


if len(sys.argv) > 2:
    for f in make(int(sys.argv[2])):
        f()
if sys.argv[1] == "delexit":
    freed_at_exit = ExitWhenFreed(os._exit)
main(sys.argv[1])
