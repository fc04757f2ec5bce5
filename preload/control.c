/*
 * control.c -- the operator's controls: signals, pause/resume, fork, _exit.
 *
 * Signals (installed at start, each only if its disposition is still the
 * default, so a handler the program installed, before or after, wins):
 *   PYPROF_SIGNAL (default SIGUSR2)   write a snapshot, keep running
 *   PYPROF_TOGGLE_SIGNAL              pause / resume collection
 *   SIGTERM, SIGHUP, SIGQUIT, SIGINT  write the profile, then die by the
 *                                     same signal with the default action
 * Handlers only write one byte to a pipe (DESIGN.md principle 5); the
 * dumper thread, which blocks every signal, does the work. It needs no GIL
 * to dump (principle 4); pause/resume take the GIL.
 *
 * fork(): pthread_atfork takes every lock of the library in prepare so a
 * child never inherits one held mid-update; the child drops the parent's
 * statistics (keeping the forking thread's stack) and writes its own file.
 * A child of os.fork() gets a pipe and dumper of its own from Python's
 * after-fork hook; a child forked in C to exec something (subprocess)
 * gets none. _exit() (how multiprocessing children end) is interposed to
 * write the file first; an _exit with nothing profiled writes nothing.
 *
 * Shared state: `ctl_pipe` is written by handlers (write(2) only) and
 * read by the dumper. A fork child closes the parent's pipe (handlers then
 * fail with EBADF, harmlessly) before making its own.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "preload.h"

/* One byte per request: the type in the low 3 bits, a signal number
 * (MSG_FATAL) in the others. */
#define MSG_WAKE 0 /* no request: wakes the dumper to load libunwind */
#define MSG_SNAPSHOT 1
#define MSG_TOGGLE 2
#define MSG_FATAL 3
#define MSG_STACKS 4
#define MSG_CRASH 5
#define MSG_QUIT 6 /* the dumper thread ends (around os.fork) */
#define MSG_STACKS_NATIVE 7
#define MSG_TYPE(m) ((m) & 7)
#define MSG_SIG(m) ((m) >> 3)

static int ctl_pipe[2] = {-1, -1};
static pthread_t dumper_th;       /* joinable; valid while dumper_running */
static int dumper_running;        /* GIL held or fork handlers when written */
static int py_fork;               /* an os.fork() is under way */
static volatile pid_t dumper_tid; /* its kernel thread id */
static int done_pipe[2] = {-1, -1}; /* the dumper says a crash dump is done */
static int fatal_sigs[] = {SIGTERM, SIGHUP, SIGQUIT, SIGINT};
/* A fatal signal being handled: set by its handler; whoever ends the
 * process through pyprof_finish*() dies by it (pyprof_die_if_fatal). */
static volatile sig_atomic_t fatal_pending;

/* The dumper thread's kernel id, 0 if none. Async-signal-safe. */
pid_t pyprof_dumper_tid(void) { return dumper_running ? dumper_tid : 0; }

/* Whether a dumper thread has been created (it may not have run yet).
 * Async-signal-safe. */
int pyprof_dumper_started(void) { return dumper_running; }

/* Async-signal-safe: write(2) of one byte, errno preserved. */
static void post(unsigned char msg) {
  int saved = errno;
  ssize_t w = write(ctl_pipe[1], &msg, 1);
  (void)w; /* a full pipe already holds a request */
  errno = saved;
}

/* Async-signal-safe. A sigqueue(2) with PYPROF_STACKS_REQUEST asks for
 * the live stacks instead of a snapshot (`pyprof stacks PID`). */
static void on_snapshot(int sig, siginfo_t *si, void *uc) {
  (void)sig;
  (void)uc;
  if (si && si->si_code == SI_QUEUE &&
      si->si_value.sival_int == PYPROF_STACKS_REQUEST)
    post(MSG_STACKS);
  else if (si && si->si_code == SI_QUEUE &&
           si->si_value.sival_int == PYPROF_STACKS_NATIVE)
    post(MSG_STACKS_NATIVE);
  else
    post(MSG_SNAPSHOT);
}

/* Async-signal-safe: has the dumper load libunwind now if it has not. */
void pyprof_control_wake(void) {
  if (ctl_pipe[1] >= 0) post(MSG_WAKE);
}

/* Async-signal-safe: asks the dumper for the profile of a crashing process
 * and waits for it, at most `timeout_ms`. */
