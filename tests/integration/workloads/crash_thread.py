"""A non-main thread crashes (ctypes.string_at(0)) once the main thread is
inside Thread.join() (checked with sys._current_frames, so the report must
show main in join).  Crashed thread's Python stack: string_at, crasher,
thread_main, run, _bootstrap_inner, _bootstrap."""
import ctypes
import sys
import threading
import time

MAIN = threading.main_thread().ident


def main_in_join():
    f = sys._current_frames().get(MAIN)
    while f is not None:
        if f.f_code.co_name == "join":
            return True
        f = f.f_back
    return False


def crasher():
    ctypes.string_at(0)


def thread_main():
    deadline = time.monotonic() + 5
    while not main_in_join() and time.monotonic() < deadline:
        time.sleep(0.001)
    crasher()


t = threading.Thread(target=thread_main)
t.start()
t.join()
print("survived", flush=True)
