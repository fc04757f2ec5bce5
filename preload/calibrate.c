/*
 * calibrate.c -- PYPROF_BIAS=auto: the per-event cost that no timer sees.
 *
 * The virtual clock already leaves out the profiler's own time between its
 * timestamps. What remains is the interpreter's work to reach the hook and
 * to come back from it, which lands in the user's functions: the bias, a
 * cost per event (core/clock.h), where an event is any call the
 * interpreter makes into the profiler, including the sys.monitoring CALL
 * events the hook lets pass (calls of Python functions and classes).
 *
 * As profile.Profile.calibrate does, we time a loop of calls without the
 * profiler (raw ticks) and with it (the cumulative virtual ticks of the
 * loop's function, bias 0); the difference divided by the number of events
 * in the loop is the bias. The loop calls a function that calls a one-line
 * function twice: the shape of real small functions. An earlier loop of
 * empty calls gave 16-17 ns on 3.12 where small_funcs needed 21-22 ns per
 * event (scripts/accuracy --only d measures that in one process); this
 * shape gives 19-20 ns.
 *
 * Not every slowdown under a profiler is a cost per event. On <= 3.11 any
 * profile function puts the interpreter in its tracing mode, where every
 * instruction runs unspecialised; 3.12 removes superinstructions and
 * specialised calls from instrumented code. Those cost per instruction.
 * The bias now includes them for the two small bodies above (a deliberate
 * choice: that is what small functions pay, and what we want their times
 * free of), but not for the loop itself: the same loop without the call
 * (its remaining instructions: the loop, the global load) is timed the
 * same way, and its excess is taken off before dividing by the events.
 * The loop names the function as a global, not a local, which would add a
 * superinstruction to the unprofiled loop. Long bodies keep most of their
 * slowdown: no bias per event can remove that honestly.
 *
 * Minimum over several repetitions, a few milliseconds in all, taken in
 * CAL_BLOCKS alternating blocks (unprofiled, profiled, unprofiled, ...):
 * this VM has stretches of seconds where everything runs up to 2x slower,
 * and when one began between a single unprofiled and a single profiled
 * block, the difference (and the bias) came out far too small or too
 * large. A stretch that covers the whole calibration still makes the bias
 * too large for that run; see the README.
 *
 * Runs at start, GIL held, before any user code, on the starting thread.
 */
#include "preload.h"

#define CAL_CALLS 800 /* loop iterations */
#define CAL_REPS 3
#define CAL_BLOCKS 3
#define CAL_FILE "<pyprof-calibration>"

static const char cal_src[] =
    "def _pyprof_cal_h(x):\n"
    "    return x + 1\n"
    "def _pyprof_cal_g():\n"
    "    return _pyprof_cal_h(1) + _pyprof_cal_h(2)\n"
    "def _pyprof_cal_f(n):\n"
    "    for _ in range(n):\n"
    "        _pyprof_cal_g()\n"
    "def _pyprof_cal_t(n):\n"
    "    for _ in range(n):\n"
    "        _pyprof_cal_g\n";

/* Python calls per iteration of _pyprof_cal_f's loop. */
#define CAL_CALLS_PER_ITER 3

/* Calls f(CAL_CALLS); returns 0 or -1 on a Python error (cleared). */
static int call_loop(PyObject *f) {
  PyObject *r = py.PyObject_CallFunction(f, "i", CAL_CALLS);
  if (!r) {
    py.PyErr_Clear();
    return -1;
  }
  py.Py_DecRef(r);
  return 0;
}

/* The loop functions, compiled under our own file name. New references. */
static int make_loops(PyObject **f, PyObject **ft) {
  PyObject *code = py.Py_CompileString(cal_src, CAL_FILE, 257 /* file */);
  PyObject *g = code ? py.PyDict_New() : NULL;
  *f = *ft = NULL;
  if (g && py.PyDict_SetItemString(g, "__builtins__", py.PyEval_GetBuiltins()) == 0) {
    PyObject *r = py.PyEval_EvalCode(code, g, g);
    if (r) {
      py.Py_DecRef(r);
      *f = py.PyDict_GetItemString(g, "_pyprof_cal_f");
      *ft = py.PyDict_GetItemString(g, "_pyprof_cal_t");
      if (*f) py.Py_IncRef(*f);
      if (*ft) py.Py_IncRef(*ft);
    }
  }
  if (g) py.Py_DecRef(g);
  if (code) py.Py_DecRef(code);
  if (!*f || !*ft) py.PyErr_Clear();
  return *f && *ft ? 0 : -1;
}

