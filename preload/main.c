/*
 * main.c -- the library's life in a process: switch-on, start, dumps.
 *
 * Constructor: if the process has no CPython, return at once (no thread,
 * no handler, no file, no output). Otherwise read PYPROF_* (a bad value:
 * one `pyprof:` line, stay inert) and add an audit hook, which CPython
 * keeps across its initialisation.
 *
 * Start (GIL held, before user code): at the first `cpython.run_*` audit
 * event (run_file, run_module, run_command, run_stdin,
 * run_interactivehook), or right after Py_Initialize()/Py_InitializeEx()
 * return in a program that embeds Python (interposed below).
 *
 * Stop and final dump: from a Python atexit callback registered at start,
 * so after threading's shutdown and the program's own atexit callbacks;
 * a C atexit handler covers embedders that exit without Py_Finalize().
 * Activations still on a stack then are counted as returning at the dump,
 * as cProfile does when it is disabled.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "config.h"
#include "dump.h"
#include "preload.h"

#define PUBLIC __attribute__((visibility("default")))

volatile int pyprof_on;        /* collecting; see preload.h */
volatile int pyprof_paused;    /* paused by PYPROF_START or the toggle */
pyprof_config pyprof_cfg;      /* loaded once by the constructor */
pid_t pyprof_pid;              /* getpid(), updated in a fork child */
int pyprof_is_child;           /* a child of a profiled process */

static int usable;              /* CPython present and config valid */
static int started;             /* start() ran (GIL held when written) */
static int finished; /* final dump done or abandoned; atomic: the dumper
                        thread reads it */
static unsigned long dump_seq;  /* %n of the next dump; dump_lock */
static char out_tmpl[PYPROF_PATH_MAX]; /* template in use */
static pthread_mutex_t dump_lock = PTHREAD_MUTEX_INITIALIZER;

int pyprof_started(void) { return started; }
int pyprof_finished(void) {
  return __atomic_load_n(&finished, __ATOMIC_ACQUIRE);
}

/* One line on stderr, prefixed "pyprof: ". Not async-signal-safe. */
void pyprof_say(const char *fmt, ...) {
  char line[PYPROF_PATH_MAX + 256];
  int n = snprintf(line, sizeof line, "pyprof: ");
  va_list ap;
  va_start(ap, fmt);
  n += vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  va_end(ap);
  if (n > (int)sizeof line - 2) n = (int)sizeof line - 2;
  line[n++] = '\n';
  ssize_t w = write(2, line, (size_t)n);
  (void)w;
}

/* ---- dumps --------------------------------------------------------------- */

static int exec_gen; /* this image replaced a profiled one (os.exec*) */

/* Inserts `tag` before the extension of the file name in out_tmpl. */
static void insert_tag(const char *tag) {
  char t[PYPROF_PATH_MAX];
  snprintf(t, sizeof t, "%s", out_tmpl);
  const char *base = strrchr(t, '/');
  const char *dot = strrchr(base ? base + 1 : t, '.');
  if (!dot || dot == (base ? base + 1 : t)) dot = t + strlen(t);
  snprintf(out_tmpl, sizeof out_tmpl, "%.*s%s%s", (int)(dot - t), t, tag, dot);
}

/* The template in use, so that no two processes (or process images)
 * write the same file: a child whose template has no %p gets ".<pid>"
 * before the extension; an image that replaced a profiled one of the same
 * pid through os.exec* gets ".exec<k>". */
static void choose_template(void) {
  snprintf(out_tmpl, sizeof out_tmpl, "%s", pyprof_cfg.out);
  if (pyprof_is_child && !pyprof_template_has_pid(pyprof_cfg.out))
    insert_tag(".%p");
  if (exec_gen) {
    char tag[32];
    snprintf(tag, sizeof tag, ".exec%d", exec_gen);
    insert_tag(tag);
  }
}

