"""A Python child of prod_children.py: child_work() x9; with argv[1] ==
"nest" it runs itself again as a grandchild (grandchild: child_work() x9
too).  Prints "<role> <pid> root <PYPROF_ROOT_PID as seen>"."""
import os
import subprocess
import sys


def child_work():
    pass


for _ in range(9):
    child_work()
role = "child" if sys.argv[1:] == ["nest"] else "grandchild"
print("%s %d root %s" % (role, os.getpid(), os.environ.get("PYPROF_ROOT_PID", "-")), flush=True)
if role == "child":
    subprocess.run([sys.executable, os.path.abspath(__file__)])
