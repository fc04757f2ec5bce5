/*
 * hook_eval.c -- PYPROF_HOOK=eval: Python functions timed at the frame
 * evaluator (PEP 523), for honest times of small functions on 3.11+.
 *
 * Why: any profile function puts CPython 3.11 in its tracing mode, where
 * every instruction of every function runs unspecialised; a small loop
 * function truly runs about 2x slower while profiled, under cProfile and
 * the default hook alike, and no bias can take that out (it is a cost per
 * instruction, not per event). 3.12+'s sys.monitoring is much better but
 * still removes superinstructions from instrumented code. This hook sets
 * no profile function and no monitoring events: it replaces the
 * interpreter's frame evaluation function with one that reads the clock,
 * calls _PyEval_EvalFrameDefault, and reads the clock again. The code in
 * between runs exactly as without a profiler (specialised, with its
 * superinstructions); what the interpreter does differently is only that
 * Python-to-Python calls go through the evaluation function instead of
 * being inlined in the caller's loop (a few ns per call).
 *
 * What it sees: every Python frame the evaluator runs (functions, module
 * code, each resumption of a generator or coroutine: cProfile counts
 * those as calls too). What it does not see: built-in functions. Their
 * time is in their caller's own time, and the profile has no
 * "{built-in method ...}" rows. Counts of Python functions are cProfile's.
 *
 * There is one evaluation function per interpreter: if another tool
 * (a debugger's frame evaluator) already set one, we leave it and fall
 * back to the default hook. Only the main interpreter is profiled.
 *
 * Pause, fork and finish: a frame entered through the hook leaves through
 * it too, even after profiling was paused or the stacks were flushed, so
 * each entry remembers the stack generation it was pushed in and only
 * leaves if that is still current (pyprof_eval_gen, bumped whenever the
 * shadow stacks are emptied).
 */
#include <dlfcn.h>

#include "preload.h"

typedef PyObject *(*eval_fn)(void *tstate, void *iframe, int throwflag);

int pyprof_use_eval;            /* this hook is the event source */
volatile unsigned pyprof_eval_gen; /* bumped when shadow stacks are emptied */
static eval_fn default_eval;    /* _PyEval_EvalFrameDefault */
static void (*set_eval)(void *interp, eval_fn);
static eval_fn (*get_eval)(void *interp);
static void *interp;            /* the main interpreter */

/* PyCodeObject.co_flags (int) in 3.11-3.13, from their headers, and the
 * flags of code whose call makes a generator, coroutine or async
 * generator. */
#define CO_FLAGS_OFF 48
#define CO_GENLIKE (0x20 | 0x80 | 0x200)

/* Whether `iframe` is a generator-like function's frame being created:
 * from 3.11 calling such a function runs its frame up to the
 * RETURN_GENERATOR instruction, which returns the new generator. cProfile
 * counts no call there (its call event is at RESUME, after it), only the
 * resumptions; neither do we. A fresh frame is at the start of its code:
 * prev_instr one unit before it (3.11, 3.12), instr_ptr at it (3.13). */
static int creates_generator(void *iframe, PyObject *code) {
  if (!(*(int *)((char *)code + CO_FLAGS_OFF) & CO_GENLIKE)) return 0;
  char *at = *(char **)((char *)iframe + py.fr_instr_off);
  char *start = (char *)code + py.co_code_off;
  return at == (py.minor >= 13 ? start : start - 2);
}

/* Slow path: first sight of `code` in this thread. */
static pyprof_entry *first_sight(pyprof_thread *t, PyObject *code) {
  pyprof_fid fid = pyprof_name_code(code);
  return fid == PYPROF_FID_NONE ? NULL : pyprof_insert(t, code, fid);
}

/* The evaluation function of the main interpreter while profiling. */
static PyObject *eval_hook(void *ts, void *iframe, int throwflag) {
  pyprof_thread *t;
  if ((__builtin_expect(pyprof_on != 1, 0) && !pyprof_on_slow()) ||
      (!(t = pyprof_tls) && !(t = pyprof_attach())))
    return default_eval(ts, iframe, throwflag);
  PyObject *code = *(PyObject **)((char *)iframe + py.iframe_code_off);
  if (__builtin_expect(creates_generator(iframe, code), 0))
    return default_eval(ts, iframe, throwflag);
  uint64_t now = pyprof_vclock_enter(&t->clock, pyprof_clock_read());
  pyprof_entry *e = pyprof_lookup(t, code);
  if (__builtin_expect(!e, 0)) e = first_sight(t, code);
  if (e) pyprof_enter(t, e, now);
  else pyprof_enter_lost(t);
  unsigned gen = pyprof_eval_gen;
  pyprof_vclock_leave(&t->clock);
  PyObject *r = default_eval(ts, iframe, throwflag);
  if (__builtin_expect(gen == pyprof_eval_gen && pyprof_on, 1)) {
    now = pyprof_vclock_enter(&t->clock, pyprof_clock_read());
    pyprof_leave(t, now);
    pyprof_vclock_leave(&t->clock);
  }
  return r;
}

/* Whether this interpreter can take the hook: 3.11+ with the private API,
 * and no other evaluation function installed. GIL held. Says why not. */
int pyprof_eval_init(void) {
  if (py.minor < 11) {
    pyprof_say("PYPROF_HOOK=eval needs Python 3.11+ (older versions have no "
               "tracing-mode slowdown to avoid); using the profile hook");
    return -1;
  }
  *(void **)&default_eval = dlsym(RTLD_DEFAULT, "_PyEval_EvalFrameDefault");
  *(void **)&set_eval = dlsym(RTLD_DEFAULT, "_PyInterpreterState_SetEvalFrameFunc");
  *(void **)&get_eval = dlsym(RTLD_DEFAULT, "_PyInterpreterState_GetEvalFrameFunc");
  interp = py.PyInterpreterState_Main();
  if (!default_eval || !set_eval || !get_eval) {
    pyprof_say("PYPROF_HOOK=eval: this interpreter does not export the frame "
               "evaluation API; using the default hook");
    return -1;
  }
  eval_fn cur = get_eval(interp);
  if (cur && cur != default_eval) {
    pyprof_say("PYPROF_HOOK=eval: another frame evaluation function is "
               "installed (a debugger?); using the default hook");
    return -1;
  }
  return 0;
}

/* Installs (on) or removes the hook for the whole interpreter. GIL held.
 * Removing bumps the generation: frames entered so far will not leave. */
void pyprof_eval_set(int on) {
  if (!on) pyprof_eval_gen++;
  if (on && get_eval(interp) == eval_hook) return;
  if (!on && get_eval(interp) != eval_hook) return; /* someone replaced it */
  set_eval(interp, on ? eval_hook : default_eval);
}
