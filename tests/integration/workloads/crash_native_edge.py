"""Edge cases of native stacks for crash.py (`pyprof stacks --native`).

argv[1] == "blocked": a thread blocks every signal and then sleeps, so it
  can never answer the unwind signal.
argv[1] == "taken": the program has its own handler on SIGRTMAX-2 (the
  signal the library would use), which must stay the program's.

Prints "ready <tid of the blocking thread or 0>" once set up, sleeps 3 s in
every thread, then prints "handler calls N" and "done"."""
import signal
import sys
import threading
import time

MODE = sys.argv[1]
calls = 0


def on_sig(signum, frame):
    global calls
    calls += 1


def blocked(ready, tid):
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    tid.append(threading.get_native_id())
    ready.set()
    time.sleep(3)


def main():
    tid = []
    threads = []
    if MODE == "taken":
        signal.signal(signal.SIGRTMAX - 2, on_sig)
    elif MODE == "blocked":
        ready = threading.Event()
        threads.append(threading.Thread(target=blocked, args=(ready, tid)))
        threads[-1].start()
        ready.wait()
    print("ready %d" % (tid[0] if tid else 0), flush=True)
    time.sleep(3)
    for t in threads:
        t.join()
    print("handler calls %d" % calls, flush=True)
    print("done", flush=True)


main()
