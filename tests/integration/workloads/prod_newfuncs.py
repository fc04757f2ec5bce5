"""production.py snapshot_newfuncs: functions first seen while snapshots
are taken.

argv[1]: N, argv[2]: a file whose appearance ends the run.  Prints "ready",
then makes and calls N distinct functions fn0..fn<N-1> (one code object
each: own name and first line, so each is its own pstats row) as fast as it
can, prints "made <N>", and waits for the stop file.
"""
import os
import sys
import time


def template():
    return None


def make(i):
    c = template.__code__.replace(co_name="fn%d" % i, co_firstlineno=1000 + i)
    if hasattr(c, "co_qualname"):
        c = c.replace(co_qualname="fn%d" % i)
    return type(template)(c, globals(), "fn%d" % i)


def main():
    n, stop = int(sys.argv[1]), sys.argv[2]
    print("ready", flush=True)
    for i in range(n):
        make(i)()
    print("made %d" % n, flush=True)
    deadline = time.time() + 30
    while not os.path.exists(stop) and time.time() < deadline:
        time.sleep(0.005)


main()