/* Raw ticks of one f(CAL_CALLS) without the profiler; UINT64_MAX on
 * error. */
static uint64_t time_raw(PyObject *f) {
  uint64_t t0 = pyprof_clock_read();
  if (call_loop(f) < 0) return UINT64_MAX;
  return pyprof_clock_read() - t0;
}

/* Cumulative virtual ticks of one f(CAL_CALLS) with the profiler on and
 * bias 0 (`code` is f's code object); UINT64_MAX on error. */
static uint64_t time_prof(PyObject *f, PyObject *code) {
  pyprof_reset_all();
  if (call_loop(f) < 0) return UINT64_MAX;
  pyprof_thread *t = pyprof_hook_self();
  pyprof_entry *e = t ? pyprof_lookup(t, code) : NULL;
  return e && e->calls == 1 ? e->tt : UINT64_MAX;
}

static void keep_min(uint64_t *best, uint64_t v) {
  if (v < *best) *best = v;
}

uint64_t pyprof_calibrate(void) {
  PyObject *f, *ft;
  if (make_loops(&f, &ft) < 0) {
    if (f) py.Py_DecRef(f);
    if (ft) py.Py_DecRef(ft);
    return 0;
  }
  uint64_t saved_bias = pyprof_clk.bias;
  pyprof_clk.bias = 0;
  /* Warm up (specialisation), then time. */
  call_loop(f);
  call_loop(ft);
  PyObject *code = py.PyObject_GetAttrString(f, "__code__");
  PyObject *code_t = py.PyObject_GetAttrString(ft, "__code__");
  if (!code || !code_t) py.PyErr_Clear();
  uint64_t base = UINT64_MAX, base_t = UINT64_MAX;
  uint64_t prof = UINT64_MAX, prof_t = UINT64_MAX;
  for (int b = 0; code && code_t && b < CAL_BLOCKS; b++) {
    for (int i = 0; i < CAL_REPS; i++) {
      keep_min(&base, time_raw(f));
      keep_min(&base_t, time_raw(ft));
    }
    pyprof_on = 1;
    pyprof_hook_self_install(1);
    for (int i = 0; i < CAL_REPS; i++) {
      keep_min(&prof, time_prof(f, code));
      keep_min(&prof_t, time_prof(ft, code_t));
    }
    pyprof_hook_self_install(0);
    pyprof_on = 0;
  }
  if (code) py.Py_DecRef(code);
  if (code_t) py.Py_DecRef(code_t);
  pyprof_reset_all();
  pyprof_clk.bias = saved_bias;
  py.Py_DecRef(f);
  py.Py_DecRef(ft);
  /* The virtual clock of the thread-CPU timer counts ns, not raw ticks. */
  if (pyprof_clk.cpu_hybrid) {
    if (base != UINT64_MAX) base = (uint64_t)((double)base * pyprof_clk.ns_per_tick);
    if (base_t != UINT64_MAX) base_t = (uint64_t)((double)base_t * pyprof_clk.ns_per_tick);
  }
  if (prof == UINT64_MAX || base == UINT64_MAX || prof <= base) return 0;
  uint64_t excess = prof - base;
  /* The loop's own slowdown, when it could be measured. */
  if (prof_t != UINT64_MAX && base_t != UINT64_MAX && prof_t > base_t) {
    uint64_t loop = prof_t - base_t;
    excess = excess > loop ? excess - loop : 0;
  }
  /* Events per Python call: its start and its return, and on
   * sys.monitoring the CALL event let pass before the start. */
  uint64_t per_call = pyprof_use_monitoring ? 3 : 2;
  return excess / (per_call * CAL_CALLS_PER_ITER * CAL_CALLS);
}
