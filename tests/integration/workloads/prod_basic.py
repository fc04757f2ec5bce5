"""production.py badvalues / full_disk: deterministic output and status.

tick() x5, prints to stdout and stderr, the PYPROF_ROOT_PID it sees (an
inert library must not set it), and exits with status 3.  With
"rmtree DIR" it first removes DIR (full_disk: the output directory is gone).
"""
import os
import shutil
import sys


def tick(i):
    return i


for i in range(5):
    tick(i)
print("basic ran; PYPROF_ROOT_PID=%s" % os.environ.get("PYPROF_ROOT_PID", "-"), flush=True)
print("a line on stderr", file=sys.stderr, flush=True)
if sys.argv[1:2] == ["rmtree"]:
    shutil.rmtree(sys.argv[2])  # the directory PYPROF_OUT points into
sys.exit(3)
