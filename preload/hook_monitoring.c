/*
 * hook_monitoring.c -- the 3.12+ path: sys.monitoring (PEP 669) with a
 * tool id of our own.
 *
 * Why: the legacy PyEval_SetProfile path on 3.12+ is itself built on
 * sys.monitoring (tool PROFILER_ID) and materialises a frame object for
 * every event; our callbacks get the code object directly. Events are
 * interpreter-wide, so every thread, however created, is covered without
 * per-thread installation. A tool id of our own (not PROFILER_ID, which
 * cProfile uses; not COVERAGE_ID) lets cProfile and coverage run alongside.
 *
 * Events and their meaning, as cProfile 3.12+ counts them:
 *   PY_START, PY_RESUME, PY_THROW        a Python function (re)starts
 *   PY_RETURN, PY_YIELD, PY_UNWIND       ... and stops
 *   CALL  (callable is a built-in)       a built-in starts
 *   C_RETURN, C_RAISE                    ... and stops
 * A "built-in" is a PyCFunction, or a method descriptor called with a
 * self (list.append(x)), which cProfile binds to a PyCFunction; we compute
 * the same key (method def, type of self) without binding, and bind only
 * at first sight to name it.
 *
 * CALL and C_RETURN events for anything else (every call of a Python
 * function, class or bound method) are let pass without reading the clock,
 * but they are counted (pyprof_vclock_skip): each costs the calling
 * function a round trip through the interpreter's event machinery, which
 * the bias takes off like that of any other event.
 *
 * Callbacks run with the GIL held, on the thread of the event.
 */
#include <string.h>

#include "preload.h"

#define METH_FASTCALL_ 0x0080

enum {
  EV_PY_START = 1, EV_PY_RESUME = 2, EV_PY_RETURN = 4, EV_PY_YIELD = 8,
  EV_CALL = 16, EV_PY_UNWIND = 4096, EV_PY_THROW = 8192,
  EV_C_RETURN = 32768, EV_C_RAISE = 65536,
};
#define EV_ALL                                                             \
  (EV_PY_START | EV_PY_RESUME | EV_PY_THROW | EV_PY_RETURN | EV_PY_YIELD |  \
   EV_PY_UNWIND | EV_CALL | EV_C_RETURN | EV_C_RAISE)

/* PyMethodDescrObject: PyDescr_COMMON (head, d_type, d_name, d_qualname)
 * then d_method (3.12, 3.13: offset 40, from their headers). */
#define DESCR_METHOD_OFF 40

static PyObject *monitoring;  /* sys.monitoring (strong reference) */
static PyObject *missing;     /* sys.monitoring.MISSING */
static void *method_descr_type; /* PyMethodDescr_Type */
static int tool = -1;         /* our tool id while we hold one */

/* None for the callbacks' results: immortal on 3.12+, no refcount. */
#define RETURN_NONE return py.Py_None

static inline pyprof_thread *self_thread(void) {
  pyprof_thread *t = pyprof_tls;
  return t ? t : pyprof_attach();
}

/* Every callback gets the event's bytecode offset as args[1]: a cached,
 * immortal small int up to 256, a new int above (a far event, core/
 * clock.h). 3.12+ on 64 bits marks immortal objects with a negative low
 * half of the reference count. */
static inline void note_far(pyprof_thread *t, PyObject *offset) {
  if ((int32_t)*(Py_ssize_t *)offset >= 0) pyprof_vclock_far(&t->clock);
}

/* A Python function starts: args[0] is its code object. */
static PyObject *on_start(PyObject *m, PyObject *const *args, Py_ssize_t n) {
  (void)m;
  (void)n;
  pyprof_thread *t;
  if ((__builtin_expect(pyprof_on != 1, 0) && !pyprof_on_slow()) || !(t = self_thread())) RETURN_NONE;
  note_far(t, args[1]);
  uint64_t now = pyprof_vclock_enter(&t->clock, pyprof_clock_read());
  pyprof_enter_code(t, args[0], now);
  pyprof_vclock_leave(&t->clock);
  RETURN_NONE;
}

/* A Python function stops (return, yield, unwind). */
static PyObject *on_stop(PyObject *m, PyObject *const *args, Py_ssize_t n) {
  (void)m;
  (void)args;
  (void)n;
  pyprof_thread *t;
  if ((__builtin_expect(pyprof_on != 1, 0) && !pyprof_on_slow()) || !(t = self_thread())) RETURN_NONE;
  note_far(t, args[1]);
  pyprof_leave(t, pyprof_vclock_enter(&t->clock, pyprof_clock_read()));
  pyprof_vclock_leave(&t->clock);
  RETURN_NONE;
}

/* The key of a call's callable if cProfile would count it as a built-in,
 * else NULL. */
static inline const void *builtin_key(PyObject *callable, PyObject *arg0) {
  void *type = pyprof_type(callable);
  /* Most calls are to Python functions and bound methods: rejected here
   * without PyType_IsSubtype's call. */
  if (type == py.PyFunction_Type || type == py.PyMethod_Type) return NULL;
  if (type == method_descr_type) {
    if (arg0 == missing) return NULL;
    PyMethodDef *ml = *(PyMethodDef **)((char *)callable + DESCR_METHOD_OFF);
    uintptr_t k = (uintptr_t)ml ^ ((uintptr_t)pyprof_type(arg0) *
                                   (uintptr_t)0x9E3779B97F4A7C15ull);
    return (const void *)(k ? k : 1);
  }
  if (type == py.PyCFunction_Type || type == py.PyCMethod_Type ||
      py.PyType_IsSubtype(type, py.PyCFunction_Type))
    return pyprof_cfunc_key(callable);
  return NULL;
}

/* First sight of a built-in: name it as cProfile would (binding a method
 * descriptor to its self, as cProfile does). */