/* "PYPROF_EXECED=<pid>:<k>" for the next image, and the pid that may
 * pass it on: set by mark_exec() (GIL held), read by execve() below. */
#define EXECED_EQ "PYPROF_EXECED="
static char exec_entry[64];
static pid_t exec_pid; /* atomic */
static int (*real_execve)(const char *, char *const[], char *const[]);

/* Before os.exec*: tells the next image of this process (same pid) that
 * it replaces a profiled one. os.execv() and friends pass the C
 * environment on, so it is set there; os.execve() passes an environment
 * of the program's own, to which execve() below adds it. */
static void mark_exec(void) {
  snprintf(exec_entry, sizeof exec_entry, EXECED_EQ "%ld:%d", (long)getpid(),
           exec_gen + 1);
  setenv("PYPROF_EXECED", exec_entry + sizeof EXECED_EQ - 1, 1);
  __atomic_store_n(&exec_pid, getpid(), __ATOMIC_RELEASE);
}

/* Interposed: os.execve() calls it with the program's environment right
 * after the os.exec audit event. Then, and only in the process that saw
 * that event, the environment passed on gets PYPROF_EXECED (replacing a
 * stale one the program copied from os.environ), so that the new image
 * writes its own file instead of overwriting this one. Anything else
 * passes through untouched. Async-signal-safe (a fork or vfork child
 * calls it): no allocation, the new array is on the stack. */
PUBLIC int execve(const char *path, char *const argv[], char *const envp[]) {
  pid_t mine = __atomic_load_n(&exec_pid, __ATOMIC_ACQUIRE);
  if (!real_execve) /* before our constructor ran (another library's) */
    return (int)syscall(SYS_execve, path, argv, envp);
  if (!mine || !envp || getpid() != mine) return real_execve(path, argv, envp);
  size_t n = 0;
  while (envp[n] && n < 65536) n++;
  if (envp[n]) return real_execve(path, argv, envp); /* absurdly large */
  char *env[n + 2];
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (strncmp(envp[i], EXECED_EQ, sizeof EXECED_EQ - 1) != 0)
      env[k++] = envp[i];
  env[k++] = exec_entry;
  env[k] = NULL;
  return real_execve(path, argv, env);
}

/* Writes one .prof of everything so far; with `skip_empty`, nothing if no
 * call was recorded. Safe without the GIL: reads only engine data.
 * Serialised by dump_lock. */
