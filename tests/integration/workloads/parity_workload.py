"""Deterministic single-threaded workload for the parity scenario.

run.py profiles this file twice, once with `python -m cProfile` and once with
libpyprof preloaded, and compares call counts row by row and edge by edge for
every function defined here.  Keep it deterministic: no time-dependent
branches, no __del__, no weakref callbacks, no threads, no randomness.
The section functions are called from main() only, so every edge is stable.
"""
import asyncio
import functools


# --- plain calls -----------------------------------------------------------

def leaf(x):
    return x + 1


def middle(x):
    return leaf(x) + leaf(x + 1)


def plain_calls():
    total = 0
    for i in range(50):
        total += middle(i)
    return total


# --- recursion -------------------------------------------------------------

def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def run_fib():
    return fib(15)              # 1973 calls of fib, 1 primitive


def is_even(n):
    if n == 0:
        return True
    return is_odd(n - 1)


def is_odd(n):
    if n == 0:
        return False
    return is_even(n - 1)


def run_mutual():
    return is_even(20)          # is_even: 11 calls, is_odd: 10 calls


# --- generators --------------------------------------------------------------

def count_up(n):
    i = 0
    while i < n:
        yield i
        i += 1


def squares(n):
    for i in range(n):
        yield i * i


def consume_generators():
    total = 0
    for v in count_up(5):                 # 6 resumptions
        total += v
    g = count_up(3)
    total += next(g) + next(g)            # 2 resumptions, then closed
    g.close()                             # close() resumes it once more
    total += len(list(squares(4)))        # 5 resumptions
    early = squares(10)
    for v in early:                       # 3 resumptions, then abandoned
        if v >= 4:
            break
    early.close()                         # + 1 (GeneratorExit)
    return total


def comprehensions():
    data = list(range(10))
    a = sum(x * x for x in data)              # generator expression
    b = [x + 1 for x in data]                 # list comprehension
    c = {x % 3 for x in data}                 # set comprehension
    d = {x: leaf(x) for x in data}            # dict comprehension calling leaf
    return a + len(b) + len(c) + len(d)


# --- asyncio -----------------------------------------------------------------

async def async_leaf(i):
    await asyncio.sleep(0)
    return i * 2


async def async_pair(i):
    a = await async_leaf(i)
    await asyncio.sleep(0)
    b = await async_leaf(i + 1)
    return a + b


async def async_main():
    results = await asyncio.gather(async_pair(1), async_pair(2), async_pair(3))
    extra = await async_pair(10)
    return sum(results) + extra


def run_asyncio():
    return asyncio.run(async_main())


# --- exceptions --------------------------------------------------------------

class WorkloadError(Exception):
    pass


def raise_deep(n):
    if n == 0:
        raise WorkloadError("bottom")
    return raise_deep(n - 1)


def catch_higher():
    caught = 0
    for i in range(5):
        try:
            raise_deep(3)                 # 4 frames unwound each time
        except WorkloadError:
            caught += 1
    for s in ("1", "x", "3", "y"):
        try:
            caught += int(s)              # builtin raising half of the time
        except ValueError:
            caught += 100
    return caught


# --- builtins and method descriptors ------------------------------------------

def builtins_and_methods():
    items = []
    for i in range(20):
        items.append(i)                   # list.append x20
    table = {"a": 1, "b": 2}
    hits = 0
    for k in ("a", "b", "c", "a"):
        hits += table.get(k, 0)           # dict.get x4
    words = ",".join(str(i) for i in range(3))    # str.join x1 (+ genexpr)
    n = len(items) + len(words)           # len x2
    ordered = sorted(items, key=lambda v: -v)     # sorted x1, lambda x20
    flags = sum(1 for v in items if isinstance(v, int))   # isinstance x20
    return n + ordered[0] + flags + hits + sum(items)


# --- attribute machinery, decorators, classes ---------------------------------

class Dynamic:
    def __getattr__(self, name):
        return len(name)


class Temperature:
    def __init__(self, celsius):
        self._c = celsius

    @property
    def fahrenheit(self):
        return self._c * 9 / 5 + 32


def logged(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)
    return wrapper


@logged
def decorated_add(a, b):
    return a + b


class Shape:
    count = 0

    def __init__(self, sides):
        self.sides = sides
        Shape.count += 1

    def describe(self):
        return self.helper() + self.sides

    def helper(self):
        return 1

    @classmethod
    def triangle(cls):
        return cls(3)

    @staticmethod
    def unit():
        return 1


def objects():
    dyn = Dynamic()
    total = dyn.alpha + dyn.beta + dyn.gamma          # __getattr__ x3
    t = Temperature(100)
    for _ in range(4):
        total += t.fahrenheit                         # property getter x4
    for i in range(6):
        total += decorated_add(i, i)                  # wrapper x6, decorated_add x6
    shapes = [Shape(4), Shape.triangle(), Shape(5)]   # __init__ x3, triangle x1
    for s in shapes:
        total += s.describe() + Shape.unit()          # describe x3, helper x3, unit x3
    return total


def functional():
    data = list(range(12))
    doubled = list(map(lambda x: x * 2, data))        # lambda x12
    evens = list(filter(lambda x: x % 2 == 0, data))  # lambda x12
    square = lambda x: x * x                          # noqa: E731
    return sum(doubled) + len(evens) + square(3)      # lambda x1


def main():
    out = []
    out.append(plain_calls())
    out.append(run_fib())
    out.append(run_mutual())
    out.append(consume_generators())
    out.append(comprehensions())
    out.append(run_asyncio())
    out.append(catch_higher())
    out.append(builtins_and_methods())
    out.append(objects())
    out.append(functional())
    print("parity workload:", out)


main()
