/*
 * floor.c -- the benchmark "floor": the cheapest possible deterministic
 * profiler, used by scripts/bench as the lower bound any profiler pays.
 *
 * Built as libpyprof_floor.so and injected like libpyprof:
 *     LD_PRELOAD=libpyprof_floor.so python app.py
 *
 * What it installs, when the interpreter starts running the program (the
 * first cpython.run_file / run_module / run_command / run_stdin audit event):
 *   - CPython <= 3.11: PyEval_SetProfile(empty C hook). New threads get the
 *     same hook: threading.setprofile() is given a C builtin that, on its
 *     first call in a thread, swaps itself for the empty C hook, so after one
 *     event per thread every thread pays exactly the C-hook cost.
 *   - CPython >= 3.12: sys.monitoring callbacks (a C builtin returning None)
 *     for the events cProfile registers (PY_START, PY_RESUME, PY_THROW,
 *     PY_RETURN, PY_YIELD, PY_UNWIND, CALL, C_RETURN, C_RAISE), on a free
 *     tool id (5 preferred). This is interpreter-wide, so threads are
 *     covered. (A legacy PyEval_SetProfile hook costs more on 3.12+ because
 *     it is emulated on top of sys.monitoring with a trampoline.)
 *
 * Rules
 * - Never links libpython: every Py* symbol is resolved with
 *   dlsym(RTLD_DEFAULT) at run time, so one .so serves CPython 3.8..3.13.
 * - Inert without CPython (no PySys_AddAuditHook in the process): the
 *   constructor returns at once.
 * - Only the few object layouts it needs are declared here (PyMethodDef is
 *   part of the stable ABI); objects are otherwise opaque pointers.
 * - PYPROF_FLOOR_DEBUG=1 prints one line on stderr saying what it did.
 * - PYPROF_FLOOR_MODE=legacy forces PyEval_SetProfile on 3.12+ too (to
 *   compare the two floors there); =monitoring is the 3.12+ default.
 */
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the few CPython types used, declared by hand ----------------------- */

typedef struct floor_pyobject floor_pyobject; /* opaque PyObject */
typedef floor_pyobject *(*floor_fastcall)(floor_pyobject *self,
                                          floor_pyobject *const *args,
                                          ptrdiff_t nargs);
typedef void (*floor_fnptr)(void); /* any function pointer */
typedef struct floor_methoddef { /* PyMethodDef, stable ABI layout */
  const char *ml_name;
  floor_fnptr ml_meth; /* a floor_fastcall, stored as PyCFunction */
  int ml_flags;
  const char *ml_doc;
} floor_methoddef;
#define FLOOR_METH_FASTCALL 0x0080

typedef int (*floor_audithook)(const char *event, floor_pyobject *args,
                               void *data);
typedef int (*floor_tracefunc)(floor_pyobject *obj, void *frame, int what,
                               floor_pyobject *arg);

/* ---- resolved CPython API (set once in floor__resolve) ------------------ */

static struct {
  int (*AddAuditHook)(floor_audithook, void *);
  const char *(*GetVersion)(void);
  void (*SetProfile)(floor_tracefunc, floor_pyobject *);
  floor_pyobject *(*CFunction_NewEx)(floor_methoddef *, floor_pyobject *,
                                     floor_pyobject *);
  floor_pyobject *(*ImportModule)(const char *);
  floor_pyobject *(*GetAttrString)(floor_pyobject *, const char *);
  floor_pyobject *(*CallMethod)(floor_pyobject *, const char *, const char *,
                                ...);
  long (*LongAsLong)(floor_pyobject *);
  void (*IncRef)(floor_pyobject *);
  void (*DecRef)(floor_pyobject *);
  floor_pyobject *(*ErrOccurred)(void);
  void (*ErrClear)(void);
  floor_pyobject *None; /* &_Py_NoneStruct */
} py;

/* Set by the first run_* event; the audit hook is a no-op afterwards.
 * Only touched with the GIL held, so no atomics. */
static int floor__started;
static int floor__debug;
static int floor__force_legacy; /* PYPROF_FLOOR_MODE=legacy */

static floor_pyobject *floor__noop(floor_pyobject *self,
                                   floor_pyobject *const *args,
                                   ptrdiff_t nargs);
