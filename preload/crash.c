/*
 * crash.c -- fatal signals and live stacks.
 *
 * On SIGSEGV, SIGBUS, SIGILL, SIGFPE or SIGABRT (PYPROF_CRASH=1, the
 * default) the handler, on an alternate stack so that a stack overflow is
 * reported too, and then on a stack of its own (on_crash):
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
 *     unwinder (designed to run in signal handlers; loaded with dlopen by
 *     the dumper thread, never in the handler), dladdr() for library names
 *     (takes the loader's lock: a crash inside the dynamic loader could
 *     hang here, which the dumper's bounded wait does not cover) and the
 *     switch to the report's own stack (swapcontext). A second fault while
 *     reporting goes straight to the previous disposition.
 *
 * Live stacks: `pyprof stacks PID` sends the snapshot signal with
 * sigqueue(2) and the value PYPROF_STACKS_REQUEST; the dumper then writes
 * "<profile path>.stacks.txt" (Python stacks of every thread, atomically)
 * without the GIL, so it works while a thread holds it in a long C call.
 */
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
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

static void rep_init(rep *r, int fd0, int fd1) {
  r->n = 0;
  r->fd[0] = fd0;
  r->fd[1] = fd1;
}

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

#define LINE_FRAMES 128 /* innermost frames that get their current line */

