"""production.py snapshot_blocked: the main thread blocked for a while.

  sleep  time.sleep(3)
  cgil   sum(range(N)) with N chosen to take about 2 s: a C loop that
         never releases the GIL.  A ticker thread appends time.monotonic()
         every millisecond; the longest gap between two ticks ("gilgap") is
         how long the ticker could not get the GIL, which proves the call
         held it.

Prints "blocking <unix time>" just before, "unblocked <unix time> ..." after.
"""
import sys
import threading
import time


def sleep_part():
    print("blocking %.6f" % time.time(), flush=True)
    t0 = time.monotonic()
    time.sleep(3)
    slept = time.monotonic() - t0
    print("unblocked %.6f slept %.3f" % (time.time(), slept), flush=True)


ticks = []
ticking = True


def ticker():
    while ticking:
        ticks.append(time.monotonic())
        time.sleep(0.001)


def cgil_part():
    global ticking
    runs = []
    for _ in range(3):  # the quickest run: the least disturbed by other load
        t0 = time.perf_counter()
        sum(range(10 ** 7))
        runs.append(time.perf_counter() - t0)
    per_million = max(min(runs), 1e-3) / 10
    n = min(int(2.0 / per_million * 10 ** 6), 3 * 10 ** 9)  # stays below 2**63
    th = threading.Thread(target=ticker)
    th.start()
    time.sleep(0.05)
    start = time.monotonic()
    print("blocking %.6f" % time.time(), flush=True)
    sum(range(n))
    end = time.monotonic()
    print("unblocked %.6f" % time.time(), flush=True)
    time.sleep(0.01)
    ticking = False
    th.join()
    during = [t for t in ticks if start - 0.01 <= t <= end + 0.02]
    gaps = [b - a for a, b in zip(during, during[1:])]
    print("callsecs %.3f gilgap %.3f" % (end - start, max(gaps) if gaps else 0.0), flush=True)


def main():
    if sys.argv[1] == "sleep":
        sleep_part()
    else:
        cgil_part()


main()
