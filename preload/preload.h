/*
 * preload.h -- what the files of preload/ share.
 *
 * main.c        constructor, configuration, start and stop, dumps
 * control.c     signals, the dumper thread, pause/resume, fork, _exit
 * hook_legacy.c the PyEval_SetProfile hook and per-thread installation
 * names.c       labels of code objects and built-ins, at first sight
 * pyapi.c       run-time CPython API
 *
 * Shared state and its rules:
 * - `pyprof_on` (main.c): 1 while collecting. Written with the GIL held;
 *   read by the hook on every event.
 * - the thread-local `pyprof_tls` (hook_legacy.c): this thread's engine
 *   state; only this thread touches it.
 */
#ifndef PYPROF_PRELOAD_H
#define PYPROF_PRELOAD_H

#include <stdint.h>
#include <sys/types.h>

#include "prof.h"
#include "pyapi.h"

/* pyprof_on: 0 not collecting, 1 collecting, 2 collecting but the
 * dumper thread is to be restarted at the first event (after os.fork()
 * in the parent; see control.c). Hooks test `pyprof_on != 1` and take
 * pyprof_on_slow() then, which returns whether to record the event. */
extern volatile int pyprof_on;
int pyprof_on_slow(void);

/* names.c: registry ids for a code object / a built-in (PyCFunction),
 * computed with Python calls. GIL held; the error indicator is saved and
 * restored. Return PYPROF_FID_NONE on failure. */
pyprof_fid pyprof_name_code(PyObject *code);
pyprof_fid pyprof_name_cfunc(PyObject *fn);

/* Slow path of an event: the first sight of `key` on thread `t`, already
 * named `fid`. Its new entry, or NULL when it could not be named or
 * recorded. */
static inline pyprof_entry *pyprof_insert_named(pyprof_thread *t,
                                                const void *key,
                                                pyprof_fid fid) {
  return fid == PYPROF_FID_NONE ? NULL : pyprof_insert(t, key, fid);
}

/* A Python function (its code object) starts on `t` at `now`: pushes its
 * entry, made and named at first sight (GIL held); a function that could
 * not be recorded keeps the stack balanced. Hot path of every hook. */
static inline void pyprof_enter_code(pyprof_thread *t, PyObject *code,
                                     uint64_t now) {
  pyprof_entry *e = pyprof_lookup(t, code);
  if (__builtin_expect(!e, 0))
    e = pyprof_insert_named(t, code, pyprof_name_code(code));
  if (e) pyprof_enter(t, e, now);
  else pyprof_enter_lost(t);
}

/* The key of a built-in for the lookup table: its PyMethodDef mixed with
 * the type of its `self` (one PyMethodDef may serve several types, whose
 * names then differ). Hot path. */
static inline const void *pyprof_cfunc_key(PyObject *fn) {
  PyObject *self = pyprof_cfunc_self(fn);
  uintptr_t k = (uintptr_t)pyprof_cfunc_ml(fn) ^
                ((uintptr_t)(self ? pyprof_type(self) : 0) *
                 (uintptr_t)0x9E3779B97F4A7C15ull);
  return (const void *)(k ? k : 1);
}

/* main.c */
#include "config.h"
extern pyprof_config pyprof_cfg;  /* read-only after the constructor */
extern pid_t pyprof_pid;          /* this process (updated after fork) */
extern int pyprof_is_child;       /* a child of a profiled process */
extern volatile int pyprof_paused; /* collection paused by the user */
void pyprof_dump(void);           /* one .prof of everything so far */
void pyprof_finish(int gil);      /* stop collecting, final dump */
void pyprof_finish_at_exit(void); /* same, from _exit: no file if empty */
void pyprof_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void pyprof_abandon(void);        /* stop collecting, no dump (GIL held) */
int pyprof_started(void);
int pyprof_finished(void);
void pyprof_main_atfork(int phase); /* 0 prepare, 1 parent, 2 child */

/* The path the next dump would be written to. Async-signal-safe. */
int pyprof_output_path(char *buf, size_t len);

/* crash.c */
#define PYPROF_STACKS_REQUEST 0x70797374 /* sigqueue value: write stacks */
#define PYPROF_STACKS_NATIVE 0x7079736e  /* ... with native stacks too */
void pyprof_crash_start(void);       /* handlers, alt stack; at start */
void pyprof_crash_thread_init(void); /* alt stack for this thread */
void pyprof_crash_thread_exit(void); /* ... taken down at its exit */
void pyprof_write_stacks(int native); /* <profile>.stacks.txt; no GIL */
void pyprof_crash_load_unwinder(void); /* dumper thread, once */

/* pyframes.c: the interpreter's frames of a thread (stack reports) */
typedef struct pyprof_pyframe {
  const void *code; /* code object (unverified: compare before use) */
  int addr;         /* byte offset of the current instruction, -1 unknown */
} pyprof_pyframe;
int pyprof_safe_read(void *out, const void *addr, size_t n);
int pyprof_py_frames(void *tstate, pyprof_pyframe *out, int cap);
int pyprof_code_line(const void *code, int addr);

/* control.c */
void pyprof_control_crash_dump(int timeout_ms); /* async-signal-safe */
void pyprof_control_wake(void);                  /* async-signal-safe */
void pyprof_die_if_fatal(void);   /* a fatal signal arrived: die by it */
pid_t pyprof_dumper_tid(void);    /* 0 if none; async-signal-safe */
int pyprof_dumper_started(void);  /* created, maybe not yet running */
int pyprof_control_start(void);   /* handlers and dumper; GIL held */
void pyprof_pause(int pause);     /* GIL held */

/* names.c */
void pyprof_names_atfork(int phase);

/* calibrate.c: bias in ticks per event for PYPROF_BIAS=auto. GIL held,
 * before profiling starts. */
uint64_t pyprof_calibrate(uint64_t *bias_far); /* bias per event */

/* hook_eval.c (3.11+, PYPROF_HOOK=eval) */
extern int pyprof_use_eval;       /* chosen once at start */
int pyprof_eval_init(void);       /* usable here? says why not; GIL held */
void pyprof_eval_set(int on);     /* whole interpreter; GIL held */
void pyprof_eval_check(void);     /* says if ours was replaced; any thread */

/* hook_monitoring.c (3.12+) */
int pyprof_mon_init(void);        /* own tool id and callbacks; GIL held */
void pyprof_mon_set(int on);      /* all events on/off; GIL held */

/* hook_legacy.c: thread state, and the dispatch between the two paths */
extern __thread pyprof_thread *pyprof_tls /* this thread's engine state */
    __attribute__((tls_model("initial-exec")));
pyprof_thread *pyprof_attach(void);        /* creates it (first event) */
extern int pyprof_use_monitoring;          /* chosen once at start */
void pyprof_hook_self_install(int on); /* this thread only; GIL held */
void pyprof_hook_atfork(int phase);
extern __thread int pyprof_no_arm; /* this thread's states are not armed */
int pyprof_hook_start(void);     /* current + existing threads; GIL held */
void pyprof_hook_stop(void);     /* removes the hook everywhere; GIL held */
pyprof_thread *pyprof_hook_self(void); /* this thread's state or NULL */

#endif