static floor_pyobject *floor__thread_first(floor_pyobject *self,
                                           floor_pyobject *const *args,
                                           ptrdiff_t nargs);

static floor_methoddef floor__noop_def = {"floor_noop", (floor_fnptr)floor__noop,
                                          FLOOR_METH_FASTCALL,
                                          "empty sys.monitoring callback"};
static floor_methoddef floor__thread_def = {
    "floor_thread_profile", (floor_fnptr)floor__thread_first, FLOOR_METH_FASTCALL,
    "installs the empty C profile hook in the calling thread"};

/* ---- the empty callbacks ------------------------------------------------ */

/* The <= 3.11 hook: does nothing, as cheaply as a C hook can. */
static int floor__empty_hook(floor_pyobject *obj, void *frame, int what,
                             floor_pyobject *arg) {
  (void)obj;
  (void)frame;
  (void)what;
  (void)arg;
  return 0;
}

/* The >= 3.12 sys.monitoring callback: returns None (never DISABLE, which
 * would make it cheaper than cProfile's callbacks). */
static floor_pyobject *floor__noop(floor_pyobject *self,
                                   floor_pyobject *const *args,
                                   ptrdiff_t nargs) {
  (void)self;
  (void)args;
  (void)nargs;
  py.IncRef(py.None);
  return py.None;
}

/* Given to threading.setprofile on <= 3.11: threading calls
 * sys.setprofile(this) in each new thread, the first profile event then
 * lands here and replaces the Python-level trampoline with the C hook. The
 * function object stays alive (threading._profile_hook holds it) while the
 * trampoline that called us returns. */
static floor_pyobject *floor__thread_first(floor_pyobject *self,
                                           floor_pyobject *const *args,
                                           ptrdiff_t nargs) {
  (void)self;
  (void)args;
  (void)nargs;
  py.SetProfile(floor__empty_hook, NULL);
  py.IncRef(py.None);
  return py.None;
}

/* ---- installation ------------------------------------------------------- */

/* Parses "3.11.2 (main, ...)" into 311; 0 if unreadable. */
static int floor__version(void) {
  const char *v = py.GetVersion();
  int major = 0, minor = 0;
  if (!v || sscanf(v, "%d.%d", &major, &minor) != 2)
    return 0;
  return major * 100 + minor;
}

/* Calls obj.name(fmt, ...) and drops the result; returns -1 on error. */
#define FLOOR_CALL(obj, name, ...)                                            \
  floor__drop(py.CallMethod((obj), (name), __VA_ARGS__))

static int floor__drop(floor_pyobject *res) {
  if (!res)
    return -1;
  py.DecRef(res);
  return 0;
}

/* <= 3.11: profile hook on this (main) thread and on threads started later
 * through the threading module. Threads created from C are not covered. */
static int floor__install_legacy(void) {
  py.SetProfile(floor__empty_hook, NULL);
  floor_pyobject *threading = py.ImportModule("threading");
  if (!threading)
    return -1;
  floor_pyobject *fn = py.CFunction_NewEx(&floor__thread_def, NULL, NULL);
  int rc = -1;
  if (fn) {
    rc = FLOOR_CALL(threading, "setprofile", "O", fn);
    py.DecRef(fn);
  }
  py.DecRef(threading);
  return rc;
}

