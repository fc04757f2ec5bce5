/*
 * clock.h -- timers and the per-thread virtual clock.
 *
 * A timer yields raw ticks; the conversion to seconds is measured, not
 * assumed: for the TSC, ticks and CLOCK_MONOTONIC_RAW are sampled at start
 * and again at every dump, so the frequency comes from the whole run
 * (precise to parts per million after a few milliseconds).
 *
 * Timers (PYPROF_TIMER):
 *   wall       TSC via rdtsc when the CPU has an invariant TSC, else
 *              CLOCK_MONOTONIC. Default.
 *   monotonic  CLOCK_MONOTONIC (vDSO).
 *   cpu        thread CPU time (CLOCK_THREAD_CPUTIME_ID).
 *   process    process CPU time (CLOCK_PROCESS_CPUTIME_ID).
 *
 * The virtual clock of a thread (pyprof_vclock) is what the engine sees:
 * it advances only between the profiler's hooks, minus a fixed bias per
 * event, and never goes backwards. So the profiler's own time inside the
 * hook is not charged to user code, and the bias removes what no timer
 * can see (the interpreter's cost of calling the hook).
 *
 * "Per event" means every time the interpreter calls into the profiler,
 * including the calls it looks at and lets pass without reading the clock
 * (sys.monitoring's CALL and C_RETURN events for callables that are not
 * built-ins: every call of a Python function, class or bound method).
 * Those cost a round trip through the interpreter's event machinery like
 * any other, inside the gap of the function that made the call; the hook
 * counts them (pyprof_vclock_skip) and the next clock reading takes a bias
 * off for each, as it does for its own event.
 *
 * "Far" events (sys.monitoring only) cost more: CPython passes the event's
 * bytecode offset to the callback as an int object, and an offset above
 * 256 bytes (a call or return past the first seven or eight statements of
 * a function, with 3.12's inline caches) is a new int, allocated before
 * the callback and freed after it, outside our readings. The hook counts those too (pyprof_vclock_far),
 * and each takes `bias_far` more off.
 */
#ifndef PYPROF_CLOCK_H
#define PYPROF_CLOCK_H

#include <stdint.h>
#include <time.h>

typedef enum pyprof_timer {
  PYPROF_TIMER_WALL = 0,
  PYPROF_TIMER_MONOTONIC,
  PYPROF_TIMER_CPU,
  PYPROF_TIMER_PROCESS,
} pyprof_timer;

/* How the process reads time; set once at start by pyprof_clock_init(). */
typedef struct pyprof_clock {
  pyprof_timer timer;      /* what the user asked for */
  int source;              /* PYPROF_SRC_* actually used */
  int shared;              /* timestamps comparable across threads */
  int two_reads;           /* read again on hook exit (cheap timers) */
  int cpu_hybrid;          /* thread CPU time: TSC between syncs (below) */
  uint64_t sync_ticks;     /* cpu_hybrid: longest gap trusted as on-CPU */
  double ns_per_tick;      /* cpu_hybrid: TSC tick length */
  uint64_t bias;           /* ticks subtracted per event */
  uint64_t bias_far;       /* ... and more per far event (see the top) */
  uint64_t tsc0;           /* calibration start: raw ticks ... */
  struct timespec mono0;   /* ... and CLOCK_MONOTONIC_RAW at that instant */
} pyprof_clock;

enum { PYPROF_SRC_TSC, PYPROF_SRC_MONOTONIC, PYPROF_SRC_THREAD_CPU,
       PYPROF_SRC_PROCESS_CPU };

extern pyprof_clock pyprof_clk;

/* Chooses the source for `timer` and starts frequency calibration. Cheap
 * (no waiting). Not async-signal-safe. */
void pyprof_clock_init(pyprof_timer timer);

/* Second step, once the TSC frequency can be measured (at least a
 * millisecond after pyprof_clock_init: profiling start): fixes the tick
 * length the thread-CPU clock uses between syncs. */
void pyprof_clock_ready(void);

/* Parses a timer name ("wall", "cpu", "process", "monotonic"). Returns 0,
 * or -1 for an unknown name. */
int pyprof_timer_parse(const char *s, pyprof_timer *out);
const char *pyprof_timer_name(pyprof_timer t);
const char *pyprof_clock_source_name(void);

/* Whether this CPU has an invariant TSC (CPUID 0x80000007 EDX bit 8). */
int pyprof_tsc_invariant(void);

/* Seconds per tick, measured from start until now for the TSC (exact for
 * the other sources). Async-signal-safe (clock_gettime and arithmetic). */
double pyprof_clock_tick_seconds(void);

/* Resolution of the source in seconds (clock_getres, or one TSC tick). */
double pyprof_clock_resolution(void);

static inline uint64_t pyprof__rdtsc(void) {
#if defined(__x86_64__) || defined(__i386__)
  uint32_t lo, hi;
  __asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
  return ((uint64_t)hi << 32) | lo;
#else
  return 0;
#endif
}