void pyprof_control_crash_dump(int timeout_ms) {
  if (ctl_pipe[1] < 0 || done_pipe[0] < 0) return;
  post(MSG_CRASH);
  struct pollfd p = {.fd = done_pipe[0], .events = POLLIN};
  while (poll(&p, 1, timeout_ms) < 0 && errno == EINTR) {
  }
}

/* Async-signal-safe. */
static void on_toggle(int sig) {
  (void)sig;
  post(MSG_TOGGLE);
}

/* Async-signal-safe: the dumper writes the file and re-raises. Meanwhile
 * the interrupted thread must not go on running the program (a service
 * would keep serving after SIGTERM), so it waits here for the end, unless
 * it is inside the library (mid-event or holding a lock of ours: the
 * dumper would wait for it). The wait is bounded (10 s) in case this
 * thread holds a lock of the C library that the dumper also needs. */
static void on_fatal(int sig) {
  int saved = errno;
  if (fatal_pending) return;
  fatal_pending = sig;
  post((unsigned char)(MSG_FATAL | (sig << 3)));
  pyprof_thread *t = pyprof_tls;
  if (pyprof_busy == 0 && !(t && (t->seq & 1))) {
    struct timespec d = {0, 10000000};
    for (int i = 0; i < 1000; i++) nanosleep(&d, NULL);
  }
  errno = saved;
}

/* Dies by `sig` with its default action. */
static void die_by(int sig);

void pyprof_die_if_fatal(void) {
  if (fatal_pending) die_by(fatal_pending);
}

static void die_by(int sig) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  sigaction(sig, &sa, NULL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  kill(getpid(), sig);
  /* The default action of these signals ends the process; this is not
   * reached unless something blocks it elsewhere. */
}

/* Pause or resume with the GIL, from the dumper thread. */
static void toggle(void) {
  if (pyprof_finished() || !py.Py_IsInitialized()) return;
  int st = py.PyGILState_Ensure();
  if (!pyprof_finished()) pyprof_pause(!pyprof_paused);
  py.PyGILState_Release(st);
}

/* The dumper loads libunwind UNWINDER_DELAY_MS after it starts, or at its
 * first request if one comes sooner (a crash handler sends MSG_WAKE).
 * Loading at once cost `python -c pass` 0.4-0.5 ms of wall time (medians
 * of 300 paired runs): the load, 1-2 ms in the dumper, overlapped the end
 * of the program (where exactly the main thread waited for it is not
 * pinned down: the loader's lock and the address-space lock are both
 * candidates). The price: a crash inside an ELF constructor (the
 * loader's lock held) in a process's first UNWINDER_DELAY_MS gets no
 * native frames, as one in its first millisecond did before. */
#define UNWINDER_DELAY_MS 10

static void *dumper_main(void *arg) {
  (void)arg;
  pyprof_no_arm = 1;
  dumper_tid = (pid_t)syscall(SYS_gettid);
  struct pollfd first = {.fd = ctl_pipe[0], .events = POLLIN};
  while (poll(&first, 1, UNWINDER_DELAY_MS) < 0 && errno == EINTR) {
  }
  pyprof_crash_load_unwinder();
  for (;;) {
    unsigned char msg;
    ssize_t r = read(ctl_pipe[0], &msg, 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return NULL;
    switch (MSG_TYPE(msg)) {
    case MSG_WAKE:
      break;
    case MSG_SNAPSHOT:
      if (pyprof_snapshot_needs_gil()) { /* no membarrier: stop the world */
        if (pyprof_finished() || !py.Py_IsInitialized()) break;
        int st = py.PyGILState_Ensure();
        pyprof_dump();
        py.PyGILState_Release(st);
      } else {
        pyprof_dump();
      }
      break;
    case MSG_TOGGLE:
      toggle();
      break;
    case MSG_FATAL:
      pyprof_finish(0);
      die_by(MSG_SIG(msg));
      break;
    case MSG_STACKS:
    case MSG_STACKS_NATIVE:
      pyprof_write_stacks(MSG_TYPE(msg) == MSG_STACKS_NATIVE);
      break;
    case MSG_QUIT:
      return NULL;
    case MSG_CRASH: {
      pyprof_snapshot_patience_ns = 200000000; /* the faulting thread may
                                                  be stuck mid-event */
      pyprof_dump();
      unsigned char one = 1;
      ssize_t w = write(done_pipe[1], &one, 1);
      (void)w;
      break;
    }
    }
  }
}

/* Starts the dumper thread (all signals blocked), creating the pipes if
 * needed. */
static int dumper_start(void) {
  if (dumper_running) return 0;
  if (ctl_pipe[0] < 0) {
    if (pipe2(ctl_pipe, O_CLOEXEC) < 0) return -1;
    fcntl(ctl_pipe[1], F_SETFL, O_NONBLOCK);
  }
  if (done_pipe[0] < 0 && pipe2(done_pipe, O_CLOEXEC) < 0)
    done_pipe[0] = done_pipe[1] = -1;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setstacksize(&at, 256 * 1024);
  int rc = pthread_create(&dumper_th, &at, dumper_main, NULL);
  pthread_attr_destroy(&at);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    errno = rc;
    return -1;
  }
  dumper_running = 1;
  return 0;
}

