/*
 * test-clock.c -- timer selection, TSC frequency, bias arithmetic, and the
 * hybrid thread-CPU clock.
 */
#include <time.h>

#include "clock.h"
#include "test.h"

static void spin_ns(uint64_t ns) {
  uint64_t t0 = pyprof__ts_ns(CLOCK_MONOTONIC);
  while (pyprof__ts_ns(CLOCK_MONOTONIC) - t0 < ns) {
  }
}

TEST_IMPL(timer_names) {
  pyprof_timer t;
  ASSERT_EQ_I(pyprof_timer_parse("wall", &t), 0);
  ASSERT_EQ_I(t, PYPROF_TIMER_WALL);
  ASSERT_EQ_I(pyprof_timer_parse("cpu", &t), 0);
  ASSERT_EQ_I(t, PYPROF_TIMER_CPU);
  ASSERT_EQ_I(pyprof_timer_parse("process", &t), 0);
  ASSERT_EQ_I(pyprof_timer_parse("monotonic", &t), 0);
  ASSERT_EQ_I(pyprof_timer_parse("Wall", &t), -1);
  ASSERT_EQ_I(pyprof_timer_parse("", &t), -1);
  ASSERT_STR_EQ(pyprof_timer_name(PYPROF_TIMER_PROCESS), "process");
  return TEST_OK;
}

/* wall uses the TSC exactly when the CPU has an invariant one. */
TEST_IMPL(wall_source) {
  pyprof_clock_init(PYPROF_TIMER_WALL);
  ASSERT_EQ_I(pyprof_clk.source == PYPROF_SRC_TSC, pyprof_tsc_invariant());
  ASSERT(pyprof_clk.shared);
  pyprof_clock_init(PYPROF_TIMER_MONOTONIC);
  ASSERT_EQ_I(pyprof_clk.source, PYPROF_SRC_MONOTONIC);
  ASSERT_NEAR(pyprof_clock_tick_seconds(), 1e-9, 0);
  pyprof_clock_init(PYPROF_TIMER_PROCESS);
  ASSERT_EQ_I(pyprof_clk.source, PYPROF_SRC_PROCESS_CPU);
  ASSERT_EQ_I(pyprof_clk.two_reads, 0);
  return TEST_OK;
}

/* The TSC's tick length, measured against CLOCK_MONOTONIC_RAW, converts a
 * 50 ms interval to within 0.1%. */
TEST_IMPL(tsc_frequency) {
  if (!pyprof_tsc_invariant()) RETURN_SKIP("no invariant TSC on this CPU");
  pyprof_clock_init(PYPROF_TIMER_WALL);
  spin_ns(20000000);
  double tick = pyprof_clock_tick_seconds();
  ASSERT(tick > 1e-11 && tick < 1e-8);
  uint64_t m0 = pyprof__ts_ns(CLOCK_MONOTONIC_RAW), t0 = pyprof__rdtsc();
  spin_ns(50000000);
  uint64_t m1 = pyprof__ts_ns(CLOCK_MONOTONIC_RAW), t1 = pyprof__rdtsc();
  double by_tsc = (double)(t1 - t0) * tick, by_mono = (double)(m1 - m0) * 1e-9;
  ASSERT_NEAR(by_tsc / by_mono, 1.0, 1e-3);
  return TEST_OK;
}

/* A monotonic clock read once per event, with these biases, and a virtual
 * clock started at raw time 1000. */
static void biased_clock(pyprof_vclock *c, uint64_t bias, uint64_t bias_far) {
  pyprof_clock_init(PYPROF_TIMER_MONOTONIC);
  pyprof_clk.two_reads = 0;
  pyprof_clk.bias = bias;
  pyprof_clk.bias_far = bias_far;
  pyprof_vclock_start(c, 1000);
}

/* The bias comes off each event; a gap shorter than the bias counts 0 and
 * the clock never goes backwards. */
TEST_IMPL(bias_and_clamp) {
  pyprof_vclock c;
  biased_clock(&c, 10, 0);
  ASSERT_EQ_U(pyprof_vclock_enter(&c, 1100), 90);
  ASSERT_EQ_U(pyprof_vclock_enter(&c, 1105), 90); /* 5 < bias: clamped */
  ASSERT_EQ_U(pyprof_vclock_enter(&c, 1100), 90); /* raw went back */
  ASSERT_EQ_U(pyprof_vclock_enter(&c, 1200), 180);
  /* inside the hook the clock stands at the event ... */
  ASSERT_EQ_U(pyprof_vclock_peek(&c, 1250), 180);
  pyprof_vclock_leave(&c);
  /* ... outside, peek maps a later raw time without moving the clock */
  ASSERT_EQ_U(pyprof_vclock_peek(&c, 1250), 230);
  ASSERT_EQ_U(c.vt, 180);
  pyprof_clk.bias = 0;
  return TEST_OK;
}

