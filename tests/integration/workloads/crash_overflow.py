"""Native stack overflow for crash.py: go() calls recurse() of the C library
argv[1] (crash_rec.c, compiled at test time), which recurses until the stack
ends.  argv[2] == "thread": go() runs in a threading.Thread, main joins."""
import ctypes
import sys
import threading

LIB = ctypes.CDLL(sys.argv[1])


def go():
    LIB.recurse(0)


if len(sys.argv) > 2 and sys.argv[2] == "thread":
    t = threading.Thread(target=go)
    t.start()
    t.join()
else:
    go()
print("survived", flush=True)
