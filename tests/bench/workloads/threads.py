"""Eight threads doing Python work under the GIL, handing results over a
queue.Queue and sharing a lock-protected counter. Every thread is a
separate shadow stack for a profiler that covers threads.
"""
import os
import queue
import threading

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
THREADS = 8
PER_THREAD = max(100, int(7600 * SCALE))


class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.value = 0

    def add(self, k):
        with self.lock:
            self.value += k


def collatz_len(n):
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


def work(tid, counter, out):
    local = 0
    for i in range(PER_THREAD):
        local += collatz_len(tid * PER_THREAD + i + 1) % 7
        if i % 50 == 0:
            counter.add(1)
            out.put((tid, local))
    out.put((tid, local))


def main():
    counter = Counter()
    out = queue.Queue()
    threads = [threading.Thread(target=work, args=(t, counter, out)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = {}
    while not out.empty():
        tid, local = out.get()
        final[tid] = local
    return counter.value, sum(final.values())


if __name__ == "__main__":
    import _timing
    _timing.run(main)
