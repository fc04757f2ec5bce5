"""production.py fork: os.fork(), os._exit(), os.execv().

  main    pre() x3, fork in the main thread; child: cf() x7 in child_part,
          os._exit(0); parent: pf() x11, waits
  thread  pre() x3; a thread runs forker(), which forks; child: tf() x5,
          os._exit(0); parent (in forker): pf() x11, waits
  exit4   pre() x3, fork; child: cf() x7, sys.exit(4) (normal interpreter
          exit in the child); parent: pf() x11
  snapchild  pre() x3, fork; child: cf() x7, prints "child ready <pid>",
          waits in child_wait() until the test signals it (SIGUSR2 for a
          snapshot, then SIGTERM); parent: pf() x11, waits
  nothing os._exit(3) at once (the test runs it paused: nothing profiled)
  exec    pre() x4, then os.execv(python, prod_exec_target.py)
The parent prints "child <pid> status <exit status>".
"""
import os
import sys
import threading
import time


def pre():
    pass


def cf():
    pass


def tf():
    pass


def pf():
    pass


def child_wait():
    print("child ready %d" % os.getpid(), flush=True)  # child_wait is running now
    deadline = time.time() + 20
    while time.time() < deadline:
        time.sleep(0.005)


def child_part(how):
    for _ in range(7):
        cf()
    if how == "snapchild":
        child_wait()
    if how == "exit4":
        sys.exit(4)
    os._exit(0)


def parent_part(pid):
    for _ in range(11):
        pf()
    _, st = os.waitpid(pid, 0)
    print("child %d status %d" % (pid, (os.WEXITSTATUS(st) if os.WIFEXITED(st) else -os.WTERMSIG(st))), flush=True)


def forker():
    pid = os.fork()
    if pid == 0:
        for _ in range(5):
            tf()
        os._exit(0)
    parent_part(pid)


def main(mode):
    if mode == "nothing":
        os._exit(3)
    if mode in ("exec", "execve"):
        for _ in range(4):
            pre()
        print("exec from %d" % os.getpid(), flush=True)
        target = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prod_exec_target.py")
        if mode == "exec":
            os.execv(sys.executable, [sys.executable, target])
        # an environment of its own, copied from os.environ
        os.execve(sys.executable, [sys.executable, target], dict(os.environ, PROD_EXECVE="1"))
    for _ in range(3):
        pre()
    if mode == "thread":
        th = threading.Thread(target=forker)
        th.start()
        th.join()
        return
    pid = os.fork()
    if pid == 0:
        child_part(mode)
    parent_part(pid)


main(sys.argv[1])