static void restart_dumper(void) {
  if (dumper_start() < 0)
    pyprof_say("cannot restart the dumper thread after fork; no snapshots "
               "on signal");
}

/* Ends the dumper thread, keeping the pipe: requests that arrive in the
 * meantime wait there for the next dumper. GIL held: it is released while
 * waiting, as the dumper may need it (pause/resume). */
static void dumper_stop(void) {
  if (!dumper_running) return;
  unsigned char q = MSG_QUIT;
  if (write(ctl_pipe[1], &q, 1) != 1) return; /* full: leave it running */
  void *ts = py.PyEval_SaveThread();
  pthread_join(dumper_th, NULL);
  /* pthread_join returns when the thread has cleared its tid; the kernel
   * drops it from the process's thread count (what CPython reads) a
   * moment later. Wait for that, briefly. */
  char task[64];
  snprintf(task, sizeof task, "/proc/self/task/%ld", (long)dumper_tid);
  for (int i = 0; i < 2000 && access(task, F_OK) == 0; i++) {
    struct timespec d = {0, 25000};
    nanosleep(&d, NULL);
  }
  py.PyEval_RestoreThread(ts);
  dumper_running = 0;
}

/* Installs `fn` (or `fn3`, which takes siginfo) for `sig` if nobody has a
 * handler for it. Returns 1 if installed, 0 if the program's disposition
 * was kept. */
static int take_signal3(int sig, void (*fn)(int),
                        void (*fn3)(int, siginfo_t *, void *)) {
  struct sigaction old, sa;
  if (sigaction(sig, NULL, &old) < 0) return 0;
  if ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL) return 0;
  memset(&sa, 0, sizeof sa);
  if (fn3) {
    sa.sa_sigaction = fn3;
    sa.sa_flags = SA_RESTART | SA_SIGINFO;
  } else {
    sa.sa_handler = fn;
    sa.sa_flags = SA_RESTART;
  }
  sigemptyset(&sa.sa_mask);
  return sigaction(sig, &sa, NULL) == 0;
}

static int take_signal(int sig, void (*fn)(int)) {
  return take_signal3(sig, fn, NULL);
}

static void install_signals(void) {
  if (pyprof_cfg.snap_signal &&
      !take_signal3(pyprof_cfg.snap_signal, NULL, on_snapshot))
    pyprof_say("signal %d already has a handler; snapshots on signal are off",
             pyprof_cfg.snap_signal);
  if (pyprof_cfg.toggle_signal &&
      !take_signal(pyprof_cfg.toggle_signal, on_toggle))
    pyprof_say("signal %d already has a handler; pause/resume by signal is off",
             pyprof_cfg.toggle_signal);
  for (size_t i = 0; i < sizeof fatal_sigs / sizeof *fatal_sigs; i++)
    if (fatal_sigs[i] != pyprof_cfg.snap_signal &&
        fatal_sigs[i] != pyprof_cfg.toggle_signal)
      take_signal(fatal_sigs[i], on_fatal);
}

/* ---- fork ---------------------------------------------------------------- */

static void atfork_prepare(void) {
  pyprof_main_atfork(0);
  pyprof_names_atfork(0);
  pyprof_hook_atfork(0);
  pyprof_core_lock();
}

static void atfork_parent(void) {
  pyprof_core_unlock();
  pyprof_hook_atfork(1);
  pyprof_names_atfork(1);
  pyprof_main_atfork(1);
}

static void atfork_child(void) {
  dumper_running = 0; /* threads do not survive fork */
  py_fork = 0;
  pyprof_fork_child(pyprof_hook_self());
  pyprof_core_unlock();
  pyprof_hook_atfork(2);
  pyprof_names_atfork(2);
  pyprof_main_atfork(2);
  pyprof_snapshot_init();
  if (ctl_pipe[0] >= 0) {
    int r = ctl_pipe[0], w = ctl_pipe[1];
    ctl_pipe[0] = ctl_pipe[1] = -1;
    close(r);
    close(w);
  }
  if (done_pipe[0] >= 0) {
    int r = done_pipe[0], w = done_pipe[1];
    done_pipe[0] = done_pipe[1] = -1;
    close(r);
    close(w);
  }
}

