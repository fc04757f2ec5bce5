"""C code calling back into Python: sorted() with key functions and
functools.cmp_to_key, heapq over objects with __lt__, bisect, map/filter
with lambdas, and min/max with key=. Each callback is a Python call made
from inside a C call.
"""
import bisect
import functools
import heapq
import os
import random

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
N = max(500, int(43600 * SCALE))


class Job:
    __slots__ = ("prio", "name")

    def __init__(self, prio, name):
        self.prio = prio
        self.name = name

    def __lt__(self, other):
        return (self.prio, self.name) < (other.prio, other.name)


def compare(a, b):
    if a[1] != b[1]:
        return -1 if a[1] < b[1] else 1
    return (a[0] > b[0]) - (a[0] < b[0])


def main():
    rng = random.Random(99)
    data = [(rng.randint(0, 10 ** 6), rng.randint(0, 50)) for _ in range(N)]
    total = 0
    by_key = sorted(data, key=lambda t: (t[1], -t[0]))
    by_cmp = sorted(data, key=functools.cmp_to_key(compare))
    total += by_key[0][0] + by_cmp[-1][0]
    heap = []
    for i, (a, b) in enumerate(data):
        heapq.heappush(heap, Job(b, "job%d" % (a % 1000)))
        if len(heap) > 200:
            total += heapq.heappop(heap).prio
    keys = []
    for a, _ in data:
        bisect.insort(keys, a % 5000)
    total += sum(filter(lambda v: v % 3 == 0, map(lambda v: v * 2, keys)))
    total += max(data, key=lambda t: t[0] ^ t[1])[0]
    total += min(data, key=lambda t: (t[1] * 31 + t[0]) % 1009)[0]
    return total


if __name__ == "__main__":
    import _timing
    _timing.run(main)
