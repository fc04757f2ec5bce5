"""Deep recursion: naive fib, recursive chains 90 and 900 frames deep, a
recursive tree build/walk, mutual recursion.

Stresses deep shadow stacks and recursive-call accounting (primitive vs all
calls, cumulative time counted only at the outermost activation).

Note: CPython 3.11+ keeps frames in 16 KiB data-stack chunks (~150 small
frames) and frees a chunk as soon as the stack shrinks below it, so a loop
that repeatedly descends past ~150 frames pays an mmap/munmap per descent
and its time is dominated by the kernel (and noisy). The 900-deep chain is
therefore entered rarely; the frequent recursion stays under ~100 frames.
"""
import os
import sys

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
REPS = max(1, int(180 * SCALE))


def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def descend(n):
    if n == 0:
        return 0
    return descend(n - 1) + 1


def is_even(n):
    return True if n == 0 else is_odd(n - 1)


def is_odd(n):
    return False if n == 0 else is_even(n - 1)


def build(depth):
    if depth == 0:
        return None
    return (build(depth - 1), depth, build(depth - 1))


def walk(node):
    if node is None:
        return 0
    left, value, right = node
    return walk(left) + value + walk(right)


def main():
    sys.setrecursionlimit(10000)
    total = 0
    for _ in range(REPS):
        total += fib(18)
        for _ in range(60):
            total += descend(90)
            total += is_even(80)
        total += descend(900)
        total += walk(build(10))
    return total


if __name__ == "__main__":
    import _timing
    _timing.run(main)
