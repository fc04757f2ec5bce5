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
 * - every later thread state is armed in its own thread, the moment
 *   CPython binds it to the thread: all versions do that with
 *   pthread_setspecific(<its TSS key>, tstate), which we interpose (a libc
 *   call, so this works in a static interpreter too). The key is found at
 *   start as the one whose value in the main thread is its thread state.
 *   Arming writes the profile function into the fresh state as
 *   _PyEval_SetProfile would (the thread holds no GIL yet and nobody else
 *   looks at a state that new). On 3.12+ that function also keeps a count
 *   of profiled threads, so there the thread redoes it through the API at
 *   its first event, with the GIL.
 * - if the key cannot be found, the fallback is to check the thread list
 *   at events: a thread created in C is then found only at the first event
 *   of another profiled thread after it appeared.
 * A thread whose program installed its own profile function keeps it.
 *
 * Everything here runs with the GIL held (it is called by the interpreter
 * or from start/stop, which hold it).
 */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "preload.h"

__thread pyprof_thread *pyprof_tls /* this thread's engine state */
    __attribute__((tls_model("initial-exec")));
int pyprof_use_monitoring;          /* sys.monitoring path (3.12+) */
static pthread_key_t tls_key;              /* retires it at thread exit */
static void *interp;                       /* the main interpreter */
static void *known_head;                   /* thread list head last seen */

/* Arming new thread states (see the top of this file). py_tss_key is
 * written once at start with the GIL held, before any arming. */
static pthread_key_t py_tss_key;  /* CPython's thread-state TSS key */
static int py_tss_known;          /* py_tss_key is valid */
static __thread void *armed_ts;   /* 3.12+: armed, API not yet used */
__thread int pyprof_no_arm;       /* the dumper thread: never armed */

/* 3.12+: states armed directly and not yet redone through the API, so
 * that stop() clears them the same way. Guarded by armed_lock. */
#define MAX_ARMED 256
static pthread_mutex_t armed_lock = PTHREAD_MUTEX_INITIALIZER;
static void *armed[MAX_ARMED];
static int narmed;

static int hook(PyObject *obj, void *frame, int what, PyObject *arg);

/* pthread key destructor: the thread is ending. */
static void retire(void *p) {
  pyprof_thread_retire(p);
  /* Its tables may now be folded and the struct given to another thread:
   * an event after this (another key's destructor running Python) must
   * attach afresh, never write into it. */
  pyprof_tls = NULL;
  pyprof_crash_thread_exit();
}

static int armed_remove(void *ts) {
  int found = 0;
  pyprof_lock(&armed_lock);
  for (int i = 0; i < narmed; i++)
    if (armed[i] == ts) {
      armed[i] = armed[--narmed];
      found = 1;
      break;
    }
  pyprof_unlock(&armed_lock);
  return found;
}

/* First event of this thread: creates its state; on 3.12+ redoes an
 * arming through the API (GIL held now). */
