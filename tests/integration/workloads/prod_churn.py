"""Thread churn for production.py: argv[1] short threads, one at a time
(a thread-per-request service), each calling handle() -> leaf() x3.
Prints the resident memory growth over the churn (VmRSS, kB) measured
after a warm-up of 200 threads, then 'done'."""
import sys
import threading


def leaf(x):
    return x + 1


def handle(i):
    return leaf(i) + leaf(i) + leaf(i)


def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def churn(n):
    for i in range(n):
        t = threading.Thread(target=handle, args=(i,))
        t.start()
        t.join()


N = int(sys.argv[1])
churn(200)
before = rss_kb()
churn(N)
print("growth %d" % (rss_kb() - before), flush=True)
print("done", flush=True)
