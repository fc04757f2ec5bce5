/*
 * clock.c -- timer selection and TSC frequency measurement.
 */
#include "clock.h"

#include <string.h>

pyprof_clock pyprof_clk = {.source = PYPROF_SRC_MONOTONIC, .shared = 1};

static const char *const timer_names[] = {"wall", "monotonic", "cpu",
                                          "process"};

int pyprof_timer_parse(const char *s, pyprof_timer *out) {
  for (int i = 0; i < 4; i++) {
    if (strcmp(s, timer_names[i]) == 0) {
      *out = (pyprof_timer)i;
      return 0;
    }
  }
  return -1;
}

const char *pyprof_timer_name(pyprof_timer t) {
  return (unsigned)t < 4 ? timer_names[t] : "?";
}

const char *pyprof_clock_source_name(void) {
  if (pyprof_clk.cpu_hybrid)
    return "CLOCK_THREAD_CPUTIME_ID synced across gaps over 100us, tsc between";
  switch (pyprof_clk.source) {
  case PYPROF_SRC_TSC: return "tsc";
  case PYPROF_SRC_MONOTONIC: return "CLOCK_MONOTONIC";
  case PYPROF_SRC_THREAD_CPU: return "CLOCK_THREAD_CPUTIME_ID";
  default: return "CLOCK_PROCESS_CPUTIME_ID";
  }
}

int pyprof_tsc_invariant(void) {
#if defined(__x86_64__) || defined(__i386__)
  uint32_t a, b, c, d;
  __asm__ __volatile__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d)
                       : "a"(0x80000000u), "c"(0));
  if (a < 0x80000007u) return 0;
  __asm__ __volatile__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d)
                       : "a"(0x80000007u), "c"(0));
  return (d >> 8) & 1;
#else
  return 0;
#endif
}

void pyprof_clock_init(pyprof_timer timer) {
  pyprof_clk.timer = timer;
  pyprof_clk.shared = 1;
  pyprof_clk.two_reads = 1;
  switch (timer) {
  case PYPROF_TIMER_WALL:
    pyprof_clk.source =
        pyprof_tsc_invariant() ? PYPROF_SRC_TSC : PYPROF_SRC_MONOTONIC;
    break;
  case PYPROF_TIMER_MONOTONIC:
    pyprof_clk.source = PYPROF_SRC_MONOTONIC;
    break;
  case PYPROF_TIMER_CPU:
    pyprof_clk.shared = 0;
    if (pyprof_tsc_invariant()) {
      /* TSC between events, the thread CPU clock across long gaps:
       * pyprof_clock_ready() switches cpu_hybrid on. Ticks are ns. */
      pyprof_clk.source = PYPROF_SRC_TSC;
    } else {
      pyprof_clk.source = PYPROF_SRC_THREAD_CPU;
      pyprof_clk.two_reads = 0; /* a system call: read once per event */
    }
    break;
  case PYPROF_TIMER_PROCESS:
    pyprof_clk.source = PYPROF_SRC_PROCESS_CPU;
    pyprof_clk.two_reads = 0;
    break;
  }
  clock_gettime(CLOCK_MONOTONIC_RAW, &pyprof_clk.mono0);
  pyprof_clk.tsc0 = pyprof_clock_read();
}

void pyprof_clock_ready(void) {
  if (pyprof_clk.timer != PYPROF_TIMER_CPU || pyprof_clk.source != PYPROF_SRC_TSC)
    return;
  double tick = pyprof_clock_tick_seconds();
  pyprof_clk.ns_per_tick = tick * 1e9;
  pyprof_clk.sync_ticks = (uint64_t)(100e-6 / tick); /* 100 us */
  pyprof_clk.cpu_hybrid = 1;
}

/* Async-signal-safe: clock_gettime and arithmetic only. */
double pyprof_clock_tick_seconds(void) {
  if (pyprof_clk.cpu_hybrid) return 1e-9; /* virtual time is in ns */
  if (pyprof_clk.source != PYPROF_SRC_TSC) return 1e-9;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC_RAW, &now);
  uint64_t tsc = pyprof__rdtsc();
  double secs = (double)(now.tv_sec - pyprof_clk.mono0.tv_sec) +
                (double)(now.tv_nsec - pyprof_clk.mono0.tv_nsec) * 1e-9;
  uint64_t ticks = tsc - pyprof_clk.tsc0;
  if (secs < 1e-3 || ticks == 0) {
    /* Too short to measure well: wait a little (only ever at the very
     * start of a process, and never in a signal handler's first dump of a
     * run longer than a millisecond). */
    struct timespec d = {0, 2000000};
    nanosleep(&d, NULL);
    return pyprof_clock_tick_seconds();
  }
  return secs / (double)ticks;
}

double pyprof_clock_resolution(void) {
  struct timespec r;
  switch (pyprof_clk.source) {
  case PYPROF_SRC_TSC: return pyprof_clock_tick_seconds();
  case PYPROF_SRC_MONOTONIC: clock_getres(CLOCK_MONOTONIC, &r); break;
  case PYPROF_SRC_THREAD_CPU: clock_getres(CLOCK_THREAD_CPUTIME_ID, &r); break;
  default: clock_getres(CLOCK_PROCESS_CPUTIME_ID, &r); break;
  }
  return (double)r.tv_sec + (double)r.tv_nsec * 1e-9;
}
