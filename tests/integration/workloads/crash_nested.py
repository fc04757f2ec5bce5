"""Crash workload for crash.py: helper() x3, then outer -> middle -> leaf,
and leaf dies as MODE says (argv[1]):

  segv     ctypes.string_at(0): SIGSEGV at address 0 inside _ctypes/libc
  abort    libc abort() through ctypes: SIGABRT
  sleep    prints "ready" and sleeps 30 s in leaf (the test sends a signal)

Options after MODE:
  --chdir DIR        os.chdir(DIR) first (a relative PYPROF_OUT must not move)
  --faulthandler     faulthandler.enable() now, i.e. after profiling started

outer() is called from <module> directly, so the crashing thread's Python
stack is exactly [string_at,] leaf, middle, outer, <module>.
"""
import ctypes
import os
import sys
import time


def helper():
    return 1


def leaf(mode):
    if mode == "segv":
        ctypes.string_at(0)
    elif mode == "abort":
        ctypes.CDLL(None).abort()
    elif mode == "sleep":
        print("ready", flush=True)
        time.sleep(30)
    print("leaf survived %s" % mode, flush=True)


def middle(mode):
    leaf(mode)


def outer(mode):
    middle(mode)


MODE = sys.argv[1]
ARGS = sys.argv[2:]
if "--chdir" in ARGS:
    os.chdir(ARGS[ARGS.index("--chdir") + 1])
if "--faulthandler" in ARGS:
    import faulthandler
    faulthandler.enable()
for _ in range(3):
    helper()
outer(MODE)
print("survived", flush=True)
