"""Snapshot storm for the sanitizer runs (tests/sanitize/run.py).

Worker threads make nested and recursive calls while the main thread asks
for snapshots with the snapshot signal (SIGUSR2, libpyprof's default) and
short-lived threads come and go. Under ASan/TSan this drives the parts of
the library where threads meet: the snapshot protocol of core/prof.c (a
dumper thread copying tables that their owners are writing), thread
creation and retirement while a snapshot walks the thread list, and the
final dump at exit.

Exact counts, checked by run.py in the final profile:
  leaf   WORKERS * ROUNDS * 3 + SHORT * 10
  rec    WORKERS * ROUNDS * 3   (rec(2) -> rec(1) -> rec(0): 1 primitive)
  burst  SHORT

With STORM_STACKS=1 (the ASan and TSan runs; not under valgrind, whose
signal emulation reports errors in futex waits that another thread's
signal interrupted), live-stack requests (sigqueue of SIGUSR2 with
libpyprof's native-stacks value, as `pyprof stacks --native` sends) go
out in the middle of the storm too, so the stack reports (interpreter frames read with
process_vm_readv, every thread unwinding itself in a signal handler) run
while threads call, start and end; run.py checks the stacks file.

Signals are only sent when the process catches SIGUSR2 (libpyprof installs
its handler only if the disposition was the default): without the library,
or with a library that has no snapshot signal, the workload still runs and
says so.
"""
import ctypes
import os
import signal
import sys
import threading
import time

WORKERS = 4
ROUNDS = 3000
SHORT = 20
SNAPSHOTS = 25
STACKS_AT = (5, 15)             # rounds of the storm that ask for stacks
STACKS_NATIVE = 0x7079736e      # PYPROF_STACKS_NATIVE in preload/preload.h


class SigVal(ctypes.Union):
    _fields_ = [("sival_int", ctypes.c_int), ("sival_ptr", ctypes.c_void_p)]


def ask_stacks():
    """sigqueue(2) of SIGUSR2 with the native-stacks value."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.sigqueue.argtypes = [ctypes.c_int, ctypes.c_int, SigVal]
    return libc.sigqueue(os.getpid(), signal.SIGUSR2, SigVal(sival_int=STACKS_NATIVE)) == 0


def leaf(i):
    return i + 1


def rec(n):
    if n == 0:
        return leaf(n)
    return rec(n - 1) + 1


def top(i):
    return leaf(i) + leaf(i + 1) + rec(2)


def worker(go):
    go.wait()
    for i in range(ROUNDS):
        top(i)


def burst():
    for i in range(10):
        leaf(i)


def caught(sig):
    """True when the process has a handler for `sig` (SigCgt)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    except OSError:
        pass
    return False


def main():
    can_signal = caught(signal.SIGUSR2)
    go = threading.Event()
    workers = [threading.Thread(target=worker, args=(go,)) for _ in range(WORKERS)]
    for t in workers:
        t.start()
    go.set()
    sent = stacks = 0
    ask = os.environ.get("STORM_STACKS") == "1"
    short = []
    for k in range(max(SNAPSHOTS, SHORT)):
        if k < SHORT:
            t = threading.Thread(target=burst)
            t.start()
            short.append(t)
        if can_signal and k < SNAPSHOTS:
            os.kill(os.getpid(), signal.SIGUSR2)
            sent += 1
        if can_signal and ask and k in STACKS_AT and ask_stacks():
            stacks += 1
        time.sleep(0.005)
    for t in workers + short:
        t.join()
    print("storm workload: %d workers x %d rounds, %d short threads, %d snapshot signals, "
          "%d stacks requests%s"
          % (WORKERS, ROUNDS, SHORT, sent, stacks,
             "" if can_signal else " (SIGUSR2 not caught: no snapshots)"))
    sys.stdout.flush()


main()
