"""production.py toggle: three phases separated by marker files.

phase_a() x11, wait_for(): print "phase a", wait for argv[1]/go1;
phase_b() x22, wait_for(): print "phase b", wait for go2;
phase_c() x33, print "done".
The test resumes collection before go1 and pauses it before go2, so only
phase_b (22) and the wait_for(go2) call (1) are counted.
"""
import os
import sys
import time

D = sys.argv[1]


def phase_a():
    pass


def phase_b():
    pass


def phase_c():
    pass


def wait_for(name, line):
    print(line, flush=True)  # here, so that wait_for is running when the test acts
    path = os.path.join(D, name)
    deadline = time.time() + 20
    while not os.path.exists(path):
        if time.time() > deadline:
            print("gave up waiting for", name, flush=True)
            sys.exit(9)
        time.sleep(0.002)


def main():
    for _ in range(11):
        phase_a()
    wait_for("go1", "phase a")
    for _ in range(22):
        phase_b()
    wait_for("go2", "phase b")
    for _ in range(33):
        phase_c()
    print("done", flush=True)


main()
