/*
 * hook_legacy.c -- the profile hook (PyEval_SetProfile), on every thread.
 *
 * Events become engine calls: 'call' and 'c_call' enter, 'return',
 * 'c_return' and 'c_exception' leave, as in CPython's _lsprof.c. Built-in
 * calls are only counted when the callable is a PyCFunction (as cProfile).
 *
 * Threads. PyEval_SetProfile only covers the calling thread, and no
 * interpreter of 3.8-3.12 tells us when a thread state appears. So:
 * - at start, the hook goes on every existing thread state;
 * - the interpreter's list of thread states is checked whenever a built-in
 *   returns (threads from `threading` and `_thread` get their state in the
 *   parent, inside start_new_thread, before they run) and whenever the head
 *   of that list changes; each state without a profile function gets ours.
 *   A thread created in C (PyGILState_Ensure) is found at the first event
 *   of any profiled thread after it appeared; calls it makes before that
 *   are not seen.
 * A thread whose program installed its own profile function keeps it.
 *
 * Everything here runs with the GIL held (it is called by the interpreter
 * or from start/stop, which hold it).
 */
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "preload.h"

static __thread pyprof_thread *pyprof_tls; /* this thread's engine state */
static pthread_key_t tls_key;              /* retires it at thread exit */
static void *interp;                       /* the main interpreter */
static void *known_head;                   /* thread list head last seen */

static int hook(PyObject *obj, void *frame, int what, PyObject *arg);

static void retire(void *p) { pyprof_thread_retire(p); }

/* First event of this thread: creates its state. */
static pyprof_thread *attach(void) {
  pyprof_thread *t = pyprof_thread_new((uint64_t)syscall(SYS_gettid));
  if (!t) return NULL;
  pthread_setspecific(tls_key, t);
  pyprof_tls = t;
  return t;
}

pyprof_thread *pyprof_hook_self(void) { return pyprof_tls; }

/* Puts the hook on every thread state that has no profile function (on
 * every one when that cannot be read on this version). */
static void install_all(void) {
  void *head = py.PyInterpreterState_ThreadHead(interp);
  known_head = head;
  for (void *ts = head; ts; ts = py.PyThreadState_Next(ts))
    if (!py.ts_profilefunc_off || !pyprof_get_profile(ts))
      pyprof_set_profile(ts, hook);
}

/* Cheap test for a thread state that appeared since the last look: the
 * list head moved, or the head (new states go first) has no profile
 * function (a new state at a recycled address). */
static inline void check_threads(void) {
  void *head = py.PyInterpreterState_ThreadHead(interp);
  if (__builtin_expect(head != known_head || !pyprof_get_profile(head), 0))
    install_all();
}

/* Slow path of a call: first sight of `key` in this thread. */
static pyprof_entry *first_sight(pyprof_thread *t, const void *key,
                                 PyObject *obj, int is_code) {
  pyprof_fid fid = is_code ? pyprof_name_code(obj) : pyprof_name_cfunc(obj);
  if (fid == PYPROF_FID_NONE) return NULL;
  return pyprof_insert(t, key, fid);
}

static int hook(PyObject *self_, void *frame, int what, PyObject *arg) {
  (void)self_;
  if (__builtin_expect(!pyprof_on, 0)) return 0;
  pyprof_thread *t = pyprof_tls;
  if (__builtin_expect(!t, 0) && !(t = attach())) return 0;
  uint64_t now = pyprof_vclock_enter(&t->clock, pyprof_clock_read());
  switch (what) {
  case PyTrace_CALL: {
    void *code = pyprof_frame_code(frame);
    pyprof_entry *e = pyprof_lookup(t, code);
    if (__builtin_expect(!e, 0)) e = first_sight(t, code, code, 1);
    if (e) pyprof_enter(t, e, now);
    else pyprof_enter_lost(t);
    break;
  }
  case PyTrace_RETURN:
    pyprof_leave(t, now);
    break;
  case PyTrace_C_CALL: {
    if (!pyprof_is_cfunc(arg)) break;
    const void *key = pyprof_cfunc_key(arg);
    pyprof_entry *e = pyprof_lookup(t, key);
    if (__builtin_expect(!e, 0)) e = first_sight(t, key, arg, 0);
    if (e) pyprof_enter(t, e, now);
    else pyprof_enter_lost(t);
    break;
  }
  case PyTrace_C_RETURN:
  case PyTrace_C_EXCEPTION:
    if (!pyprof_is_cfunc(arg)) break;
    pyprof_leave(t, now);
    break;
  default:
    break;
  }
  if (what != PyTrace_RETURN) check_threads();
  pyprof_vclock_leave(&t->clock);
  return 0;
}

int pyprof_hook_start(void) {
  static int key_made;
  if (!key_made) {
    if (pthread_key_create(&tls_key, retire) != 0) return -1;
    key_made = 1;
  }
  interp = py.PyInterpreterState_Main();
  void *self = py.PyGILState_GetThisThreadState();
  py.PyEval_SetProfile(hook, NULL);
  /* Check the version-specific offset against what the API just did. */
  if (self && pyprof_get_profile(self) != hook) py.ts_profilefunc_off = 0;
  if (py.ts_profilefunc_off) install_all();
  return 0;
}

void pyprof_hook_stop(void) {
  for (void *ts = py.PyInterpreterState_ThreadHead(interp); ts;
       ts = py.PyThreadState_Next(ts))
    if (pyprof_get_profile(ts) == hook) pyprof_set_profile(ts, NULL);
}
