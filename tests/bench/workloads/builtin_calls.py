"""Many calls of built-in (C) functions and methods from Python: len,
isinstance, min/max, abs, divmod, list.append, dict.get, str methods,
math functions. Profilers see a C call/return pair for each.
"""
import math
import os

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
N = max(1000, int(310100 * SCALE))


def main():
    out = []
    seen = {}
    acc = 0
    words = ["alpha", "Beta", "gamma", "DELTA", "epsilon"]
    for i in range(N):
        w = words[i % 5]
        out.append(len(w))
        acc += abs(i - 5000) + min(i, 77) + max(i % 13, 3)
        q, r = divmod(i, 7)
        acc += q ^ r
        if isinstance(w, str):
            key = w.lower()
            seen[key] = seen.get(key, 0) + 1
        acc += int(math.sqrt(i)) + round(math.sin(i), 3).__int__()
        if w.startswith("e") or w.endswith("A"):
            acc += len(w.upper()) & 1
        if len(out) > 100:
            out.clear()
    return acc, sorted(seen.items())


if __name__ == "__main__":
    import _timing
    _timing.run(main)
