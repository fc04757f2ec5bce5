"""Small functions in tight loops: the worst case for a deterministic
profiler, where each call does almost nothing and per-event cost dominates.
"""
import os

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
N = max(1000, int(2215300 * SCALE))


def inc(x):
    return x + 1


def double(x):
    return x * 2


def is_odd(x):
    return x & 1


def clamp(x, lo, hi):
    return lo if x < lo else hi if x > hi else x


def step(x):
    return clamp(double(inc(x)), 0, 1000) if is_odd(x) else inc(x)


def main():
    acc = 0
    for i in range(N):
        acc += step(i)
        acc &= 0xFFFFFF
    return acc


if __name__ == "__main__":
    import _timing
    _timing.run(main)
