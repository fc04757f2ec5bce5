"""Recursion far deeper than the default limit allows: argv[1] frames, with
sys.setrecursionlimit raised to match.  Unprofiled, 3.11+ inlines these
Python-to-Python calls and needs no C stack for them; prints the depth."""
import sys

sys.setrecursionlimit(int(sys.argv[1]) + 1000)


def down(n):
    return 0 if n == 0 else down(n - 1) + 1


print(down(int(sys.argv[1])))