static pyprof_fid name_builtin(PyObject *callable, PyObject *arg0) {
  if (pyprof_type(callable) != method_descr_type)
    return pyprof_name_cfunc(callable);
  PyObject *get = py.PyObject_GetAttrString(callable, "__get__");
  PyObject *bound = get ? py.PyObject_CallFunction(get, "OO", arg0,
                                                   (PyObject *)pyprof_type(arg0))
                        : NULL;
  pyprof_fid fid = PYPROF_FID_NONE;
  if (bound && pyprof_is_cfunc(bound)) fid = pyprof_name_cfunc(bound);
  if (!bound) py.PyErr_Clear();
  if (bound) py.Py_DecRef(bound);
  if (get) py.Py_DecRef(get);
  return fid;
}

/* An event let pass: counted for the bias (see the top of this file). */
static inline void skip(PyObject *offset) {
  pyprof_thread *t = pyprof_tls;
  if (!t) return;
  pyprof_vclock_skip(&t->clock);
  note_far(t, offset);
}

/* CALL: args = (code, offset, callable, arg0 or MISSING). */
static PyObject *on_call(PyObject *m, PyObject *const *args, Py_ssize_t n) {
  (void)m;
  (void)n;
  const void *key;
  pyprof_thread *t;
  if (__builtin_expect(pyprof_on != 1, 0) && !pyprof_on_slow()) RETURN_NONE;
  if (!(key = builtin_key(args[2], args[3]))) {
    skip(args[1]);
    RETURN_NONE;
  }
  if (!(t = self_thread())) RETURN_NONE;
  note_far(t, args[1]);
  uint64_t now = pyprof_vclock_enter(&t->clock, pyprof_clock_read());
  pyprof_entry *e = pyprof_lookup(t, key);
  if (__builtin_expect(!e, 0))
    e = pyprof_insert_named(t, key, name_builtin(args[2], args[3]));
  if (e) pyprof_enter(t, e, now);
  else pyprof_enter_lost(t);
  pyprof_vclock_leave(&t->clock);
  RETURN_NONE;
}

/* C_RETURN, C_RAISE: same arguments as CALL. */
static PyObject *on_c_stop(PyObject *m, PyObject *const *args, Py_ssize_t n) {
  (void)m;
  (void)n;
  pyprof_thread *t;
  if (__builtin_expect(pyprof_on != 1, 0) && !pyprof_on_slow()) RETURN_NONE;
  if (!builtin_key(args[2], args[3])) {
    skip(args[1]);
    RETURN_NONE;
  }
  if (!(t = self_thread())) RETURN_NONE;
  note_far(t, args[1]);
  pyprof_leave(t, pyprof_vclock_enter(&t->clock, pyprof_clock_read()));
  pyprof_vclock_leave(&t->clock);
  RETURN_NONE;
}

static PyMethodDef defs[] = {
    {"_pyprof_start", (PyCFunctionPtr)(void (*)(void))on_start, METH_FASTCALL_, NULL},
    {"_pyprof_stop", (PyCFunctionPtr)(void (*)(void))on_stop, METH_FASTCALL_, NULL},
    {"_pyprof_call", (PyCFunctionPtr)(void (*)(void))on_call, METH_FASTCALL_, NULL},
    {"_pyprof_c_stop", (PyCFunctionPtr)(void (*)(void))on_c_stop, METH_FASTCALL_, NULL},
};

static const struct {
  int event;
  int def;
} table[] = {
    {EV_PY_START, 0},  {EV_PY_RESUME, 0}, {EV_PY_THROW, 0},
    {EV_PY_RETURN, 1}, {EV_PY_YIELD, 1},  {EV_PY_UNWIND, 1},
    {EV_CALL, 2},      {EV_C_RETURN, 3},  {EV_C_RAISE, 3},
};

/* Takes a free tool id (4, then 3) and registers the callbacks. GIL held.
 * Returns 0, or -1 (the caller falls back to the legacy path). */
int pyprof_mon_init(void) {
  if (tool >= 0) return 0;
  PyObject *sys = py.PyImport_ImportModule("sys");
  monitoring = sys ? py.PyObject_GetAttrString(sys, "monitoring") : NULL;
  if (sys) py.Py_DecRef(sys);
  if (!monitoring) goto fail;
  missing = py.PyObject_GetAttrString(monitoring, "MISSING");
  method_descr_type = py.PyMethodDescr_Type;
  if (!missing || !method_descr_type) goto fail;
  static const int candidates[] = {4, 3};
  for (size_t i = 0; i < 2 && tool < 0; i++) {
    PyObject *r = py.PyObject_CallMethod(monitoring, "use_tool_id", "is",
                                         candidates[i], "libpyprof");
    if (r) {
      py.Py_DecRef(r);
      tool = candidates[i];
    } else {
      py.PyErr_Clear(); /* taken by someone else */
    }
  }
  if (tool < 0) goto fail;
  for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
    PyObject *fn = py.PyCFunction_NewEx(&defs[table[i].def], NULL, NULL);
    PyObject *r = fn ? py.PyObject_CallMethod(monitoring, "register_callback",
                                              "iiO", tool, table[i].event, fn)
                     : NULL;
    if (fn) py.Py_DecRef(fn);
    if (!r) goto fail;
    py.Py_DecRef(r);
  }
  return 0;
fail:
  py.PyErr_Clear();
  return -1;
}

/* Turns all our events on or off, interpreter-wide. GIL held. */
void pyprof_mon_set(int on) {
  if (tool < 0) return;
  PyObject *r = py.PyObject_CallMethod(monitoring, "set_events", "ii", tool,
                                       on ? EV_ALL : 0);
  if (r) py.Py_DecRef(r);
  else py.PyErr_Clear();
}
