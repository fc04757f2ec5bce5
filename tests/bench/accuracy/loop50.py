"""The 50-iteration loop function of scripts/accuracy (target a).

    python loop50.py run N    calls loop50() N times from drive() (what the
                              profilers measure; nothing printed but a check)
    python loop50.py time N   no profiler: times the same driver and the
                              reference loops, prints ACC_* lines (seconds
                              per call, the median of paired blocks)

The "true cost" of one loop50() call is what the driver's loop pays for the
statement `f()` beyond an iteration with no statement at all:

    (T(drive, n) - T(drive_nothing, n)) / n

i.e. the time the program would save without the call. It includes the
call itself (argument-less call, frame set-up, return), which a profiler
has to charge to somebody; ACC_CALL reports that part on its own
((T(drive_empty) - T(drive_nothing)) / n with an empty function), so a
reader can see how much of the target it is.
"""
import statistics
import sys
import time


def loop50():
    s = 0
    for i in range(50):
        s += i
    return s


def empty():
    return 0


def drive(n):
    f = loop50
    for _ in range(n):
        f()


def drive_empty(n):
    f = empty
    for _ in range(n):
        f()


def drive_nothing(n):
    f = loop50  # noqa: F841 - same locals as drive()
    for _ in range(n):
        pass


def block(fn, n):
    t0 = time.perf_counter()
    fn(n)
    return time.perf_counter() - t0


def main():
    mode, n = sys.argv[1], int(sys.argv[2])
    if mode == "run":
        drive(n)
        print("ACC_CHECK", loop50())
        return 0
    # Warm up (the specialising interpreter settles after a few thousand
    # executions), then paired blocks in alternating order.
    for fn in (drive, drive_empty, drive_nothing):
        fn(5000)
    reps, m = 15, max(1000, n // 15)
    loop, call = [], []
    for r in range(reps):
        order = (drive, drive_empty, drive_nothing)
        if r % 2:
            order = order[::-1]
        t = {fn: block(fn, m) for fn in order}
        loop.append((t[drive] - t[drive_nothing]) / m)
        call.append((t[drive_empty] - t[drive_nothing]) / m)
    print("ACC_TRUE %.9e" % statistics.median(loop))
    print("ACC_CALL %.9e" % statistics.median(call))
    return 0


if __name__ == "__main__":
    sys.exit(main())
