"""(d) of scripts/accuracy: what is left per event after the bias, measured
in one process so that the VM's slow stretches hit both sides alike.

Run under libpyprof with PYPROF_START=paused and PYPROF_TOGGLE_SIGNAL=USR1:

    residual.py ROUNDS

Each round times every shape unprofiled (perf_counter), then resumes the
profiler (the toggle signal; the dumper thread flips it within the sleep),
runs every shape again, and pauses it. Prints ACC_TRUE_<shape> <seconds>,
the unprofiled times summed over the rounds; the profile holds the
profiled ones (the cumtime of each shape's root function).

Shapes:
  flat     a loop calling an empty function (the calibration's shape
           before the change to `nested`)
  nested   a loop calling a function that calls a one-line function twice
           (the calibration's shape)
  small    main() of tests/bench/workloads/small_funcs.py
  oo       main() of tests/bench/workloads/oo_methods.py (built-ins,
           properties, classes: its event count is approximate)
  builtin  a loop making four calls of built-ins (abs, len): two events each
  far      a loop making eight calls of a one-line function, all past byte
           offset 256 of its function: on sys.monitoring each such CALL
           event gets a newly allocated offset int (core/clock.h)
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "workloads"))
os.environ.setdefault("BENCH_SCALE", "0.25")
import oo_methods  # noqa: E402
import small_funcs  # noqa: E402

N = int(400000 * float(os.environ["BENCH_SCALE"]) / 0.25)


def empty():
    pass


def flat(n):
    for _ in range(n):
        empty()


def plus1(x):
    return x + 1


def pair():
    return plus1(1) + plus1(2)


def nested(n):
    for _ in range(n):
        pair()


def far(n):
    x = 0
    if n < 0:  # never runs: moves the loop's calls past offset 256
        x = x + 1; x = x + 2; x = x + 3; x = x + 4; x = x + 5; x = x + 6
        x = x + 7; x = x + 8; x = x + 9; x = x + 10; x = x + 11; x = x + 12
        x = x + 13; x = x + 14; x = x + 15; x = x + 16; x = x + 17; x = x + 18
        x = x + 19; x = x + 20; x = x + 21; x = x + 22; x = x + 23; x = x + 24
    for _ in range(n // 4):
        x = plus1(x); x = plus1(x); x = plus1(x); x = plus1(x)
        x = plus1(x); x = plus1(x); x = plus1(x); x = plus1(x)
    return x


def builtin(n):
    s = "abc"
    for i in range(n // 2):
        abs(i); len(s); abs(-i); len(s)


def small(n):
    small_funcs.main()


def oo(n):
    oo_methods.main()


SHAPES = {"flat": flat, "nested": nested, "small": small, "oo": oo, "far": far,
          "builtin": builtin}


def toggle():
    os.kill(os.getpid(), signal.SIGUSR1)
    time.sleep(0.05)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    true = dict.fromkeys(SHAPES, 0.0)
    for fn in SHAPES.values():  # warm up: specialisation, first calls
        fn(1000)
    for _ in range(rounds):
        for name, fn in SHAPES.items():
            t0 = time.perf_counter()
            fn(N)
            true[name] += time.perf_counter() - t0
        toggle()
        for fn in SHAPES.values():
            fn(N)
        toggle()
    for name, t in true.items():
        print("ACC_TRUE_%s %.9f" % (name, t))


if __name__ == "__main__":
    main()
