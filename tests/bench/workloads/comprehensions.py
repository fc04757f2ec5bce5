"""Comprehension-heavy code: nested list/dict/set comprehensions and
generator expressions over built-ins. On <= 3.11 every comprehension is a
function call; 3.12 inlines list/dict/set comprehensions (PEP 709), so the
event mix differs between versions.
"""
import os

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
ROUNDS = max(1, int(320 * SCALE))


def matrix(n):
    return [[(i * j) % 17 for j in range(n)] for i in range(n)]


def transpose(m):
    return [list(row) for row in zip(*m)]


def multiply(a, b):
    bt = transpose(b)
    return [[sum(x * y for x, y in zip(row, col)) for col in bt] for row in a]


def histogram(values):
    return {v: sum(1 for w in values if w == v) for v in set(values)}


def main():
    total = 0
    for r in range(ROUNDS):
        a = matrix(24 + r % 3)
        p = multiply(a, a)
        flat = [x for row in p for x in row if x % 2]
        total += sum(flat) % 100003
        total += len({x % 97 for x in flat})
        h = histogram([x % 13 for x in flat[:400]])
        total += max(h.values())
        words = ["w%d" % (i % 50) for i in range(300)]
        index = {w: [i for i, v in enumerate(words) if v == w] for w in set(words[:40])}
        total += sum(len(v) for v in index.values())
    return total


if __name__ == "__main__":
    import _timing
    _timing.run(main)
