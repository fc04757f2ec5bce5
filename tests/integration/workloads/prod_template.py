"""production.py template: tick() x3, prints "ready", makes sub/ and
os.chdir()s into it, prints "moved", then waits for argv[1] to appear."""
import os
import sys
import time


def tick(i):
    return i


for i in range(3):
    tick(i)
print("ready", flush=True)
os.mkdir("sub")
os.chdir("sub")
print("moved", flush=True)
deadline = time.time() + 20
while not os.path.exists(sys.argv[1]) and time.time() < deadline:
    time.sleep(0.005)
