/* For crash_stacks.py: spin_hold(ms) writes "holding\n" to fd 1, busy-waits
 * `ms` milliseconds, then writes "spun\n" (still inside the call).  Called
 * through ctypes.PyDLL, so the caller keeps the GIL the whole time. */
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int spin_hold(int ms) {
  ssize_t w = write(1, "holding\n", 8);
  (void)w;
  double end = now() + ms / 1000.0;
  volatile long n = 0;
  while (now() < end) n++;
  w = write(1, "spun\n", 5);
  (void)w;
  return (int)(n & 1);
}
