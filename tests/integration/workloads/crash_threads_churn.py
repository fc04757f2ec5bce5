"""For crash.py altstack: starts and joins argv[1] short threads one after
another, then prints "anon_rw <kB>": the size of the process's anonymous
read-write mappings once all those threads are gone (PROT_NONE
reservations such as malloc arenas' are left out: they cost nothing)."""
import sys
import threading


def work():
    return 1


for _ in range(int(sys.argv[1])):
    t = threading.Thread(target=work)
    t.start()
    t.join()
total = 0
with open("/proc/self/maps") as f:
    for line in f:
        fields = line.split()
        if len(fields) == 5 and fields[1].startswith("rw"):  # no path: anonymous
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            total += hi - lo
print("anon_rw %d" % (total // 1024), flush=True)
