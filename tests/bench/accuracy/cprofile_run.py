"""Runs a script under cProfile with a chosen timer, as
`python -m cProfile -o OUT script.py` does (the script as __main__, its
directory first on sys.path), and saves the profile.

Usage: python cprofile_run.py OUT.prof wall|cpu SCRIPT.py [ARGS...]

wall is cProfile's default timer (perf_counter, in C); cpu passes
time.thread_time, which cProfile then calls from Python at every event.
"""
import cProfile
import os
import runpy
import sys
import time


def main():
    out, timer, script = sys.argv[1], sys.argv[2], sys.argv[3]
    sys.argv = sys.argv[3:]
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    prof = cProfile.Profile(time.thread_time) if timer == "cpu" else cProfile.Profile()
    prof.enable()
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        prof.disable()
        prof.dump_stats(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
