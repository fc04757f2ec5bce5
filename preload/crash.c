/*
 * crash.c -- fatal signals and live stacks.
 *
 * On SIGSEGV, SIGBUS, SIGILL, SIGFPE or SIGABRT (PYPROF_CRASH=1, the
 * default) the handler, on an alternate stack so that a stack overflow is
 * reported too:
 *   1. writes a crash report to stderr and to "<profile path>.crash.txt":
 *      the signal and faulting address, the Python stack of every thread
 *      (from our shadow stacks: function and file:first line), and the
 *      native stack of the crashing thread (libunwind, from the signal's
 *      context: symbol+offset and library);
 *   2. has the dumper thread write the profile gathered so far (waits at
 *      most 5 s; a thread stuck in the middle of an event is left out);
 *   3. puts back the handler that was there before (faulthandler, say) or
 *      the default, and lets the signal happen again, so that core dumps,
 *      faulthandler's output and the exit status are as without us.
 *
 * Safety, function by function:
 *   async-signal-safe: the report writer (rep_*: write(2) and arithmetic),
 *     Python stacks (plain loads from our own tables, bounds-checked: a
 *     stack being changed by its thread can at worst give a wrong frame),
 *     the wait for the dumper (write/poll), chaining (sigaction, raise).
 *   written defensively, not strictly async-signal-safe: libunwind's local
 *     unwinder (designed to run in signal handlers; loaded with dlopen at
 *     start, never in the handler) and dladdr() for library names (takes
 *     the loader's lock: a crash inside the dynamic loader could hang here,
 *     which the dumper's bounded wait does not cover). A second fault
 *     while reporting goes straight to the previous disposition.
 *
 * Live stacks: `pyprof stacks PID` sends the snapshot signal with
 * sigqueue(2) and the value PYPROF_STACKS_REQUEST; the dumper then writes
 * "<profile path>.stacks.txt" (Python stacks of every thread, atomically)
 * without the GIL, so it works while a thread holds it in a long C call.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if __has_include(<libunwind.h>)
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#define HAVE_LIBUNWIND 1
#endif

#include "dump.h"
#include "preload.h"

static const int crash_sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
#define NCRASH (sizeof crash_sigs / sizeof *crash_sigs)
static struct sigaction prev_action[NCRASH]; /* what was there before */
static volatile int crashing;                /* set by the first fault */
#define ALTSTACK_SIZE (64 * 1024)

/* ---- an async-signal-safe line writer ------------------------------------ */

typedef struct rep {
  char buf[2048];
  size_t n;
  int fd[2]; /* stderr and the report file (-1 if none) */
} rep;

/* Async-signal-safe. */
static void rep_flush(rep *r) {
  for (int i = 0; i < 2; i++) {
    size_t off = 0;
    while (r->fd[i] >= 0 && off < r->n) {
      ssize_t w = write(r->fd[i], r->buf + off, r->n - off);
      if (w <= 0 && errno != EINTR) break;
      if (w > 0) off += (size_t)w;
    }
  }
  r->n = 0;
}

/* Async-signal-safe. */
static void rep_s(rep *r, const char *s) {
  for (; s && *s; s++) {
    if (r->n == sizeof r->buf) rep_flush(r);
    r->buf[r->n++] = *s;
  }
}

