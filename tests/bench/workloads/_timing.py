"""The measured section of every workload (not a workload itself: scripts/bench
skips names starting with '_').

run(main) times main() and prints the three lines scripts/bench and
scripts/accuracy read: BENCH_CHECK (main's result, so that runs can be
compared), BENCH_ELAPSED (wall seconds) and BENCH_CPU (process CPU seconds).
"""
import time


def run(main):
    c0, t0 = time.process_time(), time.perf_counter()
    check = main()
    t1, c1 = time.perf_counter(), time.process_time()
    print("BENCH_CHECK", check)
    print("BENCH_ELAPSED %.6f" % (t1 - t0))
    print("BENCH_CPU %.6f" % (c1 - c0))
