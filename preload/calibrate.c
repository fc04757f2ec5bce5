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
 * On sys.monitoring, a call past byte offset 256 of its function costs
 * more than a near one (core/clock.h, "far" events). Two more loops, the
 * same three calls near and far (padding that never runs moves them), give
 * that extra cost: about 10 ns per far event on 3.12 here, against 19-20
 * for the bias itself.
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

#define PAD "        n = n + 1\n"
#define FAR_PADDING PAD PAD PAD PAD PAD PAD PAD PAD PAD PAD PAD PAD \
                    PAD PAD PAD PAD PAD PAD PAD PAD PAD PAD PAD PAD

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
    "        _pyprof_cal_g\n"
    "def _pyprof_cal_n(n):\n"
    "    if n < 0:\n"
    "        n = n + 1\n"
    "    for _ in range(n):\n"
    "        _pyprof_cal_h(1); _pyprof_cal_h(2); _pyprof_cal_h(3)\n"
    "def _pyprof_cal_r(n):\n"
    "    if n < 0:\n"
    FAR_PADDING
    "    for _ in range(n):\n"
    "        _pyprof_cal_h(1); _pyprof_cal_h(2); _pyprof_cal_h(3)\n";

/* _pyprof_cal_r is _pyprof_cal_n with never-run statements before its
 * loop, so that the loop's three calls are past byte offset 256: far
 * events on sys.monitoring (core/clock.h), CAL_FAR_PER_ITER per iteration.
 * 24 statements of 10 bytes each. */
#define CAL_FAR_PER_ITER 3

/* Python calls per iteration of _pyprof_cal_f's loop. */
#define CAL_CALLS_PER_ITER 3

/* The loops timed: with the calls, without them; three near calls and
 * the same three far. */
enum { CAL_NEAR, CAL_LOOP, CAL_TWIN, CAL_FAR, CAL_NLOOPS };
static const char *const cal_names[CAL_NLOOPS] = {
    "_pyprof_cal_f", "_pyprof_cal_t", "_pyprof_cal_n", "_pyprof_cal_r"};

static void drop_loops(PyObject **fn, PyObject **code) {
  for (int i = 0; i < CAL_NLOOPS; i++) {
    if (fn[i]) py.Py_DecRef(fn[i]);
    if (code[i]) py.Py_DecRef(code[i]);
  }
}

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

/* The loop functions and their code objects, compiled under our own file
 * name (new references). Returns 0, or -1 with nothing held. */
static int make_loops(PyObject **fn, PyObject **code) {
  PyObject *c = py.Py_CompileString(cal_src, CAL_FILE, 257 /* file */);
  PyObject *g = c ? py.PyDict_New() : NULL;
  int ok = 0;
  for (int i = 0; i < CAL_NLOOPS; i++) fn[i] = code[i] = NULL;
  if (g && py.PyDict_SetItemString(g, "__builtins__", py.PyEval_GetBuiltins()) == 0) {
    PyObject *r = py.PyEval_EvalCode(c, g, g);
    if (r) {
      py.Py_DecRef(r);
      ok = 1;
      for (int i = 0; i < CAL_NLOOPS; i++) {
        fn[i] = py.PyDict_GetItemString(g, cal_names[i]); /* borrowed */
        if (fn[i]) py.Py_IncRef(fn[i]);
        code[i] = fn[i] ? py.PyObject_GetAttrString(fn[i], "__code__") : NULL;
        ok = ok && code[i];
      }
    }
  }
  if (g) py.Py_DecRef(g);
  if (c) py.Py_DecRef(c);
  if (ok) return 0;
  py.PyErr_Clear();
  drop_loops(fn, code);
  return -1;
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

/* How many more ticks the profiler added to loop `a` than to loop `b`
 * (profiled minus unprofiled, each; b's part only if positive); 0 if that
 * is not positive. */
static uint64_t excess(const uint64_t *base, const uint64_t *prof, int a, int b) {
  if (base[a] == UINT64_MAX || prof[a] == UINT64_MAX || base[b] == UINT64_MAX ||
      prof[b] == UINT64_MAX)
    return 0;
  double db = (double)prof[b] - (double)base[b];
  double d = (double)prof[a] - (double)base[a] - (db > 0 ? db : 0);
  return d > 0 ? (uint64_t)d : 0;
}

uint64_t pyprof_calibrate(uint64_t *bias_far) {
  PyObject *fn[CAL_NLOOPS], *code[CAL_NLOOPS];
  *bias_far = 0;
  if (make_loops(fn, code) < 0) return 0;
  uint64_t saved_bias = pyprof_clk.bias, saved_far = pyprof_clk.bias_far;
  pyprof_clk.bias = pyprof_clk.bias_far = 0;
  /* Only sys.monitoring has far events: elsewhere those loops are skipped. */
  int nloops = pyprof_use_monitoring ? CAL_NLOOPS : CAL_TWIN;
  /* Warm up (specialisation), then time. */
  for (int l = 0; l < nloops; l++) call_loop(fn[l]);
  uint64_t base[CAL_NLOOPS], prof[CAL_NLOOPS];
  for (int l = 0; l < CAL_NLOOPS; l++) base[l] = prof[l] = UINT64_MAX;
  for (int b = 0; b < CAL_BLOCKS; b++) {
    for (int i = 0; i < CAL_REPS; i++)
      for (int l = 0; l < nloops; l++) keep_min(&base[l], time_raw(fn[l]));
    pyprof_on = 1;
    pyprof_hook_self_install(1);
    for (int i = 0; i < CAL_REPS; i++)
      for (int l = 0; l < nloops; l++) keep_min(&prof[l], time_prof(fn[l], code[l]));
    pyprof_hook_self_install(0);
    pyprof_on = 0;
  }
  drop_loops(fn, code);
  pyprof_reset_all();
  pyprof_clk.bias = saved_bias;
  pyprof_clk.bias_far = saved_far;
  /* The virtual clock of the thread-CPU timer counts ns, not raw ticks. */
  if (pyprof_clk.cpu_hybrid)
    for (int l = 0; l < CAL_NLOOPS; l++)
      if (base[l] != UINT64_MAX)
        base[l] = (uint64_t)((double)base[l] * pyprof_clk.ns_per_tick);
  /* Events per Python call: its start and its return, and on
   * sys.monitoring the CALL event let pass before the start. The loop's
   * own slowdown (the loop without the calls) is taken off. */
  uint64_t per_call = pyprof_use_monitoring ? 3 : 2;
  if (nloops > CAL_FAR)
    *bias_far = excess(base, prof, CAL_FAR, CAL_TWIN) / (CAL_FAR_PER_ITER * CAL_CALLS);
  return excess(base, prof, CAL_NEAR, CAL_LOOP) /
         (per_call * CAL_CALLS_PER_ITER * CAL_CALLS);
}