/* Async-signal-safe: an unsigned number in base 10 or 16. */
static void rep_num(rep *r, uint64_t v, int hex) {
  char tmp[24];
  int n = 0;
  do {
    unsigned d = (unsigned)(v % (hex ? 16 : 10));
    tmp[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
    v /= hex ? 16 : 10;
  } while (v && n < 24);
  if (hex) rep_s(r, "0x");
  char out[25];
  for (int i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  out[n] = '\0';
  rep_s(r, out);
}

static const char *sig_name(int sig) {
  switch (sig) {
  case SIGSEGV: return "SIGSEGV";
  case SIGBUS: return "SIGBUS";
  case SIGILL: return "SIGILL";
  case SIGFPE: return "SIGFPE";
  case SIGABRT: return "SIGABRT";
  default: return "signal";
  }
}

/* ---- Python stacks ------------------------------------------------------- */

/* Writes the Python stack of `t`, innermost first. Async-signal-safe: plain
 * loads, every index checked against the sizes read. */
static void python_stack(rep *r, const pyprof_thread *t) {
  uint32_t depth = t->depth, cap = t->stack_cap, ne = t->nentries;
  const pyprof_frame *stack = t->stack;
  const pyprof_entry *entries = t->entries;
  if (depth > cap) depth = cap;
  if (depth == 0) rep_s(r, "    (no Python frames seen)\n");
  for (uint32_t i = depth; i-- > 0;) {
    uint32_t e = stack[i].entry;
    const pyprof_func *f = e < ne ? pyprof_func_get(entries[e].fid) : NULL;
    rep_s(r, "    ");
    if (!f) {
      rep_s(r, "?\n");
      continue;
    }
    rep_s(r, f->name);
    if (f->line || strcmp(f->file, "~") != 0) { /* built-ins: name only */
      rep_s(r, " (");
      rep_s(r, f->file);
      rep_s(r, ":");
      rep_num(r, (uint64_t)f->line, 0);
      rep_s(r, ")");
    }
    rep_s(r, "\n");
  }
}

/* All threads' Python stacks; `self` is marked. Async-signal-safe. */
static void python_stacks(rep *r, const pyprof_thread *self,
                          const char *self_note) {
  for (const pyprof_thread *t = pyprof_threads_head(); t; t = t->next) {
    if (t->retired) continue;
    rep_s(r, "  Thread ");
    rep_num(r, t->tid, 0);
    if (t == self) rep_s(r, self_note);
    rep_s(r, ":\n");
    python_stack(r, t);
    rep_flush(r);
  }
}

/* ---- native stack (libunwind, loaded at start) ---------------------------- */

#ifdef HAVE_LIBUNWIND
static int (*unw_init2)(unw_cursor_t *, unw_context_t *, int);
static int (*unw_step_)(unw_cursor_t *);
static int (*unw_reg)(unw_cursor_t *, unw_regnum_t, unw_word_t *);
static int (*unw_name)(unw_cursor_t *, char *, size_t, unw_word_t *);
static int (*unw_info)(unw_cursor_t *, unw_proc_info_t *);

/* Loads libunwind (about 1 ms: done by the dumper thread, off the path
 * of the program's start). */
void pyprof_crash_load_unwinder(void) {
  static int done;
  if (done || !pyprof_cfg.crash) return;
  done = 1;
  void *h = dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
  if (!h) return;
  *(void **)&unw_init2 = dlsym(h, "_ULx86_64_init_local2");
  *(void **)&unw_step_ = dlsym(h, "_ULx86_64_step");
  *(void **)&unw_reg = dlsym(h, "_ULx86_64_get_reg");
  *(void **)&unw_name = dlsym(h, "_ULx86_64_get_proc_name");
  *(void **)&unw_info = dlsym(h, "_ULx86_64_get_proc_info");
  if (!unw_init2 || !unw_step_ || !unw_reg || !unw_name || !unw_info)
    unw_init2 = NULL;
}

/* Native frames from the signal context. Written defensively (see top). */
static void native_stack(rep *r, void *uc) {
  unw_cursor_t cur;
  if (!unw_init2 || unw_init2(&cur, (unw_context_t *)uc, 1 /* signal */) < 0) {
    rep_s(r, "    (libunwind not available)\n");
    return;
  }
  for (int n = 0; n < 64; n++) {
    unw_word_t ip = 0, off = 0;
    char name[256];
    unw_reg(&cur, UNW_REG_IP, &ip);
    rep_s(r, "    #");
    rep_num(r, (uint64_t)n, 0);
    rep_s(r, " ");
    rep_num(r, ip, 1);
    /* libunwind names the nearest symbol before ip, whatever its size:
     * only trust a name whose procedure really starts at ip - off. */
    unw_proc_info_t pi;
    if (unw_name(&cur, name, sizeof name, &off) == 0 &&
        unw_info(&cur, &pi) == 0 && pi.start_ip == ip - off) {
      rep_s(r, " ");
      rep_s(r, name);
      rep_s(r, "+");
      rep_num(r, off, 1);
    }
    Dl_info di;
    if (dladdr((void *)ip, &di) && di.dli_fname) {
      rep_s(r, " in ");
      rep_s(r, di.dli_fname);
    }
    rep_s(r, "\n");
    if (unw_step_(&cur) <= 0) break;
  }
}
#else
void pyprof_crash_load_unwinder(void) {}
static void native_stack(rep *r, void *uc) {
  (void)uc;
  rep_s(r, "    (built without libunwind)\n");
}
#endif

/* ---- the handler ---------------------------------------------------------- */

/* Opens "<profile path><suffix>" for the report. Async-signal-safe. */
static int open_beside_profile(const char *suffix) {
  char path[PYPROF_PATH_MAX];
  if (pyprof_output_path(path, sizeof path - 32) < 0) return -1;
  size_t n = strlen(path);
  for (const char *s = suffix; *s && n + 1 < sizeof path; s++) path[n++] = *s;
  path[n] = '\0';
  return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
}

/* Puts the previous disposition of `sig` back and lets the signal happen
 * again under it. Async-signal-safe. */
static void chain(int i, int sig, siginfo_t *si) {
  sigaction(sig, &prev_action[i], NULL);
  /* A fault re-executes the faulting instruction when we return; a
   * signal that was sent (abort(), kill) has to be raised again. */
  if (si->si_code <= 0 || sig == SIGABRT) raise(sig);
}

static void on_crash(int sig, siginfo_t *si, void *uc) {
  int saved = errno, i = 0;
  while (i < (int)NCRASH - 1 && crash_sigs[i] != sig) i++;
  if (__atomic_exchange_n(&crashing, 1, __ATOMIC_SEQ_CST)) {
    chain(i, sig, si); /* a fault while reporting, or a second crash */
    return;
  }
  rep r;
  r.n = 0;
  r.fd[0] = 2;
  r.fd[1] = open_beside_profile(".crash.txt");
  pyprof_thread *self = pyprof_tls;
  rep_s(&r, "pyprof: fatal signal ");
  rep_s(&r, sig_name(sig));
  if (si->si_code > 0 && sig != SIGABRT) { /* a fault, not a sent signal:
                                               si_addr holds an address */
    rep_s(&r, " at address ");
    rep_num(&r, (uint64_t)(uintptr_t)si->si_addr, 1);
  }
  rep_s(&r, " in thread ");
  rep_num(&r, (uint64_t)syscall(SYS_gettid), 0);
  rep_s(&r, " of process ");
  rep_num(&r, (uint64_t)getpid(), 0);
  rep_s(&r, "\nPython stacks (innermost first):\n");
  rep_flush(&r);
  python_stacks(&r, self, " (crashed)");
  rep_s(&r, "Native stack of the crashing thread:\n");
  native_stack(&r, uc);
  rep_flush(&r);
  if (r.fd[1] >= 0) close(r.fd[1]);
  pyprof_control_crash_dump(5000);
  chain(i, sig, si);
  errno = saved;
}

static __thread void *altstack_mem; /* ours, to unmap at thread exit */

/* Gives the calling thread an alternate signal stack if it has none, so
 * that its stack overflow can be reported. */
void pyprof_crash_thread_init(void) {
  if (!pyprof_cfg.crash) return;
  stack_t old;
  if (sigaltstack(NULL, &old) == 0 && !(old.ss_flags & SS_DISABLE)) return;
  void *mem = mmap(NULL, ALTSTACK_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return;
  stack_t ss = {.ss_sp = mem, .ss_size = ALTSTACK_SIZE, .ss_flags = 0};
  if (sigaltstack(&ss, NULL) < 0) munmap(mem, ALTSTACK_SIZE);
  else altstack_mem = mem;
}

/* At thread exit: takes our alternate stack down again. */
void pyprof_crash_thread_exit(void) {
  if (!altstack_mem) return;
  stack_t ss = {.ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE};
  stack_t cur;
  if (sigaltstack(NULL, &cur) == 0 && cur.ss_sp == altstack_mem &&
      !(cur.ss_flags & SS_ONSTACK) && sigaltstack(&ss, NULL) == 0)
    munmap(altstack_mem, ALTSTACK_SIZE);
  altstack_mem = NULL;
}

/* Installs the handlers (GIL held, at start). */
void pyprof_crash_start(void) {
  if (!pyprof_cfg.crash) return;
  pyprof_crash_thread_init();
  for (size_t i = 0; i < NCRASH; i++) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_crash;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(crash_sigs[i], &sa, &prev_action[i]);
  }
}

/* ---- live stacks ---------------------------------------------------------- */

/* Writes "<profile path>.stacks.txt" with every thread's Python stack.
 * From the dumper thread; needs no GIL. */
void pyprof_write_stacks(void) {
  char path[PYPROF_PATH_MAX];
  if (pyprof_output_path(path, sizeof path - 32) < 0) return;
  strcat(path, ".stacks.txt");
  char tmp[PYPROF_PATH_MAX + 32];
  snprintf(tmp, sizeof tmp, "%s.part", path);
  rep r;
  r.n = 0;
  r.fd[0] = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  r.fd[1] = -1;
  if (r.fd[0] < 0) {
    pyprof_say("cannot write %s: %s", path, strerror(errno));
    return;
  }
  rep_s(&r, "Python stacks of process ");
  rep_num(&r, (uint64_t)getpid(), 0);
  rep_s(&r, " (innermost first):\n");
  python_stacks(&r, NULL, "");
  rep_flush(&r);
  int ok = fsync(r.fd[0]) == 0 || errno == EINVAL;
  close(r.fd[0]);
  if (!ok || rename(tmp, path) < 0) {
    pyprof_say("cannot write %s: %s", path, strerror(errno));
    unlink(tmp);
  } else if (!pyprof_cfg.quiet) {
    pyprof_say("wrote %s", path);
  }
}