/* Index of `e` in the sorted `v[n]`, or -1. */
static int find_sorted(const uint32_t *v, int n, uint32_t e) {
  int lo = 0, hi = n - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (v[mid] == e) return mid;
    if (v[mid] < e) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/* The interpreter keys (code objects for Python functions) of entries
 * ents[0..n): keys[i] for ents[i], NULL where not found. One pass over
 * the thread's lookup table, read in pieces with pyprof_safe_read.
 * Async-signal-safe. */
static void entry_keys(const pyprof_thread *t, const uint32_t *ents, int n,
                       const void **keys) {
  uint32_t sorted[LINE_FRAMES];
  int ns = 0;
  for (int i = 0; i < n; i++) { /* insertion sort, duplicates dropped */
    int j = ns;
    while (j > 0 && sorted[j - 1] > ents[i]) j--;
    if (j > 0 && sorted[j - 1] == ents[i]) continue;
    memmove(sorted + j + 1, sorted + j, (size_t)(ns - j) * sizeof *sorted);
    sorted[j] = ents[i];
    ns++;
  }
  const void *by_sorted[LINE_FRAMES] = {0};
  pyprof_slot chunk[64];
  uint64_t nslots = (uint64_t)t->slot_mask + 1;
  for (uint64_t i = 0; t->slots && i < nslots; i += 64) {
    size_t k = nslots - i < 64 ? (size_t)(nslots - i) : 64;
    if (pyprof_safe_read(chunk, t->slots + i, k * sizeof *chunk) < 0) break;
    for (size_t j = 0; j < k; j++) {
      int at = chunk[j].key ? find_sorted(sorted, ns, chunk[j].entry) : -1;
      if (at >= 0) by_sorted[at] = chunk[j].key;
    }
  }
  for (int i = 0; i < n; i++) {
    int at = find_sorted(sorted, ns, ents[i]);
    keys[i] = at >= 0 ? by_sorted[at] : NULL;
  }
}

/* Writes the Python stack of `live`, innermost first: function, file and
 * the line it is at, where the interpreter's frames say (see pyframes.c),
 * else the line the function starts at. Async-signal-safe: the thread's
 * tables are read with pyprof_safe_read (its owner may be changing them;
 * at worst a frame is wrong or missing, never a fault), lines come from
 * pyprof_code_line (written defensively, see pyframes.c). */
static void python_stack(rep *r, const pyprof_thread *live) {
  pyprof_thread t;
  if (pyprof_safe_read(&t, live, sizeof t) < 0) {
    rep_s(r, "    (unreadable)\n");
    return;
  }
  uint32_t depth = t.depth < t.stack_cap ? t.depth : t.stack_cap;
  if (depth == 0) rep_s(r, "    (no Python frames seen)\n");
  /* The innermost frames' entries and keys, and the interpreter's frames,
   * matched in order by code object. */
  uint32_t ents[LINE_FRAMES];
  int nlined = depth < LINE_FRAMES ? (int)depth : LINE_FRAMES;
  for (int i = 0; i < nlined; i++) {
    pyprof_frame fr;
    ents[i] = pyprof_safe_read(&fr, t.stack + depth - 1 - i, sizeof fr) == 0
                  ? fr.entry : UINT32_MAX;
  }
  const void *keys[LINE_FRAMES];
  entry_keys(&t, ents, nlined, keys);
  pyprof_pyframe pf[LINE_FRAMES];
  int npf = pyprof_py_frames(t.host, pf, LINE_FRAMES), next_pf = 0;
  for (uint32_t k = 0; k < depth; k++) {
    uint32_t i = depth - 1 - k; /* innermost first */
    pyprof_frame fr;
    pyprof_entry ent;
    const pyprof_func *f = NULL;
    if (pyprof_safe_read(&fr, t.stack + i, sizeof fr) == 0 &&
        fr.entry < t.nentries &&
        pyprof_safe_read(&ent, t.entries + fr.entry, sizeof ent) == 0)
      f = pyprof_func_get(ent.fid);
    int line = 0;
    if (k < (uint32_t)nlined && keys[k])
      for (int j = next_pf; j < npf; j++)
        if (pf[j].code == keys[k]) {
          line = pyprof_code_line(keys[k], pf[j].addr);
          next_pf = j + 1;
          break;
        }
    rep_s(r, "    ");
    if (!f) {
      rep_s(r, "?\n");
      continue;
    }
    rep_s(r, f->name);
    if (f->line || strcmp(f->file, "~") != 0) { /* built-ins: name only */
      rep_s(r, " (");
      rep_s(r, f->file);
      if (line) {
        rep_s(r, ":");
        rep_num(r, (uint64_t)line, 0);
      } else {
        rep_s(r, ", def line ");
        rep_num(r, (uint64_t)f->line, 0);
      }
      rep_s(r, ")");
    }
    rep_s(r, "\n");
  }
}

/* All threads' Python stacks; `self` is marked. Async-signal-safe. The
 * thread list is walked without its lock (a signal handler cannot take
 * it): threads are only ever added at the head and never freed, so a
 * racing insert at worst hides the newest thread. Not instrumented under
 * TSan, which would report those intended races. */
__attribute__((no_sanitize("thread"))) static void python_stacks(rep *r, const pyprof_thread *self,
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

/* ---- native stack (libunwind, loaded by the dumper thread) ----------------- */

#ifdef HAVE_LIBUNWIND
static int (*unw_init2)(unw_cursor_t *, unw_context_t *, int);
static int (*unw_step_)(unw_cursor_t *);
static int (*unw_reg)(unw_cursor_t *, unw_regnum_t, unw_word_t *);
static int (*unw_name)(unw_cursor_t *, char *, size_t, unw_word_t *);
static int (*unw_info)(unw_cursor_t *, unw_proc_info_t *);

/* 0: not loaded, 1: the dumper thread is loading it, 2: done (loaded or
 * failed). unw_init2 is published last, after the warm-up unwind below,
 * so that a crash in the first milliseconds never runs libunwind while it
 * is still setting itself up in the dumper; such a crash waits for the
 * load instead (unwinder_ready), where it used to say "libunwind not
 * available" (11 runs in 30 of a process that kills itself at once). */
static volatile int unwinder_state;

/* Loads libunwind (about 1 ms: done by the dumper thread, off the path
 * of the program's start). */
void pyprof_crash_load_unwinder(void) {
  if (unwinder_state != 0 || !pyprof_cfg.crash) return;
  __atomic_store_n(&unwinder_state, 1, __ATOMIC_SEQ_CST);
  int (*init2)(unw_cursor_t *, unw_context_t *, int) = NULL;
  void *h = dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
  if (h) {
    *(void **)&init2 = dlsym(h, "_ULx86_64_init_local2");
    *(void **)&unw_step_ = dlsym(h, "_ULx86_64_step");
    *(void **)&unw_reg = dlsym(h, "_ULx86_64_get_reg");
    *(void **)&unw_name = dlsym(h, "_ULx86_64_get_proc_name");
    *(void **)&unw_info = dlsym(h, "_ULx86_64_get_proc_info");
    if (!unw_step_ || !unw_reg || !unw_name || !unw_info) init2 = NULL;
  }
  if (init2) {
    /* One unwind here, so that libunwind sets itself up now, in this
     * thread, and not in a signal handler. */
    ucontext_t uc;
    unw_cursor_t cur;
    if (getcontext(&uc) == 0 && init2(&cur, (unw_context_t *)&uc, 0) == 0)
      unw_step_(&cur);
    __atomic_store_n(&unw_init2, init2, __ATOMIC_RELEASE);
  }
  __atomic_store_n(&unwinder_state, 2, __ATOMIC_SEQ_CST);
}

/* Whether libunwind can be used. A crash before the dumper thread has
 * loaded it (it waits UNWINDER_DELAY_MS, control.c) wakes the dumper to
 * load it and waits up to 500 ms: the dumper needs nothing the crashing
 * thread holds, unless it crashed inside malloc or the loader.
 * Async-signal-safe (write, nanosleep). */
static int unwinder_ready(void) {
  pid_t me = (pid_t)syscall(SYS_gettid);
  if (unwinder_state == 0) pyprof_control_wake(); /* loads it at once */
  for (int i = 0; i < 500 && unwinder_state != 2 && pyprof_cfg.crash &&
                  pyprof_dumper_started() && pyprof_dumper_tid() != me;
       i++) {
    struct timespec d = {0, 1000000};
    nanosleep(&d, NULL);
  }
  return __atomic_load_n(&unw_init2, __ATOMIC_ACQUIRE) != NULL;
}

/* Stack that unwinding and naming frames may take below native_stack():
 * libunwind's DWARF state and ELF symbol lookup, and our own frames. Measured
 * at 5.4-5.5 kB (a stack pattern overwritten, on 3.9, 3.11 and 3.12); twice
 * that and more. */
#define UNWIND_STACK_ROOM (12 * 1024)

/* Whether this handler has room for libunwind. The report runs on its own
 * stack (on_crash), so this only matters if switching to it failed: on a
 * signal stack set by someone else it may be small (faulthandler's, nested:
 * 5.3 kB left), and unwinding there ran off its end into the heap.
 * Async-signal-safe (sigaltstack). */
static int stack_room_ok(void) {
  stack_t cur;
  if (sigaltstack(NULL, &cur) != 0 || !(cur.ss_flags & SS_ONSTACK)) return 1;
  char here;
  uintptr_t lo = (uintptr_t)cur.ss_sp, sp = (uintptr_t)&here;
  return sp > lo && sp - lo >= UNWIND_STACK_ROOM;
}

/* Native frames from the signal context. Written defensively (see top). */
static void native_stack(rep *r, void *uc) {
  unw_cursor_t cur;
  if (!stack_room_ok()) {
    rep_s(r, "    (not unwound: this handler runs on another handler's small "
             "signal stack, faulthandler's?)\n");
    return;
  }
  if (!unwinder_ready() || unw_init2(&cur, (unw_context_t *)uc, 1 /* signal */) < 0) {
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

/* ---- native stacks of the other threads ---------------------------------- */

/* A thread can only unwind itself: its registers are nowhere else. So we
 * send each thread PYPROF_UNWIND_SIGNAL with tgkill(2); its handler
 * unwinds from the signal's context into a slot of `uslots`, and the
 * requester (the crashing thread's handler, or the dumper for `pyprof
 * stacks --native`) waits a bounded time for the answers. A thread that
 * blocks signals, or is stuck, is reported as not answering. The signal
 * interrupts a blocking system call of the thread: the kernel restarts
 * most of them (SA_RESTART), but poll, select, nanosleep, epoll_wait and a
 * few others return EINTR, which CPython (PEP 475) and careful C code
 * retry. The handler is only installed at the first request, and only if
 * the program has none on that signal. */
#define PYPROF_UNWIND_SIGNAL (SIGRTMAX - 2)
#ifdef HAVE_LIBUNWIND
#define NUSLOTS 128
#define USLOT_FRAMES 64
enum { US_FREE, US_PENDING, US_RUNNING, US_DONE, US_ABANDONED };
typedef struct uslot {
  int state;  /* US_*, atomic */
  pid_t tid;  /* the thread asked (atomic) */
  int nips;   /* frames in ips, once US_DONE */
  uint64_t ips[USLOT_FRAMES];
} uslot;
static uslot *uslots;      /* mmap'd at the first request */
static int unwind_busy;    /* a request is under way (atomic) */
static int unwind_handler; /* 1 installed, -1 the signal is the program's */

/* The handler in the asked thread: only walks its stack and records the
 * return addresses. libunwind's local stepping is meant for signal
 * handlers; naming a frame is not (libunwind's get_proc_name allocates,
 * dladdr takes the loader's lock), and this thread may have been stopped
 * inside malloc or the loader, so names are found by the requester. */
static void on_unwind(int sig, siginfo_t *si, void *uc) {
  (void)sig;
  int saved = errno;
  pid_t me = (pid_t)syscall(SYS_gettid);
  uslot *slots = __atomic_load_n(&uslots, __ATOMIC_ACQUIRE);
  if (slots && __atomic_load_n(&unw_init2, __ATOMIC_ACQUIRE) && si &&
      si->si_code == SI_TKILL &&
      si->si_pid == getpid())
    for (int i = 0; i < NUSLOTS; i++) {
      int want = US_PENDING;
      if (__atomic_load_n(&slots[i].tid, __ATOMIC_RELAXED) != me ||
          !__atomic_compare_exchange_n(&slots[i].state, &want, US_RUNNING, 0,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        continue;
      unw_cursor_t cur;
      int n = 0;
      if (unw_init2(&cur, (unw_context_t *)uc, 1 /* signal frame */) == 0)
        do {
          unw_word_t ip = 0;
          unw_reg(&cur, UNW_REG_IP, &ip);
          slots[i].ips[n++] = ip;
        } while (n < USLOT_FRAMES && unw_step_(&cur) > 0);
      slots[i].nips = n;
      __atomic_store_n(&slots[i].state, US_DONE, __ATOMIC_RELEASE);
      break;
    }
  errno = saved;
}

/* The function symbol of the object file `path` that contains `addr`,
 * from its full symbol table (.symtab: static functions too) or, in a
 * stripped file, its dynamic one. `bias` is what was added to the file's
 * addresses when it was loaded (0 for a fixed-address executable). Reads
 * the file with open/mmap: async-signal-safe, and every offset taken from
 * the file is checked against its size. Returns the name (inside the
 * mapping, valid until it is unmapped) and sets *start, or NULL. */
static const char *elf_function(const char *map, size_t size, uint64_t bias,
                                uint64_t addr, uint64_t *start) {
  const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)map;
  if (size < sizeof *eh || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
      eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_shentsize != sizeof(ElfW(Shdr)) ||
      eh->e_shoff > size || (size - eh->e_shoff) / sizeof(ElfW(Shdr)) < eh->e_shnum)
    return NULL;
  const ElfW(Shdr) *sh = (const ElfW(Shdr) *)(map + eh->e_shoff);
  for (int want = SHT_SYMTAB; want; want = want == SHT_SYMTAB ? SHT_DYNSYM : 0) {
    for (unsigned i = 0; i < eh->e_shnum; i++) {
      if (sh[i].sh_type != (unsigned)want || sh[i].sh_link >= eh->e_shnum ||
          sh[i].sh_entsize != sizeof(ElfW(Sym)) || sh[i].sh_offset > size ||
          sh[i].sh_size > size - sh[i].sh_offset)
        continue;
      const ElfW(Shdr) *str = &sh[sh[i].sh_link];
      if (str->sh_offset > size || str->sh_size > size - str->sh_offset) continue;
      const ElfW(Sym) *sym = (const ElfW(Sym) *)(map + sh[i].sh_offset);
      size_t nsym = sh[i].sh_size / sizeof *sym;
      for (size_t k = 0; k < nsym; k++) {
        if (ELF64_ST_TYPE(sym[k].st_info) != STT_FUNC || !sym[k].st_size ||
            sym[k].st_shndx == SHN_UNDEF || sym[k].st_name >= str->sh_size)
          continue;
        uint64_t lo = sym[k].st_value + bias;
        if (addr < lo || addr - lo >= sym[k].st_size) continue;
        const char *name = map + str->sh_offset + sym[k].st_name;
        if (!memchr(name, 0, str->sh_size - sym[k].st_name)) continue;
        *start = lo;
        return name;
      }
    }
    if (want == SHT_DYNSYM) break;
  }
  return NULL;
}

/* Object files mapped during one report, so each is opened once. */
typedef struct elf_map {
  const char *path; /* dli_fname (the loader's string) */
  const char *map;  /* MAP_FAILED: could not be read */
  size_t size;
} elf_map;
#define ELF_MAPS 16

static const elf_map *elf_open(elf_map *maps, int *n, const char *path) {
  for (int i = 0; i < *n; i++)
    if (maps[i].path == path || strcmp(maps[i].path, path) == 0) return &maps[i];
  if (*n == ELF_MAPS) return NULL;
  elf_map *m = &maps[(*n)++];
  m->path = path;
  m->map = MAP_FAILED;
  m->size = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size > 0) {
    m->size = (size_t)st.st_size;
    m->map = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
  }
  if (fd >= 0) close(fd);
  return m;
}

/* Writes frames from their addresses: "#n ip symbol+off in library". The
 * library comes from dladdr1; the symbol from the library's file (its full
 * symbol table where it has one), else from the loaded dynamic symbols, in
 * both cases only a function that really contains the address. From the
 * requester: dladdr takes the loader's lock (see the top); the files are
 * read with open/mmap. */
static void format_ips(rep *r, const uint64_t *ips, int n) {
  elf_map maps[ELF_MAPS];
  int nmaps = 0;
  for (int k = 0; k < n; k++) {
    uint64_t ip = ips[k];
    /* a return address may be just past its call: look up the call */
    uint64_t at = k > 0 && ip > 0 ? ip - 1 : ip;
    rep_s(r, "    #");
    rep_num(r, (uint64_t)k, 0);
    rep_s(r, " ");
    rep_num(r, ip, 1);
    Dl_info di;
    const ElfW(Sym) *sym = NULL;
    if (dladdr1((void *)(uintptr_t)at, &di, (void **)&sym, RTLD_DL_SYMENT)) {
      const char *name = NULL;
      uint64_t start = 0;
      const elf_map *m = di.dli_fname && di.dli_fname[0] == '/'
                             ? elf_open(maps, &nmaps, di.dli_fname) : NULL;
      if (m && m->map != MAP_FAILED) {
        const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)m->map;
        uint64_t bias = m->size >= sizeof *eh && eh->e_type == ET_DYN
                            ? (uint64_t)(uintptr_t)di.dli_fbase : 0;
        name = elf_function(m->map, m->size, bias, at, &start);
      }
      if (!name && di.dli_sname && sym) {
        start = (uint64_t)(uintptr_t)di.dli_saddr;
        if (start <= at && at < start + sym->st_size) name = di.dli_sname;
      }
      if (name) {
        rep_s(r, " ");
        rep_s(r, name);
        rep_s(r, "+");
        rep_num(r, ip - start, 1);
      }
      if (di.dli_fname) {
        rep_s(r, " in ");
        rep_s(r, di.dli_fname);
      }
    }
    rep_s(r, "\n");
  }
  for (int i = 0; i < nmaps; i++)
    if (maps[i].map != MAP_FAILED) munmap((void *)maps[i].map, maps[i].size);
}

/* Installs on_unwind if the signal is free. Async-signal-safe. */
static int unwind_handler_ready(void) {
  if (unwind_handler) return unwind_handler > 0;
  struct sigaction old, sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_unwind;
  sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  if (sigaction(PYPROF_UNWIND_SIGNAL, NULL, &old) < 0 ||
      (!(old.sa_flags & SA_SIGINFO) && old.sa_handler != SIG_DFL) ||
      ((old.sa_flags & SA_SIGINFO) && old.sa_sigaction != on_unwind)) {
    unwind_handler = -1;
    return 0;
  }
  if (sigaction(PYPROF_UNWIND_SIGNAL, &sa, NULL) < 0) return 0;
  unwind_handler = 1;
  return 1;
}

/* The thread ids of this process, from /proc/self/task. Async-signal-
 * safe (open, getdents64, close). Returns how many (at most cap). */
static int list_tids(pid_t *out, int cap) {
  int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[4096];
  int n = 0;
  for (;;) {
    long got = syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (got <= 0) break;
    for (long off = 0; off < got;) {
      unsigned short reclen;
      memcpy(&reclen, buf + off + 16, sizeof reclen); /* d_reclen */
      const char *name = buf + off + 19;              /* d_name */
      long v = 0;
      int digits = 0;
      for (; *name >= '0' && *name <= '9'; name++, digits++)
        v = v * 10 + (*name - '0');
      if (digits && !*name && n < cap) out[n++] = (pid_t)v;
      off += reclen ? reclen : got;
    }
  }
  close(fd);
  return n;
}

/* Writes "  Thread <tid>:" and the native stack of every thread of the
 * process but the caller, waiting at most `wait_ms` for their answers.
 * Async-signal-safe apart from what on_unwind does in each thread. */
static void native_stacks_of_others(rep *r, int wait_ms) {
  if (!unwinder_ready()) {
    rep_s(r, "  (libunwind not available)\n");
    return;
  }
  if (__atomic_exchange_n(&unwind_busy, 1, __ATOMIC_ACQUIRE)) {
    rep_s(r, "  (another request is being served)\n");
    return;
  }
  if (!unwind_handler_ready()) {
    rep_s(r, "  (signal ");
    rep_num(r, (uint64_t)PYPROF_UNWIND_SIGNAL, 0);
    rep_s(r, " has a handler of the program's: not used)\n");
    goto out;
  }
  if (!uslots) {
    void *m = mmap(NULL, NUSLOTS * sizeof(uslot), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
      rep_s(r, "  (no memory)\n");
      goto out;
    }
    __atomic_store_n(&uslots, (uslot *)m, __ATOMIC_RELEASE);
  }
  pid_t tids[NUSLOTS];
  int asked[NUSLOTS]; /* slot of tids[i], -1 if not asked */
  int n = list_tids(tids, NUSLOTS);
  pid_t me = (pid_t)syscall(SYS_gettid), pid = getpid();
  pid_t dumper = pyprof_dumper_tid();
  int next_slot = 0;
  for (int i = 0; i < n; i++) {
    asked[i] = -1;
    if (tids[i] == me || tids[i] == dumper) continue;
    while (next_slot < NUSLOTS) { /* a slot no late handler still writes */
      int st = __atomic_load_n(&uslots[next_slot].state, __ATOMIC_ACQUIRE);
      if (st != US_PENDING && st != US_RUNNING) break;
      next_slot++;
    }
    if (next_slot == NUSLOTS) break;
    uslot *u = &uslots[next_slot];
    __atomic_store_n(&u->tid, tids[i], __ATOMIC_RELAXED);
    u->nips = 0;
    __atomic_store_n(&u->state, US_PENDING, __ATOMIC_RELEASE);
    if (syscall(SYS_tgkill, pid, tids[i], PYPROF_UNWIND_SIGNAL) == 0)
      asked[i] = next_slot++;
    else
      __atomic_store_n(&u->state, US_FREE, __ATOMIC_RELEASE);
  }
  uint64_t deadline = pyprof__ts_ns(CLOCK_MONOTONIC) + (uint64_t)wait_ms * 1000000;
  for (;;) {
    int waiting = 0;
    for (int i = 0; i < n; i++)
      if (asked[i] >= 0) {
        int st = __atomic_load_n(&uslots[asked[i]].state, __ATOMIC_ACQUIRE);
        waiting += st == US_PENDING || st == US_RUNNING;
      }
    if (!waiting || pyprof__ts_ns(CLOCK_MONOTONIC) >= deadline) break;
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
  }
  int shown = 0;
  for (int i = 0; i < n; i++) {
    if (tids[i] == me || tids[i] == dumper) continue; /* dumper: ours */
    shown++;
    rep_s(r, "  Thread ");
    rep_num(r, (uint64_t)tids[i], 0);
    rep_s(r, ":\n");
    if (asked[i] < 0) {
      rep_s(r, "    (not asked: the thread has ended, or too many threads)\n");
      continue;
    }
    uslot *u = &uslots[asked[i]];
    int want = US_PENDING;
    if (__atomic_compare_exchange_n(&u->state, &want, US_ABANDONED, 0,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
      rep_s(r, "    (no answer within ");
      rep_num(r, (uint64_t)wait_ms, 0);
      rep_s(r, " ms: the thread blocks signals, or is stuck)\n");
      continue;
    }
    if (want == US_RUNNING) {
      rep_s(r, "    (still unwinding when we stopped waiting)\n");
      continue;
    }
    format_ips(r, u->ips, u->nips < USLOT_FRAMES ? u->nips : USLOT_FRAMES);
    rep_flush(r);
    __atomic_store_n(&u->state, US_FREE, __ATOMIC_RELEASE);
  }
  if (!shown) rep_s(r, "  (none)\n");
out:
  __atomic_store_n(&unwind_busy, 0, __ATOMIC_RELEASE);
}
#else
static void native_stacks_of_others(rep *r, int wait_ms) {
  (void)wait_ms;
  rep_s(r, "  (built without libunwind)\n");
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
static void chain(int sig, siginfo_t *si) {
  size_t i = 0;
  while (i < NCRASH - 1 && crash_sigs[i] != sig) i++;
  sigaction(sig, &prev_action[i], NULL);
  /* A fault re-executes the faulting instruction when we return; a
   * signal that was sent (abort(), kill) has to be raised again. */
  if (si->si_code <= 0 || sig == SIGABRT) raise(sig);
}

/* Steps 1 and 2 (see top), for the one thread that crashed first. */
static void crash_report(int sig, siginfo_t *si, void *uc) {
  rep r;
  rep_init(&r, 2, open_beside_profile(".crash.txt"));
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
  rep_s(&r, "Native stacks of the other threads:\n");
  native_stacks_of_others(&r, 1000);
  rep_flush(&r);
  if (r.fd[1] >= 0) close(r.fd[1]);
  pyprof_control_crash_dump(5000);
}

/* The report runs on a stack of its own. The handler can be entered on
 * another handler's small signal stack: a program that enables
 * faulthandler after we started gives the thread faulthandler's (17 kB),
 * and the signal faulthandler raises again reaches us nested on it with
 * 5.3 kB left. The report takes ~9 kB before libunwind's ~5.5 kB, so it
 * used to run off that stack's end and write silently into the heap below
 * it (found when a libunwind load during such a crash walked a link_map
 * the report had overwritten). Only the first crashing thread reports
 * (`crashing`), so one stack serves; in .bss, it costs nothing until
 * used. */
static unsigned char report_stack[64 * 1024] __attribute__((aligned(64)));
static ucontext_t report_ctx, handler_ctx;
static struct {
  int sig;
  siginfo_t *si;
  void *uc;
  sigset_t mask; /* the handler's signal mask */
} report_args;

static void report_on_own_stack(void) {
  crash_report(report_args.sig, report_args.si, report_args.uc);
}

/* The handler. getcontext/makecontext/swapcontext are not on POSIX's
 * async-signal-safe list; in glibc on x86-64 they are register moves and
 * one rt_sigprocmask(2), which is (as are pthread_sigmask, sigfillset and
 * sigdelset). */
static void on_crash(int sig, siginfo_t *si, void *uc) {
  if (__atomic_exchange_n(&crashing, 1, __ATOMIC_SEQ_CST)) {
    chain(sig, si); /* a fault while reporting, or a second crash */
    return;
  }
  int saved = errno;
  report_args.sig = sig;
  report_args.si = si;
  report_args.uc = uc;
  /* Other signals wait until we are back on this stack: off the signal
   * stack, a handler with SA_ONSTACK (Python's SIGINT handler, say) would
   * be put at its top, over this handler's frame and the context being
   * unwound (a SIGINT during a report made the process spin). The mask
   * is saved in both contexts, so it holds until the end of the switch
   * back. A fault in the report still comes through. */
  sigset_t quiet;
  sigfillset(&quiet);
  for (size_t k = 0; k < NCRASH; k++) sigdelset(&quiet, crash_sigs[k]);
  pthread_sigmask(SIG_SETMASK, &quiet, &report_args.mask);
  if (getcontext(&report_ctx) == 0) {
    report_ctx.uc_stack.ss_sp = report_stack;
    report_ctx.uc_stack.ss_size = sizeof report_stack;
    report_ctx.uc_link = &handler_ctx; /* back here when it returns */
    makecontext(&report_ctx, report_on_own_stack, 0);
    if (swapcontext(&handler_ctx, &report_ctx) != 0)
      crash_report(sig, si, uc); /* cannot happen: here, then */
  } else {
    crash_report(sig, si, uc);
  }
  pthread_sigmask(SIG_SETMASK, &report_args.mask, NULL);
  chain(report_args.sig, report_args.si);
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
void pyprof_write_stacks(int native) {
  char path[PYPROF_PATH_MAX];
  if (pyprof_output_path(path, sizeof path - 32) < 0) return;
  strcat(path, ".stacks.txt");
  char tmp[PYPROF_PATH_MAX + 32];
  snprintf(tmp, sizeof tmp, "%s.part", path);
  rep r;
  rep_init(&r, open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644), -1);
  if (r.fd[0] < 0) {
    pyprof_say("cannot write %s: %s", path, strerror(errno));
    return;
  }
  rep_s(&r, "Python stacks of process ");
  rep_num(&r, (uint64_t)getpid(), 0);
  rep_s(&r, " (innermost first):\n");
  python_stacks(&r, NULL, "");
  if (native) {
    /* The request came as a signal that some thread is still returning
     * from (on_snapshot): give it a moment, or its stack shows our
     * handler on top. */
    struct timespec pause = {0, 20 * 1000000};
    nanosleep(&pause, NULL);
    rep_s(&r, "Native stacks (innermost first):\n");
    native_stacks_of_others(&r, 1000);
  }
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
