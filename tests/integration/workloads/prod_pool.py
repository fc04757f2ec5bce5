"""production.py pools: multiprocessing.Pool(3) maps square() over 30 items.

argv[1]: start method (fork, spawn, forkserver); argv[2]: how the pool ends:
  close  pool.close(); pool.join()  (workers leave through os._exit / exit)
  with   `with Pool(3) as pool:` whose __exit__ calls terminate(): SIGTERM
Prints "workers <pids>", "helpers <pids>" (forkserver / resource tracker
processes, which are Python children too) and "done <pid>:<items> ...".
"""
import collections
import multiprocessing
import os
import sys


def square(x):
    return os.getpid(), x * x


def helper_pids():
    pids = []
    try:
        from multiprocessing import resource_tracker
        p = resource_tracker._resource_tracker._pid
        if p:
            pids.append(p)
    except (ImportError, AttributeError):
        pass
    try:
        from multiprocessing import forkserver
        p = forkserver._forkserver._forkserver_pid
        if p:
            pids.append(p)
    except (ImportError, AttributeError):
        pass
    return pids


def main():
    method, how = sys.argv[1], sys.argv[2]
    ctx = multiprocessing.get_context(method)
    if how == "with":
        with ctx.Pool(3) as pool:
            workers = [p.pid for p in pool._pool]
            res = pool.map(square, range(30), chunksize=1)
    else:
        pool = ctx.Pool(3)
        workers = [p.pid for p in pool._pool]
        res = pool.map(square, range(30), chunksize=1)
        pool.close()
        pool.join()
    assert [r[1] for r in res] == [x * x for x in range(30)]
    per = collections.Counter(r[0] for r in res)
    print("workers", " ".join(map(str, workers)), flush=True)
    print("helpers", " ".join(map(str, helper_pids())), flush=True)
    print("done", " ".join("%d:%d" % kv for kv in sorted(per.items())), flush=True)


if __name__ == "__main__":
    main()
