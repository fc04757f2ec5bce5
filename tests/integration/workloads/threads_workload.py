"""Multi-threaded workload for the threads scenario (counts checked by run.py).

Usage: threads_workload.py CTHREAD_SO|-

  work          4000 calls  (4 threading.Thread workers x 1000)
  work2         1000 calls  (2 _thread.start_new_thread workers x 500)
  early_handle   300 calls  (thread started first thing in this script)
  pre_handle     200 calls  (thread started by sitecustomize, before profiling)
  c_callback     250 calls  (two pthreads created in C: 150 + 100, via ctypes)
"""
import _thread
import queue
import sys
import threading

# --- a long-lived thread started early, fed by the main thread at the end ---

early_queue = queue.Queue()


def early_handle(item):
    return item + 1


def early_loop():
    while True:
        item = early_queue.get()
        if item is None:
            break
        early_handle(item)


early = threading.Thread(target=early_loop, name="early")
early.start()


# --- threading.Thread workers --------------------------------------------------

def work(i):
    return i * 2


def worker():
    for i in range(1000):
        work(i)


# --- _thread.start_new_thread workers ------------------------------------------

def work2(i):
    return i + 1


finished = threading.Semaphore(0)


def worker2():
    try:
        for i in range(500):
            work2(i)
    finally:
        finished.release()


# --- a callable for threads created in C ------------------------------------------

c_calls = []


def c_callback():
    c_calls.append(1)
    return None


def run_c_threads(path):
    import ctypes
    lib = ctypes.CDLL(path)
    lib.run_in_c_thread.argtypes = [ctypes.py_object, ctypes.c_int]
    lib.run_in_c_thread.restype = ctypes.c_int
    a = lib.run_in_c_thread(c_callback, 150)
    b = lib.run_in_c_thread(c_callback, 100)
    return a + b


def main():
    threads = [threading.Thread(target=worker, name="worker-%d" % i) for i in range(4)]
    for t in threads:
        t.start()
    _thread.start_new_thread(worker2, ())
    _thread.start_new_thread(worker2, ())
    for t in threads:
        t.join()
    finished.acquire()
    finished.acquire()

    for i in range(300):
        early_queue.put(i)
    early_queue.put(None)
    early.join()

    import sitecustomize
    pre = getattr(sitecustomize, "pre_started_before_main", False)
    if pre:
        for i in range(200):
            sitecustomize.pre_queue.put(i)
        sitecustomize.pre_queue.put(None)
        sitecustomize.pre_thread.join()

    c_done = run_c_threads(sys.argv[1]) if sys.argv[1] != "-" else "skipped"
    print("threads workload: pre-profiling thread %s, C calls %s (%d seen)"
          % ("ran" if pre else "missing", c_done, len(c_calls)))


main()