pyprof_thread *pyprof_attach(void) {
  if (armed_ts) {
    void *ts = armed_ts;
    armed_ts = NULL;
    if (armed_remove(ts)) {
      *(Py_tracefunc *)((char *)ts + py.ts_profilefunc_off) = NULL;
      pyprof_set_profile(ts, hook);
    }
  }
  pyprof_thread *t = pyprof_thread_new((uint64_t)syscall(SYS_gettid));
  if (!t) return NULL;
  t->host = py.PyThreadState_Get(); /* GIL held: this thread's state */
  pyprof_crash_thread_init();
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

static int hook(PyObject *self_, void *frame, int what, PyObject *arg) {
  (void)self_;
  if (__builtin_expect(pyprof_on != 1, 0) && !pyprof_on_slow()) return 0;
  pyprof_thread *t = pyprof_tls;
  if (__builtin_expect(!t, 0) && !(t = pyprof_attach())) return 0;
  uint64_t now = pyprof_vclock_enter(&t->clock, pyprof_clock_read());
  switch (what) {
  case PyTrace_CALL:
    pyprof_enter_code(t, pyprof_frame_code(frame), now);
    break;
  case PyTrace_RETURN:
    pyprof_leave(t, now);
    break;
  case PyTrace_C_CALL: {
    if (!pyprof_is_cfunc(arg)) break;
    const void *key = pyprof_cfunc_key(arg);
    pyprof_entry *e = pyprof_lookup(t, key);
    if (__builtin_expect(!e, 0))
      e = pyprof_insert_named(t, key, pyprof_name_cfunc(arg));
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
  if (!py_tss_known && what != PyTrace_RETURN) check_threads();
  pyprof_vclock_leave(&t->clock);
  return 0;
}

/* Arms a thread state that was just bound to the calling thread (see the
 * top of this file). No GIL: only plain stores into the fresh state. */
static void arm(void *ts) {
  if (!pyprof_on || pyprof_no_arm || pyprof_use_monitoring || pyprof_use_eval ||
      pyprof_get_profile(ts))
    return;
  char *p = ts;
  if (py.minor >= 12) {
    pyprof_lock(&armed_lock);
    int ok = narmed < MAX_ARMED;
    if (ok) armed[narmed++] = ts;
    pyprof_unlock(&armed_lock);
    if (!ok) return;
    armed_ts = ts;
  } else if (py.ts_use_tracing_off) {
    *(int *)(p + py.ts_use_tracing_off) = 1;
  } else {
    char *cframe = *(char **)(p + py.ts_cframe_off);
    if (cframe != p + py.ts_root_cframe_off) return; /* not a fresh state */
    if (py.minor == 10) *(int *)cframe = 1;
    else *(unsigned char *)cframe = 255;
  }
  *(Py_tracefunc *)(p + py.ts_profilefunc_off) = hook;
}

static int (*real_setspecific)(pthread_key_t, const void *);

/* Interposed: CPython binds a thread state to its thread through this.
 * Every other call passes straight through. */
/* Not instrumented under TSan: its runtime calls this before a new
 * thread's TSan state exists. */
__attribute__((visibility("default"), no_sanitize("thread"))) int
pthread_setspecific(pthread_key_t key, const void *value) {
  if (!real_setspecific)
    *(void **)&real_setspecific = dlsym(RTLD_NEXT, "pthread_setspecific");
  int rc = real_setspecific(key, value);
  if (py_tss_known && key == py_tss_key && rc == 0) {
    if (value) arm((void *)value);
    else if (armed_ts) {
      armed_remove(armed_ts); /* the state goes away unused */
      armed_ts = NULL;
    }
  }
  return rc;
}

/* Finds CPython's TSS key: the one key whose value in this thread is this
 * thread's state. GIL held. */
static void find_tss_key(void) {
  void *me = py.PyGILState_GetThisThreadState();
  int found = -1;
  if (!me || !py.ts_profilefunc_off) return;
  for (int k = 0; k < PTHREAD_KEYS_MAX; k++) {
    if (pthread_getspecific((pthread_key_t)k) != me) continue;
    if (found >= 0) return; /* ambiguous: use the fallback */
    found = k;
  }
  if (found < 0) return;
  py_tss_key = (pthread_key_t)found;
  py_tss_known = 1;
}

int pyprof_hook_start(void) {
  static int key_made;
  if (!key_made) {
    if (pthread_key_create(&tls_key, retire) != 0) return -1;
    key_made = 1;
  }
  if (pyprof_use_eval) {
    pyprof_eval_set(1);
    return 0;
  }
  if (pyprof_use_monitoring) {
    pyprof_mon_set(1);
    return 0;
  }
  interp = py.PyInterpreterState_Main();
  void *self = py.PyGILState_GetThisThreadState();
  py.PyEval_SetProfile(hook, NULL);
  /* Check the version-specific offset against what the API just did. */
  if (self && pyprof_get_profile(self) != hook) py.ts_profilefunc_off = 0;
  if (py.ts_profilefunc_off) install_all();
  find_tss_key();
  return 0;
}

void pyprof_hook_self_install(int on) {
  if (pyprof_use_eval) { /* no per-thread install: the whole interpreter */
    pyprof_eval_set(on);
    return;
  }
  if (pyprof_use_monitoring) {
    pyprof_mon_set(on);
    return;
  }
  interp = py.PyInterpreterState_Main();
  known_head = py.PyInterpreterState_ThreadHead(interp);
  py.PyEval_SetProfile(on ? hook : NULL, NULL);
}

void pyprof_hook_stop(void) {
  if (pyprof_use_eval) {
    pyprof_eval_set(0);
    return;
  }
  if (pyprof_use_monitoring) {
    pyprof_mon_set(0);
    return;
  }
  if (!interp) return; /* never installed (started paused) */
  for (void *ts = py.PyInterpreterState_ThreadHead(interp); ts;
       ts = py.PyThreadState_Next(ts)) {
    if (pyprof_get_profile(ts) != hook) continue;
    if (armed_remove(ts)) /* never counted by the API: undo by hand */
      *(Py_tracefunc *)((char *)ts + py.ts_profilefunc_off) = NULL;
    else
      pyprof_set_profile(ts, NULL);
  }
}

void pyprof_hook_atfork(int phase) {
  if (phase == 0) {
    pyprof_lock(&armed_lock);
    return;
  }
  if (phase == 2) narmed = 0; /* those states belong to the parent */
  pyprof_unlock(&armed_lock);
}