/* >= 3.12: sys.monitoring with cProfile's events on a free tool id. */
static int floor__install_monitoring(void) {
  static const char *const events[] = {
      "PY_START", "PY_RESUME",  "PY_THROW", "PY_RETURN", "PY_YIELD",
      "PY_UNWIND", "CALL",      "C_RETURN", "C_RAISE"};
  static const int tool_ids[] = {5, 4, 3, 1, 0};
  int rc = -1, tool = -1;
  floor_pyobject *sys = NULL, *mon = NULL, *evs = NULL, *fn = NULL;

  if (!(sys = py.ImportModule("sys")))
    goto out;
  if (!(mon = py.GetAttrString(sys, "monitoring")))
    goto out;
  if (!(evs = py.GetAttrString(mon, "events")))
    goto out;
  for (size_t i = 0; i < sizeof tool_ids / sizeof tool_ids[0]; i++) {
    if (FLOOR_CALL(mon, "use_tool_id", "is", tool_ids[i], "floor") == 0) {
      tool = tool_ids[i];
      break;
    }
    py.ErrClear(); /* id in use: try the next one */
  }
  if (tool < 0)
    goto out;
  if (!(fn = py.CFunction_NewEx(&floor__noop_def, NULL, NULL)))
    goto out;
  long mask = 0;
  for (size_t i = 0; i < sizeof events / sizeof events[0]; i++) {
    floor_pyobject *ev = py.GetAttrString(evs, events[i]);
    if (!ev)
      goto out;
    long bit = py.LongAsLong(ev);
    if (FLOOR_CALL(mon, "register_callback", "iOO", tool, ev, fn) < 0) {
      py.DecRef(ev);
      goto out;
    }
    py.DecRef(ev);
    mask |= bit;
  }
  rc = FLOOR_CALL(mon, "set_events", "il", tool, mask);
  if (floor__debug && rc == 0)
    fprintf(stderr, "floor: sys.monitoring tool %d events 0x%lx\n", tool,
            mask);
out:
  if (fn)
    py.DecRef(fn);
  if (evs)
    py.DecRef(evs);
  if (mon)
    py.DecRef(mon);
  if (sys)
    py.DecRef(sys);
  return rc;
}

static int floor__audit(const char *event, floor_pyobject *args, void *data) {
  (void)args;
  (void)data;
  if (floor__started || strncmp(event, "cpython.run_", 12) != 0)
    return 0;
  const char *what = event + 12;
  if (strcmp(what, "file") && strcmp(what, "module") &&
      strcmp(what, "command") && strcmp(what, "stdin"))
    return 0;
  floor__started = 1; /* before any call that may audit again */
  int version = floor__version();
  int rc = version >= 312 && !floor__force_legacy
               ? floor__install_monitoring()
                          : floor__install_legacy();
  if (rc < 0) {
    fprintf(stderr, "floor: could not install the empty profiler\n");
    if (py.ErrOccurred())
      py.ErrClear(); /* never fail the audited operation */
  } else if (floor__debug) {
    fprintf(stderr, "floor: installed for %d on %s\n", version, event);
  }
  return 0;
}

/* Resolves everything; returns -1 (and stays inert) if anything is absent. */
static int floor__resolve(void) {
#define FLOOR_SYM(field, name)                                                \
  do {                                                                        \
    *(void **)&py.field = dlsym(RTLD_DEFAULT, name);                          \
    if (!py.field)                                                            \
      return -1;                                                              \
  } while (0)
  FLOOR_SYM(AddAuditHook, "PySys_AddAuditHook");
  FLOOR_SYM(GetVersion, "Py_GetVersion");
  FLOOR_SYM(SetProfile, "PyEval_SetProfile");
  FLOOR_SYM(CFunction_NewEx, "PyCFunction_NewEx");
  FLOOR_SYM(ImportModule, "PyImport_ImportModule");
  FLOOR_SYM(GetAttrString, "PyObject_GetAttrString");
  FLOOR_SYM(CallMethod, "PyObject_CallMethod");
  FLOOR_SYM(LongAsLong, "PyLong_AsLong");
  FLOOR_SYM(IncRef, "Py_IncRef");
  FLOOR_SYM(DecRef, "Py_DecRef");
  FLOOR_SYM(ErrOccurred, "PyErr_Occurred");
  FLOOR_SYM(ErrClear, "PyErr_Clear");
  FLOOR_SYM(None, "_Py_NoneStruct");
#undef FLOOR_SYM
  return 0;
}

__attribute__((constructor)) static void floor__init(void) {
  if (!dlsym(RTLD_DEFAULT, "PySys_AddAuditHook"))
    return; /* not a CPython process: stay inert */
  if (floor__resolve() < 0)
    return;
  const char *d = getenv("PYPROF_FLOOR_DEBUG");
  floor__debug = d && *d && strcmp(d, "0") != 0;
  const char *m = getenv("PYPROF_FLOOR_MODE");
  floor__force_legacy = m && strcmp(m, "legacy") == 0;
  py.AddAuditHook(floor__audit, NULL);
}