static void dump(int skip_empty, int snapshot) {
  pyprof_lock(&dump_lock);
  if (snapshot && pyprof_finished()) { /* the final dump came first */
    pyprof_unlock(&dump_lock);
    return;
  }
  pyprof_snapshot s;
  pyprof_buf b;
  pyprof_buf_init(&b);
  /* While paused, live frames are counted up to their last event. */
  uint64_t now = pyprof_paused ? 0 : pyprof_clock_read();
  if (pyprof_snapshot_take(&s, pyprof_hook_self(), now) < 0) {
    pyprof_say("out of memory while taking a snapshot; no profile written");
    goto out;
  }
  if (skip_empty && s.nrows == 0) goto out_snap;
  double tick = pyprof_clock_tick_seconds();
  char tick_s[32], bias_s[32], far_s[32], res_s[32], pid_s[24], ver_s[32],
      thr_s[16], drop_s[24];
  snprintf(tick_s, sizeof tick_s, "%.17g", tick);
  snprintf(bias_s, sizeof bias_s, "%.17g", (double)pyprof_clk.bias * tick);
  snprintf(far_s, sizeof far_s, "%.17g", (double)pyprof_clk.bias_far * tick);
  snprintf(res_s, sizeof res_s, "%.3g", pyprof_clock_resolution());
  snprintf(pid_s, sizeof pid_s, "%ld", (long)getpid());
  snprintf(ver_s, sizeof ver_s, "%d.%d.%d", py.major, py.minor, py.micro);
  snprintf(thr_s, sizeof thr_s, "%u", s.nthreads);
  snprintf(drop_s, sizeof drop_s, "%llu", (unsigned long long)s.dropped);
  const pyprof_meta meta[] = {
      {"tool", "libpyprof"},
      {"timer", pyprof_timer_name(pyprof_clk.timer)},
      {"clock", pyprof_clock_source_name()},
      {"tick_seconds", tick_s},
      {"resolution_seconds", res_s},
      {"bias_seconds", bias_s},
      {"bias_far_seconds", far_s},
      {"python", ver_s},
      {"pid", pid_s},
      {"threads", thr_s},
      {"dropped_events", drop_s},
      {"hook", pyprof_use_eval         ? "eval (PEP 523; no built-ins)"
               : pyprof_use_monitoring ? "sys.monitoring"
                                       : "PyEval_SetProfile"},
  };
  if (pyprof_pstats_encode(&b, &s, tick, meta, sizeof meta / sizeof *meta) <
          0 ||
      (pyprof_paths_enabled &&
       pyprof_paths_encode(&b, &s, tick, PYPROF_PATH_DEPTH) < 0)) {
    pyprof_say("out of memory while encoding the profile; no profile written");
    goto out_snap;
  }
  char path[PYPROF_PATH_MAX];
  if (pyprof_template_expand(out_tmpl, (long)getpid(), dump_seq, (long)time(NULL),
                             path, sizeof path) < 0) {
    pyprof_say("output path too long; no profile written");
    goto out_snap;
  }
  __atomic_store_n(&dump_seq, dump_seq + 1, __ATOMIC_RELAXED); /* read
                                                   by signal handlers */
  if (pyprof_write_atomic(path, b.data, b.len) < 0)
    pyprof_say("cannot write %s: %s", path,
               errno == EINVAL ? "not a regular file" : strerror(errno));
  else if (!pyprof_cfg.quiet)
    pyprof_say("wrote %s (%zu function%s)", path, s.nrows,
               s.nrows == 1 ? "" : "s");
out_snap:
  pyprof_snapshot_free(&s);
out:
  pyprof_buf_free(&b);
  pyprof_unlock(&dump_lock);
}

/* A snapshot (not the final dump): skipped once the final dump began,
 * checked again under dump_lock. */
void pyprof_dump(void) {
  if (pyprof_finished()) return;
  pyprof_eval_check();
  dump(0, 1);
}

/* Async-signal-safe: template expansion only. */
int pyprof_output_path(char *buf, size_t len) {
  return pyprof_template_expand(out_tmpl, (long)getpid(),
                                __atomic_load_n(&dump_seq, __ATOMIC_RELAXED),
                                (long)time(NULL), buf, len);
}

/* Stops collecting and writes the final profile. GIL held if `gil`. A
 * second caller (a fatal signal racing _exit, say) waits until the first
 * has written the file, so the process never ends half-way through. */
static pthread_mutex_t finish_lock = PTHREAD_MUTEX_INITIALIZER;
static void finish(int gil, int skip_empty) {
  if (!started) return;
  pyprof_lock(&finish_lock);
  if (!finished) {
    pyprof_eval_check();
    __atomic_store_n(&finished, 1, __ATOMIC_RELEASE);
    pyprof_on = 0;
    if (gil) pyprof_hook_stop();
    dump(skip_empty, 0);
  }
  pyprof_unlock(&finish_lock);
  /* The program may reach its end while the dumper writes the file of a
   * SIGTERM: it must still die by that signal, not exit normally. */
  pyprof_die_if_fatal();
}

void pyprof_finish(int gil) { finish(gil, 0); }
void pyprof_finish_at_exit(void) { finish(0, 1); }

void pyprof_abandon(void) {
  if (!started || pyprof_finished()) return;
  __atomic_store_n(&finished, 1, __ATOMIC_RELEASE);
  pyprof_on = 0;
  pyprof_hook_stop();
}

