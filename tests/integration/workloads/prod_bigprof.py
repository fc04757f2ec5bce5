"""production.py sigkill_during_dump and full_disk: a profile with many rows.

argv[1]: number of distinct functions N.  Makes N functions from one code
object (each with its own name and first line, so each is its own pstats
row), calls each once, prints "ready <N>", then waits for argv[2] to
appear (or, with "-" as argv[2], ends at once; argv[3], if given, is the
exit status).
"""
import os
import sys
import time


def template():
    return None


def make(n, like=template):
    """n functions fn0..fn<n-1>, copies of `like` (its file, its globals),
    each with its own name and first line (also used by exits_workload.py
    and crash_bigprof.py)."""
    code = like.__code__
    fns = []
    for i in range(n):
        c = code.replace(co_name="fn%d" % i, co_firstlineno=1000 + i)
        if hasattr(c, "co_qualname"):
            c = c.replace(co_qualname="fn%d" % i)
        fns.append(type(like)(c, like.__globals__, "fn%d" % i))
    return fns


def main():
    n = int(sys.argv[1])
    for f in make(n):
        f()
    print("ready %d" % n, flush=True)
    if sys.argv[2] != "-":
        deadline = time.time() + 30
        while not os.path.exists(sys.argv[2]) and time.time() < deadline:
            time.sleep(0.005)
    if len(sys.argv) > 3:
        sys.exit(int(sys.argv[3]))


if __name__ == "__main__":
    main()