/* Events let pass without a reading (sys.monitoring CALL events of Python
 * functions) cost a bias each, taken off at the next reading, clamped like
 * the others; the count starts again after every reading. */
TEST_IMPL(bias_skipped_events) {
  pyprof_vclock c;
  biased_clock(&c, 10, 0);
  ASSERT_EQ_U(c.skipped, 0);
  pyprof_vclock_skip(&c);
  pyprof_vclock_skip(&c);
  ASSERT_EQ_U(pyprof_vclock_enter(&c, 1100), 70);  /* 100 - 3 * 10 */
  ASSERT_EQ_U(c.skipped, 0);
  ASSERT_EQ_U(pyprof_vclock_enter(&c, 1200), 160); /* one event again */
  for (int i = 0; i < 20; i++) pyprof_vclock_skip(&c);
  ASSERT_EQ_U(pyprof_vclock_enter(&c, 1300), 160); /* 210 > 100: clamped */
  ASSERT_EQ_U(pyprof_vclock_enter(&c, 1400), 250);
  pyprof_vclock_skip(&c);
  pyprof_vclock_start(&c, 2000); /* a new clock starts with none */
  ASSERT_EQ_U(pyprof_vclock_enter(&c, 2100), 90);
  pyprof_clk.bias = 0;
  pyprof_vclock_skip(&c); /* without a bias, nothing to take off */
  ASSERT_EQ_U(pyprof_vclock_enter(&c, 2200), 190);
  return TEST_OK;
}

/* Far events (sys.monitoring, offsets past 256) take bias_far more each,
 * whether handled or let pass, clamped like the rest; the count starts
 * again after every reading and with a new clock. */
TEST_IMPL(bias_far_events) {
  pyprof_vclock c;
  biased_clock(&c, 10, 7);
  ASSERT_EQ_U(c.far, 0);
  pyprof_vclock_skip(&c);
  pyprof_vclock_far(&c);                           /* the skipped one */
  pyprof_vclock_far(&c);                           /* this one */
  ASSERT_EQ_U(pyprof_vclock_enter(&c, 1100), 66);  /* 100 - 2*10 - 2*7 */
  ASSERT_EQ_U(c.far, 0);
  ASSERT_EQ_U(pyprof_vclock_enter(&c, 1200), 156); /* a near event */
  pyprof_vclock_far(&c);
  ASSERT_EQ_U(pyprof_vclock_enter(&c, 1210), 156); /* 17 > 10: clamped */
  pyprof_vclock_far(&c);
  pyprof_vclock_start(&c, 2000); /* a new clock starts with none */
  ASSERT_EQ_U(pyprof_vclock_enter(&c, 2100), 90);
  pyprof_clk.bias = 0;
  pyprof_vclock_far(&c); /* bias_far alone */
  ASSERT_EQ_U(pyprof_vclock_enter(&c, 2200), 183);
  pyprof_clk.bias_far = 0;
  return TEST_OK;
}

/* The hybrid thread-CPU clock: busy time between close events is counted
 * (TSC), a sleep across a long gap is not (real thread CPU clock), and over
 * a run the total agrees with CLOCK_THREAD_CPUTIME_ID. */
TEST_IMPL(cpu_hybrid) {
  if (!pyprof_tsc_invariant()) RETURN_SKIP("no invariant TSC on this CPU");
  pyprof_clock_init(PYPROF_TIMER_CPU);
  spin_ns(5000000);
  pyprof_clock_ready();
  ASSERT(pyprof_clk.cpu_hybrid);
  ASSERT_NEAR(pyprof_clock_tick_seconds(), 1e-9, 0);
  pyprof_vclock c;
  pyprof_vclock_start(&c, pyprof_clock_read());
  uint64_t cpu0 = pyprof_thread_cpu_ns();
  /* 20 ms of busy work with an event every ~20 us */
  for (int i = 0; i < 1000; i++) {
    spin_ns(20000);
    pyprof_vclock_enter(&c, pyprof_clock_read());
    pyprof_vclock_leave(&c);
  }
  uint64_t busy_vt = c.vt, busy_cpu = pyprof_thread_cpu_ns() - cpu0;
  ASSERT_NEAR((double)busy_vt / (double)busy_cpu, 1.0, 0.25);
  /* a 50 ms sleep between two events adds (almost) nothing */
  struct timespec d = {0, 50000000};
  nanosleep(&d, NULL);
  pyprof_vclock_enter(&c, pyprof_clock_read());
  pyprof_vclock_leave(&c);
  ASSERT(c.vt - busy_vt < 2000000); /* < 2 ms */
  pyprof_clk.cpu_hybrid = 0;
  return TEST_OK;
}

TEST_MAIN(TEST_ENTRY(timer_names) TEST_ENTRY(wall_source)
              TEST_ENTRY(tsc_frequency) TEST_ENTRY(bias_and_clamp)
                  TEST_ENTRY(bias_skipped_events) TEST_ENTRY(bias_far_events) TEST_ENTRY(cpu_hybrid))
