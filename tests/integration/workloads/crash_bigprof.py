"""crash.py sigint_in_report: calls argv[1] distinct functions (defined in
this file, so that the crash profile takes a while to write), prints
"crashing", then faults in C (ctypes.string_at(0))."""
import ctypes
import sys

from prod_bigprof import make


def template():
    return None


for f in make(int(sys.argv[1]), template):
    f()
print("crashing", flush=True)
ctypes.string_at(0)
