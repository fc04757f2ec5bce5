/*
 * calibrate.c -- PYPROF_BIAS=auto: the per-event cost that no timer sees.
 *
 * The virtual clock already leaves out the profiler's own time between its
 * timestamps. What remains is the interpreter's work to reach the hook and
 * to come back from it, which lands in the user's functions. As
 * profile.Profile.calibrate does, we time a loop of N calls of an empty
 * function without the profiler (raw ticks) and with it (the cumulative
 * virtual ticks of the loop's function, bias 0); the difference divided by
 * the number of events (2 per call, plus the loop function's own 2) is the
 * bias. Minimum over several repetitions; a few milliseconds in all.
 *
 * Runs at start, GIL held, before any user code, on the starting thread.
 */
#include "preload.h"

#define CAL_CALLS 2000
#define CAL_REPS 7
#define CAL_FILE "<pyprof-calibration>"

static const char cal_src[] =
    "def _pyprof_cal_g():\n"
    "    pass\n"
    "def _pyprof_cal_f(n):\n"
    "    g = _pyprof_cal_g\n"
    "    for _ in range(n):\n"
    "        g()\n";

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

/* The loop function, compiled under our own file name. New reference. */
static PyObject *make_loop(void) {
  PyObject *code = py.Py_CompileString(cal_src, CAL_FILE, 257 /* file */);
  PyObject *g = code ? py.PyDict_New() : NULL;
  PyObject *f = NULL;
  if (g && py.PyDict_SetItemString(g, "__builtins__", py.PyEval_GetBuiltins()) == 0) {
    PyObject *r = py.PyEval_EvalCode(code, g, g);
    if (r) {
      py.Py_DecRef(r);
      f = py.PyDict_GetItemString(g, "_pyprof_cal_f");
      if (f) py.Py_IncRef(f);
    }
  }
  if (g) py.Py_DecRef(g);
  if (code) py.Py_DecRef(code);
  if (!f) py.PyErr_Clear();
  return f;
}

uint64_t pyprof_calibrate(void) {
  PyObject *f = make_loop();
  if (!f) return 0;
  PyObject *code = py.PyObject_GetAttrString(f, "__code__");
  uint64_t base = UINT64_MAX, prof = UINT64_MAX;
  uint64_t saved_bias = pyprof_clk.bias;
  pyprof_clk.bias = 0;
  for (int i = 0; i < CAL_REPS && code; i++) {
    uint64_t t0 = pyprof_clock_read();
    if (call_loop(f) < 0) break;
    uint64_t t1 = pyprof_clock_read();
    if (t1 - t0 < base) base = t1 - t0;
  }
  pyprof_on = 1;
  pyprof_hook_self_install(1);
  for (int i = 0; i < CAL_REPS && code && base != UINT64_MAX; i++) {
    pyprof_reset_all();
    if (call_loop(f) < 0) break;
    pyprof_thread *t = pyprof_hook_self();
    pyprof_entry *e = t ? pyprof_lookup(t, code) : NULL;
    if (e && e->calls == 1 && e->tt < prof) prof = e->tt;
  }
  pyprof_hook_self_install(0);
  pyprof_on = 0;
  pyprof_reset_all();
  pyprof_clk.bias = saved_bias;
  if (code) py.Py_DecRef(code);
  py.Py_DecRef(f);
  /* The virtual clock of the thread-CPU timer counts ns, not raw ticks. */
  if (pyprof_clk.cpu_hybrid && base != UINT64_MAX)
    base = (uint64_t)((double)base * pyprof_clk.ns_per_tick);
  if (prof == UINT64_MAX || base == UINT64_MAX || prof <= base) return 0;
  return (prof - base) / (2 * (uint64_t)CAL_CALLS + 2);
}
