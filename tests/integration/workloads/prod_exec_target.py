"""The program prod_fork.py (exec) replaces itself with: target() x6."""
import os


def target():
    pass


for _ in range(6):
    target()
print("exec target %d" % os.getpid(), flush=True)
