"""Target (c) of scripts/accuracy: one function that sleeps 0.3 s.

    python sleep.py           calls sleeper() once (profiled runs)
    python sleep.py time      no profiler: prints the wall and thread CPU
                              time of that call (ACC_WALL, ACC_CPU)
"""
import sys
import time


def sleeper():
    time.sleep(0.3)


def main():
    if sys.argv[1:] == ["time"]:
        w0, c0 = time.perf_counter(), time.thread_time()
        sleeper()
        c1, w1 = time.thread_time(), time.perf_counter()
        print("ACC_WALL %.9e" % (w1 - w0))
        print("ACC_CPU %.9e" % (c1 - c0))
    else:
        sleeper()
    return 0


if __name__ == "__main__":
    sys.exit(main())
