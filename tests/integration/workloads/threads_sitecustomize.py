"""Copied by run.py as sitecustomize.py into a directory on PYTHONPATH.

site imports it during interpreter start-up, before the cpython.run_file
audit event at which libpyprof starts profiling, so the thread started here
exists (blocked in queue.get) before profiling begins.  threads_workload.py
feeds it PRE_ITEMS items; pre_handle must then be counted PRE_ITEMS times.
"""
import queue
import threading

pre_queue = queue.Queue()
pre_started_before_main = True


def pre_handle(item):
    return item * 3


def pre_loop():
    while True:
        item = pre_queue.get()
        if item is None:
            break
        pre_handle(item)


pre_thread = threading.Thread(target=pre_loop, name="pre-profiling", daemon=True)
pre_thread.start()