/* Python's os.register_at_fork(before=…): CPython 3.12+ warns when a
 * process with more than one OS thread calls os.fork(), so the dumper
 * thread must not exist then; after_in_parent restarts it (after that
 * check). A fork from C (subprocess) keeps it: nothing warns there. */
static PyObject *before_fork(PyObject *self, PyObject *unused) {
  (void)self;
  (void)unused;
  py_fork = 1;
  dumper_stop();
  py.Py_IncRef(py.Py_None);
  return py.Py_None;
}

static PyObject *after_fork_parent(PyObject *self, PyObject *unused) {
  (void)self;
  (void)unused;
  py_fork = 0;
  /* 3.13 checks the thread count after these hooks, so the dumper comes
   * back at the first profiler event instead (pyprof_on_slow). Paused,
   * there are no events: restart it now (3.13 may then warn). */
  if (pyprof_started() && !pyprof_finished()) {
    if (pyprof_on == 1) pyprof_on = 2;
    else restart_dumper();
  }
  py.Py_IncRef(py.Py_None);
  return py.Py_None;
}

int pyprof_on_slow(void) {
  if (pyprof_on != 2) return 0;
  pyprof_on = 1;
  restart_dumper();
  return 1;
}

/* Python's os.register_at_fork(after_in_child=…): the child of os.fork()
 * gets its own dumper, or with PYPROF_CHILDREN=0 stops profiling and
 * writes nothing. GIL held. */
static PyObject *after_fork_child(PyObject *self, PyObject *unused) {
  (void)self;
  (void)unused;
  if (!pyprof_cfg.children) pyprof_abandon();
  else if (pyprof_started() && !pyprof_finished() && dumper_start() < 0)
    pyprof_say("cannot start the dumper thread in the child; no snapshots "
               "on signal");
  py.Py_IncRef(py.Py_None);
  return py.Py_None;
}

static PyMethodDef fork_defs[] = {
    {"_pyprof_before_fork", before_fork, PY_METH_NOARGS, NULL},
    {"_pyprof_after_fork_parent", after_fork_parent, PY_METH_NOARGS, NULL},
    {"_pyprof_after_fork_child", after_fork_child, PY_METH_NOARGS, NULL},
};

static void register_python_fork_hook(void) {
  PyObject *b = py.PyCFunction_NewEx(&fork_defs[0], NULL, NULL);
  PyObject *p = py.PyCFunction_NewEx(&fork_defs[1], NULL, NULL);
  PyObject *c = py.PyCFunction_NewEx(&fork_defs[2], NULL, NULL);
  PyObject *os = b && p && c ? py.PyImport_ImportModule("os") : NULL;
  PyObject *reg = os ? py.PyObject_GetAttrString(os, "register_at_fork") : NULL;
  PyObject *kw = reg ? py.Py_BuildValue("{s:O,s:O,s:O}", "before", b,
                                        "after_in_parent", p, "after_in_child", c)
                     : NULL;
  PyObject *args = kw ? py.Py_BuildValue("()") : NULL;
  PyObject *r = args ? py.PyObject_Call(reg, args, kw) : NULL;
  if (!r) py.PyErr_Clear();
  PyObject *all[] = {r, args, kw, reg, os, b, p, c};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    if (all[i]) py.Py_DecRef(all[i]);
}

int pyprof_control_start(void) {
  static int once;
  if (!once) {
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    once = 1;
  }
  register_python_fork_hook();
  if (dumper_start() < 0) {
    pyprof_say("cannot start the dumper thread (%s); no snapshots on signal",
             strerror(errno));
    return -1;
  }
  install_signals();
  return 0;
}

/* ---- _exit ----------------------------------------------------------------- */

/* Interposed: os._exit() (multiprocessing's children) and C code ending
 * the process without exit(). The file is written first, unless this is a
 * vfork()ed child, which shares the parent's memory (its pid differs from
 * the one we know) and must touch nothing. */
__attribute__((visibility("default"), noreturn)) void _exit(int status) {
  static void (*real)(int);
  if (!real) *(void **)&real = dlsym(RTLD_NEXT, "_exit");
  if (getpid() == pyprof_pid) pyprof_finish_at_exit();
  real(status);
  __builtin_unreachable();
}

__attribute__((visibility("default"), noreturn)) void _Exit(int status) {
  _exit(status);
}
