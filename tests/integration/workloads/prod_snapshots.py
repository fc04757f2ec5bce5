"""production.py snapshots: 8 busy threads and a busy main thread.

argv[1]: a file whose appearance ends the run.  Prints "ready" once every
thread runs, then at the end "total <calls of work> main <calls of
main_work>", the exact numbers the final profile must hold.
"""
import os
import sys
import threading
import time

STOP = sys.argv[1]
NTHREADS = 8
counts = [0] * NTHREADS
running = threading.Barrier(NTHREADS + 1)
stop = False


def work(x):
    return x + 1


def worker(i):
    running.wait()
    n = 0
    while not stop:
        work(n)
        n += 1
    counts[i] = n


def main_work(x):
    return x * 2


def main():
    global stop
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(NTHREADS)]
    for t in threads:
        t.start()
    running.wait()
    print("ready", flush=True)
    m = 0
    deadline = time.time() + 50
    while not os.path.exists(STOP) and time.time() < deadline:
        for _ in range(200):
            main_work(m)
            m += 1
    stop = True
    for t in threads:
        t.join()
    print("total %d main %d" % (sum(counts), m), flush=True)


main()
