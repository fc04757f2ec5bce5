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
 * Deep recursion: with an evaluation function set, the interpreter does
 * not inline Python-to-Python calls, so each nested call takes C stack (as
 * before 3.11) and, on 3.12+, counts against the C recursion limit (two
 * units per call). Unguarded, recursion would fail earlier than it does
 * unprofiled: past ~750 frames on 3.12 (limit 1500, below the default
 * recursion limit of 1000), past ~5 000 on 3.13 (limit 10000) and at
 * ~15 000 on 3.11 (the C stack), the last two only for programs that
 * raise sys.setrecursionlimit. So the hook watches the thread's headroom
 * and, when it gets low, puts the default evaluator back for good and
 * says so: calls are inlined again, the program runs as it would without
 * us, and the profile covers the run until then. On 3.12 that happens at
 * about 500 nested Python calls.
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
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "preload.h"

typedef PyObject *(*eval_fn)(void *tstate, void *iframe, int throwflag);

int pyprof_use_eval;            /* this hook is the event source */
volatile unsigned pyprof_eval_gen; /* bumped when shadow stacks are emptied */
static eval_fn default_eval;    /* _PyEval_EvalFrameDefault */
static void (*set_eval)(void *interp, eval_fn);
static eval_fn (*get_eval)(void *interp);
static void *interp;            /* the main interpreter */
static int gave_up;             /* headroom ran low: never installed again */
static __thread char *stack_floor; /* 3.11: lowest usable stack address */
static __thread int stack_known;   /* stack_floor was looked up */

/* 3.12+: PyThreadState.c_recursion_remaining (int; Include/cpython/
 * pystate.h): at 36 in 3.12 (limit 1500), at 52 in 3.13 (limit 10000 on
 * Linux release builds). We stop with a third of it left on 3.12 and a
 * fifth on 3.13. */
#define TS_C_RECURSION_REMAINING_OFF(minor) ((minor) == 12 ? 36 : 52)
#define C_RECURSION_HEADROOM(minor) ((minor) == 12 ? 500 : 2000)
#define STACK_HEADROOM (1024 * 1024)

/* Whether this thread is close to where the non-inlined calls could make
 * the program fail (see the top). Hot path: one compare. */
static inline int low_headroom(void *ts) {
  if (py.minor >= 12)
    return *(int *)((char *)ts + TS_C_RECURSION_REMAINING_OFF(py.minor)) <
           C_RECURSION_HEADROOM(py.minor);
  if (__builtin_expect(!stack_known, 0)) {
    stack_known = 1;
    pthread_attr_t a;
    void *lo;
    size_t size;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
      if (pthread_attr_getstack(&a, &lo, &size) == 0) {
        size_t room = size / 4 < STACK_HEADROOM ? size / 4 : STACK_HEADROOM;
        stack_floor = (char *)lo + room;
      }
      pthread_attr_destroy(&a);
    }
  }
  return stack_floor && (char *)__builtin_frame_address(0) < stack_floor;
}

/* Puts the default evaluator back for good (see the top). GIL held. */
static void give_up(void) {
  if (gave_up) return;
  gave_up = 1;
  set_eval(interp, default_eval);
  pyprof_say("PYPROF_HOOK=eval: thread %ld is so deep in recursion that the "
             "evaluator hook could make it fail; profiling stopped here (the "
             "profile covers the run until now; the default hook has no such "
             "limit)",
             (long)syscall(SYS_gettid));
}

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

/* The evaluation function of the main interpreter while profiling. */
static PyObject *eval_hook(void *ts, void *iframe, int throwflag) {
  pyprof_thread *t;
  if ((__builtin_expect(pyprof_on != 1, 0) && !pyprof_on_slow()) ||
      (!(t = pyprof_tls) && !(t = pyprof_attach())))
    return default_eval(ts, iframe, throwflag);
  if (__builtin_expect(low_headroom(ts), 0)) {
    give_up();
    return default_eval(ts, iframe, throwflag);
  }
  PyObject *code = *(PyObject **)((char *)iframe + py.iframe_code_off);
  if (__builtin_expect(creates_generator(iframe, code), 0))
    return default_eval(ts, iframe, throwflag);
  uint64_t now = pyprof_vclock_enter(&t->clock, pyprof_clock_read());
  pyprof_enter_code(t, code, now);
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

/* Says once if another frame evaluation function has replaced ours while
 * profiling (a debugger installing its own): the Python calls made after
 * that are not in the profile. Called before each dump; a plain read of
 * the interpreter's pointer, so the dumper thread may call it without the
 * GIL. */
void pyprof_eval_check(void) {
  static int said;
  if (!pyprof_use_eval || gave_up || said || pyprof_on != 1) return;
  if (get_eval(interp) == eval_hook) return;
  said = 1;
  pyprof_say("PYPROF_HOOK=eval: another frame evaluation function replaced "
             "ours (a debugger?); Python calls made after that are not in the "
             "profile");
}

/* Installs (on) or removes the hook for the whole interpreter. GIL held.
 * Removing bumps the generation: frames entered so far will not leave. */
void pyprof_eval_set(int on) {
  if (!on) pyprof_eval_gen++;
  if (gave_up) return;
  if (on && get_eval(interp) == eval_hook) return;
  if (!on && get_eval(interp) != eval_hook) return; /* someone replaced it */
  set_eval(interp, on ? eval_hook : default_eval);
}
