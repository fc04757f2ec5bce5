"""production.py toggle (threads): 4 threads, three phases, marker files.

Each thread: work_a() x100, meets the others and the main thread at a
barrier, waits for argv[1]/go1; work_b() x100, barrier, waits for go2;
work_c() x100.  The main thread prints "phase a" and "phase b" when all
threads are waiting at the corresponding point, then "done" at the end.
"""
import os
import sys
import threading
import time

D = sys.argv[1]
N = 4
bar_a = threading.Barrier(N + 1)
bar_b = threading.Barrier(N + 1)


def work_a():
    pass


def work_b():
    pass


def work_c():
    pass


def wait_go(name):
    path = os.path.join(D, name)
    deadline = time.time() + 20
    while not os.path.exists(path) and time.time() < deadline:
        time.sleep(0.002)


def worker():
    for _ in range(100):
        work_a()
    bar_a.wait()
    wait_go("go1")
    for _ in range(100):
        work_b()
    bar_b.wait()
    wait_go("go2")
    for _ in range(100):
        work_c()


def main():
    threads = [threading.Thread(target=worker) for _ in range(N)]
    for t in threads:
        t.start()
    bar_a.wait()
    print("phase a", flush=True)
    bar_b.wait()
    print("phase b", flush=True)
    for t in threads:
        t.join()
    print("done", flush=True)


main()
