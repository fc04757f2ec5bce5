"""Runs a script under yappi the way `python -m cProfile -o OUT script.py`
runs it under cProfile: built-in functions profiled, wall-clock timer, the
script executed as __main__ with its own directory first on sys.path, and
the profile saved in pstats format at the end.

Unlike cProfile on <= 3.11, yappi profiles every thread (its default,
profile_threads=True); that is how yappi is normally used.

Usage: python yappi_run.py OUT.prof SCRIPT.py [ARGS...]
"""
import os
import runpy
import sys

import yappi


def main():
    if len(sys.argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    out, script = sys.argv[1], sys.argv[2]
    sys.argv = sys.argv[2:]
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    yappi.set_clock_type("wall")  # cProfile's default timer is wall time
    yappi.start(builtins=True)
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        yappi.stop()
        yappi.get_func_stats().save(out, type="pstat")
    return 0


if __name__ == "__main__":
    sys.exit(main())
