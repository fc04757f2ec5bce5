"""Generator pipelines: chained generators, yield from, send(), and
generator expressions consumed by built-ins. Every next() resumes a frame
(PY_RESUME / PY_YIELD on 3.12+, call/return events on <= 3.11).
"""
import itertools
import os

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
N = max(1000, int(633900 * SCALE))


def numbers(n):
    i = 0
    while i < n:
        yield i
        i += 1


def evens(src):
    for x in src:
        if x % 2 == 0:
            yield x


def squares(src):
    for x in src:
        yield x * x


def windows(src, k):
    buf = []
    for x in src:
        buf.append(x)
        if len(buf) == k:
            yield tuple(buf)
            buf.pop(0)


def flatten(nested):
    for item in nested:
        if isinstance(item, (list, tuple)):
            yield from flatten(item)
        else:
            yield item


def running_mean():
    total = 0.0
    count = 0
    mean = None
    while True:
        value = yield mean
        total += value
        count += 1
        mean = total / count


def main():
    total = 0
    for w in windows(squares(evens(numbers(N))), 3):
        total += w[0] - w[2]
    nested = [[i, (i + 1, [i + 2, (i + 3,)])] for i in range(N // 10)]
    total += sum(flatten(nested))
    avg = running_mean()
    next(avg)
    m = 0.0
    for x in numbers(N // 2):
        m = avg.send(x)
    total += sum(x for x in itertools.islice(numbers(N), 0, None, 3))
    return total, m


if __name__ == "__main__":
    import _timing
    _timing.run(main)