/* Pauses (cProfile's disable: live frames count as returning now) or
 * resumes collection. GIL held. */
void pyprof_pause(int pause) {
  if (pause == pyprof_paused || pyprof_finished()) return;
  if (pause) {
    pyprof_on = 0;
    pyprof_hook_stop();
    pyprof_flush_all(pyprof_clock_read());
    pyprof_paused = 1;
  } else {
    pyprof_paused = 0;
    pyprof_on = 1;
    pyprof_hook_start();
  }
}

/* Around fork(): phase 0 prepare, 1 parent, 2 child. */
void pyprof_main_atfork(int phase) {
  if (phase == 0) {
    pyprof_lock(&finish_lock);
    pyprof_lock(&dump_lock);
    return;
  }
  if (phase == 2) {
    pyprof_pid = getpid();
    pyprof_is_child = 1;
    dump_seq = 0;
    choose_template();
  }
  pyprof_unlock(&dump_lock);
  pyprof_unlock(&finish_lock);
}

/* Python atexit callback (a built-in we register). */
static PyObject *atexit_cb(PyObject *self, PyObject *unused) {
  (void)self;
  (void)unused;
  finish(1, 0);
  py.Py_IncRef(py.Py_None);
  return py.Py_None;
}

static PyMethodDef atexit_def = {"_pyprof_atexit", atexit_cb, PY_METH_NOARGS,
                                 NULL};

/* Registers atexit_cb with Python's atexit module. GIL held. */
static int register_atexit(void) {
  PyObject *fn = py.PyCFunction_NewEx(&atexit_def, NULL, NULL);
  PyObject *mod = fn ? py.PyImport_ImportModule("atexit") : NULL;
  PyObject *r = mod ? py.PyObject_CallMethod(mod, "register", "O", fn) : NULL;
  if (r) py.Py_DecRef(r);
  if (mod) py.Py_DecRef(mod);
  if (fn) py.Py_DecRef(fn);
  if (!r) py.PyErr_Clear();
  return r ? 0 : -1;
}

/* C exit(): covers embedders that never call Py_Finalize(). */
static void c_exit_handler(void) {
  if (started && !pyprof_finished() && getpid() == pyprof_pid) finish(0, 0);
}

/* ---- start --------------------------------------------------------------- */

/* Starts profiling in this thread and every existing one. GIL held. */
static void start(void) {
  if (!usable || started) return;
  started = 1;
  PyObject *et, *ev, *tb;
  py.PyErr_Fetch(&et, &ev, &tb);
  pyprof_clock_ready();
  if (pyprof_cfg.hook == PYPROF_HOOK_EVAL) {
    if (pyprof_eval_init() == 0) pyprof_use_eval = 1;
    else if (py.minor >= 12 && pyprof_mon_init() == 0)
      pyprof_use_monitoring = 1;
  } else if (pyprof_cfg.hook != PYPROF_HOOK_LEGACY && py.minor >= 12) {
    if (pyprof_mon_init() == 0) pyprof_use_monitoring = 1;
    else if (pyprof_cfg.hook == PYPROF_HOOK_MONITORING)
      pyprof_say("sys.monitoring has no free tool id; using the profile hook");
  } else if (pyprof_cfg.hook == PYPROF_HOOK_MONITORING) {
    pyprof_say("PYPROF_HOOK=monitoring needs Python 3.12+; using the profile "
               "hook");
  }
  if (pyprof_cfg.bias_auto) {
    pyprof_clk.bias = pyprof_calibrate(&pyprof_clk.bias_far);
  } else if (pyprof_cfg.bias > 0 || pyprof_cfg.bias_far > 0) {
    double tick = pyprof_clock_tick_seconds();
    pyprof_clk.bias = (uint64_t)(pyprof_cfg.bias / tick + 0.5);
    /* Only sys.monitoring has far events (core/clock.h). */
    if (pyprof_use_monitoring)
      pyprof_clk.bias_far = (uint64_t)(pyprof_cfg.bias_far / tick + 0.5);
  }
  pyprof_snapshot_init();
  if (register_atexit() < 0)
    pyprof_say("cannot register an atexit callback; the profile is written "
               "at process exit");
  pyprof_control_start();
  pyprof_crash_start();
  if (pyprof_cfg.start_paused) {
    pyprof_paused = 1;
  } else {
    pyprof_on = 1;
    pyprof_hook_start();
  }
  py.PyErr_Restore(et, ev, tb);
}

