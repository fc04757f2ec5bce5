"""Exceptions: raised several frames deep and caught higher up, try/finally
and with-blocks that unwind, StopIteration ending iterators, and
EAFP-style dict/attribute look-ups. Exercises unwind/return-by-exception
events (PY_UNWIND, C_RAISE) in a profiler.
"""
import os

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
N = max(500, int(134900 * SCALE))


class AppError(Exception):
    def __init__(self, code):
        super().__init__(code)
        self.code = code


class Guard:
    def __init__(self, log):
        self.log = log

    def __enter__(self):
        self.log.append(1)
        return self

    def __exit__(self, exc_type, exc, tb):
        self.log.pop()
        return False


def level3(i):
    if i % 3 == 0:
        raise AppError(i % 11)
    return i


def level2(i, log):
    with Guard(log):
        return level3(i) + 1


def level1(i, log):
    try:
        return level2(i, log)
    finally:
        log.append(0)
        log.pop()


def lookup(d, key):
    try:
        return d[key]
    except KeyError:
        return -1


def to_int(s):
    try:
        return int(s)
    except ValueError:
        return 0


class Lazy:
    def __getattr__(self, name):
        raise AttributeError(name)


def main():
    log = []
    total = 0
    errors = 0
    table = {i: i * i for i in range(0, 100, 2)}
    lazy = Lazy()
    for i in range(N):
        try:
            total += level1(i, log)
        except AppError as e:
            errors += e.code
        total += lookup(table, i % 100)
        total += to_int("x" if i % 4 == 0 else str(i))
        total += getattr(lazy, "missing", 1)
        it = iter(range(i % 3))
        while True:
            try:
                total += next(it)
            except StopIteration:
                break
    return total, errors, len(log)


if __name__ == "__main__":
    import _timing
    _timing.run(main)