static inline uint64_t pyprof__ts_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Reads the raw timer. Async-signal-safe. */
static inline uint64_t pyprof_clock_read(void) {
  switch (pyprof_clk.source) {
  case PYPROF_SRC_TSC: return pyprof__rdtsc();
  case PYPROF_SRC_MONOTONIC: return pyprof__ts_ns(CLOCK_MONOTONIC);
  case PYPROF_SRC_THREAD_CPU: return pyprof__ts_ns(CLOCK_THREAD_CPUTIME_ID);
  default: return pyprof__ts_ns(CLOCK_PROCESS_CPUTIME_ID);
  }
}

/* A thread's virtual clock. */
typedef struct pyprof_vclock {
  uint64_t vt;      /* virtual ticks at the last event */
  uint64_t raw_out; /* raw ticks when the profiler last gave control back */
  uint64_t raw_in;  /* cpu_hybrid: raw ticks at the last hook entry */
  uint64_t cpu_in;  /* cpu_hybrid: thread CPU ns estimated at raw_in */
  uint64_t cpu_out; /* cpu_hybrid: ... and at raw_out */
  int in_hook;      /* between enter and leave: the profiler's time */
  uint32_t skipped; /* events let pass without a reading since the last */
  uint32_t far;     /* far events (see the top) since the last reading */
} pyprof_vclock;

/* Thread CPU time in ns (a system call, ~1.7 us on this VM). */
static inline uint64_t pyprof_thread_cpu_ns(void) {
  return pyprof__ts_ns(CLOCK_THREAD_CPUTIME_ID);
}

/* Starts a virtual clock at raw time `raw`. */
static inline void pyprof_vclock_start(pyprof_vclock *c, uint64_t raw) {
  c->vt = 0;
  c->raw_out = c->raw_in = raw;
  c->skipped = c->far = 0;
  c->cpu_in = c->cpu_out = pyprof_clk.cpu_hybrid ? pyprof_thread_cpu_ns() : 0;
}

/* cpu_hybrid: the thread CPU time (ns) user code used since the last hook
 * exit. A gap shorter than sync_ticks is taken as spent on CPU (TSC
 * precision, no system call); a longer one -- where sleeps and blocking
 * calls are -- is measured with the real thread CPU clock, which also
 * resynchronises the estimate (never backwards: time counted as on-CPU
 * while the thread was in fact preempted is absorbed by the next sync). */
static inline uint64_t pyprof__cpu_gap(pyprof_vclock *c, uint64_t raw) {
  uint64_t gap = raw > c->raw_out ? raw - c->raw_out : 0;
  uint64_t d;
  if (gap <= pyprof_clk.sync_ticks) {
    d = (uint64_t)((double)gap * pyprof_clk.ns_per_tick);
    c->cpu_in = c->cpu_out + d;
  } else {
    uint64_t real = pyprof_thread_cpu_ns();
    d = real > c->cpu_out ? real - c->cpu_out : 0;
    c->cpu_in = real > c->cpu_out ? real : c->cpu_out;
  }
  c->raw_in = raw;
  return d;
}

/* An event that reached the hook and was let pass without reading the
 * clock: the next pyprof_vclock_enter() takes one more bias off. */
static inline void pyprof_vclock_skip(pyprof_vclock *c) { c->skipped++; }

/* The event being handled (or let pass) is a far one: the next
 * pyprof_vclock_enter() takes bias_far more off. */
static inline void pyprof_vclock_far(pyprof_vclock *c) { c->far++; }

/* Hook entry: advances the clock by the time user code ran since the last
 * hook exit, less the bias of this event and of the events let pass since
 * then (and bias_far for the far ones), never backwards. Returns the
 * virtual time. */
static inline uint64_t pyprof_vclock_enter(pyprof_vclock *c, uint64_t raw) {
  uint64_t d;
  if (__builtin_expect(pyprof_clk.cpu_hybrid, 0)) d = pyprof__cpu_gap(c, raw);
  else d = raw > c->raw_out ? raw - c->raw_out : 0;
  uint64_t b = pyprof_clk.bias * (1u + (uint64_t)c->skipped) +
               pyprof_clk.bias_far * c->far;
  c->skipped = c->far = 0;
  d = d > b ? d - b : 0;
  c->vt += d;
  c->raw_out = raw;
  c->in_hook = 1;
  return c->vt;
}

/* Hook exit: with a cheap timer, the time spent inside the hook since
 * pyprof_vclock_enter() is excluded by restarting from here. */
static inline void pyprof_vclock_leave(pyprof_vclock *c) {
  c->in_hook = 0;
  if (!pyprof_clk.two_reads) return;
  c->raw_out = pyprof_clock_read();
  if (__builtin_expect(pyprof_clk.cpu_hybrid, 0))
    c->cpu_out = c->cpu_in + (uint64_t)((double)(c->raw_out - c->raw_in) *
                                        pyprof_clk.ns_per_tick);
}

/* The virtual time `raw_now` would map to, without changing the clock
 * (for snapshots taken by another thread). Only meaningful when the clock
 * is shared between threads; otherwise the time of the last event. */
static inline uint64_t pyprof_vclock_peek(const pyprof_vclock *c,
                                          uint64_t raw_now) {
  /* Inside the hook (a snapshot parks threads there), time since entry
   * is the profiler's: the clock stands at the event. */
  if (!pyprof_clk.shared || c->in_hook || raw_now <= c->raw_out) return c->vt;
  return c->vt + (raw_now - c->raw_out);
}

#endif
