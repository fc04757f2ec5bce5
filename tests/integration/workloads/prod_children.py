"""production.py children: a parent that starts other processes.

parent_work() x3; subprocess.run([python, prod_child.py, "nest"]) (a Python
child that itself starts a Python grandchild); sh -c 'exit 3'; a fork child
calling forked_work() x4 then os._exit(0).  Prints "parent <pid>",
"sh status <n>", "fork <pid>", and the children print their own lines.
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def parent_work():
    pass


def forked_work():
    pass


def main():
    print("parent %d" % os.getpid(), flush=True)
    for _ in range(3):
        parent_work()
    r = subprocess.run([sys.executable, os.path.join(HERE, "prod_child.py"), "nest"])
    print("child status %d" % r.returncode, flush=True)
    r = subprocess.run(["sh", "-c", "exit 3"])
    print("sh status %d" % r.returncode, flush=True)
    pid = os.fork()
    if pid == 0:
        for _ in range(4):
            forked_work()
        os._exit(0)
    _, st = os.waitpid(pid, 0)
    print("fork %d status %d" % (pid, (os.WEXITSTATUS(st) if os.WIFEXITED(st) else -os.WTERMSIG(st))), flush=True)


main()
