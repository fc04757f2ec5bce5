"""Closures and decorators: stacked decorators built with functools.wraps,
closures capturing state, functools.partial, lambdas passed to sorted/map,
and a memoising decorator with its cache cleared between rounds.
"""
import functools
import os

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
N = max(500, int(302400 * SCALE))

CALLS = {"n": 0}


def counted(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        CALLS["n"] += 1
        return fn(*args, **kwargs)
    return wrapper


def checked(lo):
    def deco(fn):
        @functools.wraps(fn)
        def wrapper(x):
            if x < lo:
                raise ValueError(x)
            return fn(x)
        return wrapper
    return deco


def memo(fn):
    cache = {}

    @functools.wraps(fn)
    def wrapper(n):
        try:
            return cache[n]
        except KeyError:
            value = cache[n] = fn(n)
            return value
    wrapper.clear = cache.clear
    return wrapper


@counted
@checked(0)
def area(x):
    return x * x


@memo
def partitions(n):
    return _partitions(n, n)


def _partitions(n, k):
    if n == 0:
        return 1
    if n < 0 or k == 0:
        return 0
    return _partitions(n - k, k) + _partitions(n, k - 1)


def make_adder(k):
    def add(x):
        return x + k
    return add


def make_accumulator():
    total = 0

    def acc(x):
        nonlocal total
        total += x
        return total
    return acc


def compose(*fns):
    def composed(x):
        for f in fns:
            x = f(x)
        return x
    return composed


def main():
    adders = [make_adder(k) for k in range(10)]
    pipeline = compose(*adders, functools.partial(pow, exp=2), lambda v: v % 1009)
    acc = make_accumulator()
    total = 0
    for i in range(N):
        total += area(i % 50) + pipeline(i)
        acc(i % 7)
    items = sorted(range(N // 4), key=lambda v: (v * 7919) % 1013)
    total += sum(map(lambda v: v & 3, items))
    for _ in range(max(1, int(SCALE * 3))):
        partitions.clear()
        total += partitions(30)
    return total, acc(0), CALLS["n"]


if __name__ == "__main__":
    import _timing
    _timing.run(main)