/* Audit hook: cheap test for the events that mean "user code is next". */
static int audit_hook(const char *event, PyObject *args, void *data) {
  (void)args;
  (void)data;
  if (event[0] == 'c' && !started && strncmp(event, "cpython.run_", 12) == 0)
    start();
  else if (event[0] == 'o' && strcmp(event, "os.exec") == 0 && started &&
           !pyprof_finished()) {
    dump(0, 1); /* the process image is replaced: write what it did */
    mark_exec();
  }
  return 0;
}

/* Embedders: Py_Initialize() is Py_InitializeEx(1). In a program that
 * defines these itself (a static interpreter) its own definitions win and
 * these are never called. */
PUBLIC void Py_InitializeEx(int initsigs) {
  static void (*real)(int);
  if (!real) *(void **)&real = dlsym(RTLD_NEXT, "Py_InitializeEx");
  if (!real) abort(); /* cannot happen: the caller linked libpython */
  real(initsigs);
  start();
}

PUBLIC void Py_Initialize(void) { Py_InitializeEx(1); }

static const char *get_env(const char *name) { return secure_getenv(name); }

extern char **environ;

__attribute__((constructor)) static void pyprof_init(void) {
  *(void **)&real_execve = dlsym(RTLD_NEXT, "execve");
  int rc = pyprof_pyapi_load();
  if (rc == -1) return; /* not a Python process: stay inert */
  if (rc == -2) {
    pyprof_say("unsupported Python %s; not profiling",
        py.Py_GetVersion ? py.Py_GetVersion() : "?");
    return;
  }
  char cwd[PYPROF_PATH_MAX], err[PYPROF_PATH_MAX + 128];
  if (!getcwd(cwd, sizeof cwd)) snprintf(cwd, sizeof cwd, "/tmp");
  if (pyprof_config_load(&pyprof_cfg, get_env, environ, cwd, err, sizeof err) < 0) {
    pyprof_say("%s; not profiling", err);
    return;
  }
  pyprof_pid = getpid();
  if (pyprof_cfg.root_pid && pyprof_cfg.root_pid != (long)pyprof_pid) {
    pyprof_is_child = 1;
    if (!pyprof_cfg.children) return; /* PYPROF_CHILDREN=0 */
  } else if (!pyprof_cfg.root_pid) {
    char pid_s[24];
    snprintf(pid_s, sizeof pid_s, "%ld", (long)pyprof_pid);
    setenv("PYPROF_ROOT_PID", pid_s, 1); /* children know they are */
  }
  const char *ex = secure_getenv("PYPROF_EXECED");
  long ex_pid = 0;
  int ex_gen = 0;
  if (ex && sscanf(ex, "%ld:%d", &ex_pid, &ex_gen) == 2 &&
      ex_pid == (long)pyprof_pid && ex_gen > 0)
    exec_gen = ex_gen;
  choose_template();
  pyprof_clock_init(pyprof_cfg.timer);
  pyprof_paths_enabled = pyprof_cfg.paths;
  pyprof_fsync_files = pyprof_cfg.fsync;
  if (py.PySys_AddAuditHook(audit_hook, NULL) != 0) {
    pyprof_say("cannot add an audit hook; not profiling");
    return;
  }
  usable = 1;
  atexit(c_exit_handler);
}
