"""Live-stacks workload for crash.py: argv[1] is crash_spin.so, argv[2] the
time in ms the main thread holds the GIL in C.

  sleeper  time.sleep (GIL released)
  spinner  a pure-Python busy loop (no calls) until main is done
  blocker  libc usleep through ctypes.CDLL (GIL released)
  main -> holder: spin_hold() through ctypes.PyDLL (GIL held), which writes
           "holding" when it starts and "spun" just before it returns.
All threads outlive the GIL hold by 0.5 s; the program ends normally."""
import ctypes
import sys
import threading
import time

spin_hold = ctypes.PyDLL(sys.argv[1]).spin_hold
spin_hold.argtypes = [ctypes.c_int]
usleep = ctypes.CDLL(None).usleep
usleep.argtypes = [ctypes.c_uint]
HOLD_MS = int(sys.argv[2])
REST = HOLD_MS / 1000.0 + 0.5
DONE = False
ready = threading.Barrier(4)


def sleeper():
    ready.wait()
    time.sleep(REST)


def spinner():
    ready.wait()
    n = 0
    while not DONE:
        n += 1


def blocker():
    ready.wait()
    usleep(int(REST * 1e6))


def holder():
    spin_hold(HOLD_MS)


def main():
    global DONE
    threads = [threading.Thread(target=f) for f in (sleeper, spinner, blocker)]
    for t in threads:
        t.start()
    ready.wait()
    time.sleep(0.2)
    holder()
    DONE = True
    for t in threads:
        t.join()
    print("done", flush=True)


main()
