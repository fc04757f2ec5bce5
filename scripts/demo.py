"""A small program to profile: recursion, a generator, threads, built-ins.

    LD_PRELOAD=build/libpyprof.so python3 scripts/demo.py
"""
import json
import threading


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def words(text):
    for w in text.split():
        yield w.strip(".,").lower()


def count(text):
    counts = {}
    for w in words(text):
        counts[w] = counts.get(w, 0) + 1
    return counts


def worker(results, i):
    results[i] = fib(18)


def main():
    text = "The quick brown fox jumps over the lazy dog. " * 200
    counts = count(text)
    results = [None] * 4
    threads = [threading.Thread(target=worker, args=(results, i)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"fib18": results[0], "distinct_words": len(counts)}))


if __name__ == "__main__":
    main()
