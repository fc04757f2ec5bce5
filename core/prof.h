/*
 * prof.h -- the profiling engine: function registry, per-thread shadow
 * stacks and aggregation, snapshots.
 *
 * Interpreter-independent: callers turn interpreter events into
 * pyprof_enter()/pyprof_leave() with a timestamp in timer ticks.
 *
 * Rules of this module
 * - A pyprof_thread is written only by its owning thread (the "writer").
 *   Each mutation is bracketed by a sequence counter (odd while writing).
 *   A reader (the dumper, any thread) asks the writer to park with
 *   pyprof_thread_pause() and copies the tables while the counter is even
 *   and unchanged; see prof.c for the protocol. No atomics or locks on the
 *   hot path, only ordered plain stores (x86-TSO; release/acquire elsewhere).
 * - A retired thread (its OS thread ended) is folded into one total of
 *   finished threads at the next thread creation or snapshot, and its
 *   tables freed; the struct is never freed, but may be reused.
 * - The function registry is global and append-only; registration takes a
 *   mutex (first sight only). Names are immutable C strings once published.
 * - Accounting follows CPython's Modules/_lsprof.c: per activation the
 *   callee's inline time excludes sub-calls; cumulative time is added only
 *   when the outermost activation of a function (and of a caller->callee
 *   edge) returns; a return of an inner activation counts as a recursive
 *   call.
 */
#ifndef PYPROF_PROF_H
#define PYPROF_PROF_H

#include <stddef.h>
#include <stdint.h>

#include <pthread.h>

#include "clock.h"

/* Locks of the library are taken through these, which count how many this
 * thread holds: a fatal-signal handler reads the count (initial-exec TLS,
 * so reading it is async-signal-safe) to know whether it may block the
 * thread it interrupted without deadlocking the thread that writes the
 * file. */
extern __thread int pyprof_busy __attribute__((tls_model("initial-exec")));
static inline void pyprof_lock(pthread_mutex_t *m) {
  pyprof_busy++;
  pthread_mutex_lock(m);
}
static inline void pyprof_unlock(pthread_mutex_t *m) {
  pthread_mutex_unlock(m);
  pyprof_busy--;
}

typedef uint32_t pyprof_fid; /* dense index into the function registry */
#define PYPROF_FID_NONE UINT32_MAX

/* A function as pstats names it: (file, line, name). Built-ins use
 * file "~", line 0 and a name like "<built-in method builtins.len>". */
typedef struct pyprof_func {
  const char *file; /* owned by the registry; interned: functions of one
                       file share the pointer */
  const char *name; /* owned by the registry */
  int line;         /* first line number, 0 for built-ins */
} pyprof_func;

/* Registers a function by its label and returns its id. Two calls with the
 * same label return the same id (labels are the identity pstats uses).
 * Thread-safe; allocates; not async-signal-safe. Returns PYPROF_FID_NONE
 * when out of memory. */
pyprof_fid pyprof_func_register(const char *file, int line, const char *name);

/* Number of registered functions, and one of them (NULL if out of range).
 * Readable from any thread; the returned data never changes. */
uint32_t pyprof_func_count(void);
const pyprof_func *pyprof_func_get(pyprof_fid fid);

/* Per-thread statistics of one function (an "entry", as in _lsprof.c). */
typedef struct pyprof_entry {
  pyprof_fid fid;       /* registry id */
  uint32_t depth;       /* activations currently on this thread's stack */
  uint64_t calls;       /* completed activations */
  uint64_t rcalls;      /* of which were not outermost (recursive) */
  uint64_t tt;          /* total (cumulative) ticks, outermost only */
  uint64_t it;          /* inline ticks: own time, not in sub-calls */
  uint32_t last_edge;   /* hot-path cache: index+1 of last caller edge */
  uint32_t last_node;   /* hot-path cache: index+1 of last path node */
  uint32_t pad_;
} pyprof_entry;

/* A slot of a thread's lookup table: an interpreter key (code object,
 * C function identity) to the entry of its function. Several keys may
 * share an entry when they have one label. */
typedef struct pyprof_slot {
  const void *key;      /* NULL = empty */
  uint32_t entry;       /* index into entries */
} pyprof_slot;

/* Per-thread statistics of a caller->callee pair ("sub-entry"). */
typedef struct pyprof_edge {
  uint32_t caller;      /* index of the caller's entry in the thread */
  uint32_t callee;      /* index of the callee's entry in the thread */
  uint32_t depth;       /* activations of this edge on the stack */
  uint32_t next;        /* hash chain (edge index + 1, 0 = end) */
  uint64_t calls, rcalls, tt, it;
} pyprof_edge;

/* One activation on a thread's shadow stack. */
typedef struct pyprof_frame {
  uint32_t entry;       /* index of the function's entry */
  uint32_t edge;        /* index+1 of the caller->callee edge, 0 if none */
  uint64_t t0;          /* virtual ticks at entry */
  uint64_t subt;        /* ticks spent in completed sub-calls */
  uint32_t node;        /* index+1 of its call-path node, 0 if none */
  uint32_t pad_;
} pyprof_frame;

/* A node of a thread's calling-context tree: one call path. */
typedef struct pyprof_node {
  uint32_t parent;      /* index+1 of the parent node, 0 for a root */
  uint32_t entry;       /* function's entry index, or PYPROF_NODE_TRUNC */
  uint32_t next;        /* hash chain (index+1) */
  uint32_t active;      /* activations of this node on the stack */
  uint64_t calls, tt, it; /* completed calls, total ticks (outermost), own */
} pyprof_node;
#define PYPROF_NODE_TRUNC UINT32_MAX

/* Call-path recording (PYPROF_PATHS); set before threads start. */
extern int pyprof_paths_enabled;
#define PYPROF_PATH_DEPTH 256      /* deeper calls stay on the node there */
#define PYPROF_PATH_NODES 500000u  /* per thread; then "[truncated]" */

/* Everything the profiler knows about one OS thread. Written only by that
 * thread (see the rules at the top); read by snapshots under `seq`. */
typedef struct pyprof_thread {
  volatile uint32_t seq;  /* odd while the owner mutates; see prof.c */
  volatile int park;      /* a reader asks the owner to wait (see park) */
  uint32_t overflow;      /* pushes that found no room: leaves to ignore */
  uint32_t depth;         /* activations on the stack */
  uint32_t stack_cap;
  pyprof_frame *stack;

  pyprof_entry *entries;  /* per-function statistics, dense */
  uint32_t nentries, entries_cap;
  pyprof_slot *slots;     /* open addressing by key hash */
  uint32_t nslots_used;
  uint32_t slot_mask;     /* number of slots - 1 (power of two) */
  uint32_t *fid_entry;    /* registry id -> entry index+1 (0 = none) */
  uint32_t fid_cap;

  pyprof_edge *edges;     /* caller->callee statistics, dense */
  uint32_t nedges, edges_cap;
  uint32_t *edge_heads;   /* chains by hash of (caller, callee) */
  uint32_t edge_mask;

  pyprof_node *nodes;     /* calling-context tree, dense */
  uint32_t nnodes, nodes_cap;
  uint32_t *node_heads;   /* chains by hash of (parent, entry) */
  uint32_t node_mask;
  uint64_t truncated;     /* activations without a node of their own */

  uint64_t dropped;       /* events lost to allocation failure */
  uint64_t tid;           /* OS thread id, for display */
  void *host;             /* the interpreter's state of this thread, for
                             stack reports (opaque here; set by preload) */
  int retired;            /* the OS thread has ended (set with release
                             order by pyprof_thread_retire) */
  struct pyprof_thread *next; /* global list (prof.c's lock) */
  pyprof_vclock clock;    /* this thread's virtual clock (clock.h) */
  int folded;             /* retired, and its statistics added to the
                             finished threads' totals: tables freed (NULL,
                             sizes 0), the struct free for a new thread.
                             Written under prof.c's lock. */
} pyprof_thread;

/* Creates the state of one OS thread. `tid` is only used for display.
 * Allocates; not async-signal-safe. Returns NULL when out of memory. The
 * thread is linked into the global list that dumps walk, or reuses the
 * struct of a thread that ended and was folded (see below); first it
 * folds threads that ended since the last fold. */
pyprof_thread *pyprof_thread_new(uint64_t tid);

/* Marks a thread as finished. Called by its owner after its last event;
 * it must make no event afterwards. Its statistics stay in every dump:
 * at the next pyprof_thread_new() or snapshot (not a crash dump's, see
 * pyprof_snapshot_patience_ns) they are added to the totals of finished
 * threads and its tables are freed, unless activations are still on its
 * stack (those are counted at each snapshot's instant; such a thread is
 * folded once pyprof_flush_all() or pyprof_reset_all() empties it). The
 * struct itself is never freed, only reused for a new thread. */
void pyprof_thread_retire(pyprof_thread *t);

/* Hot path. Finds this thread's entry for `key`, or NULL if the thread has
 * not seen it yet. O(1) expected; no allocation. */
static inline uint32_t pyprof__hash_ptr(const void *key) {
  uint64_t h = (uint64_t)(uintptr_t)key * 0x9E3779B97F4A7C15ull;
  return (uint32_t)(h >> 32);
}

static inline pyprof_entry *pyprof_lookup(pyprof_thread *t, const void *key) {
  uint32_t i = pyprof__hash_ptr(key) & t->slot_mask;
  for (;;) {
    const pyprof_slot *s = &t->slots[i];
    if (s->key == key) return &t->entries[s->entry];
    if (!s->key) return NULL;
    i = (i + 1) & t->slot_mask;
  }
}

/* First sight in this thread: maps `key` (not NULL) to the entry of
 * registry id `fid`, creating it if needed. Allocates; returns NULL when
 * out of memory. */
pyprof_entry *pyprof_insert(pyprof_thread *t, const void *key, pyprof_fid fid);

/* A call of `e` starts at `now` (ticks). */
void pyprof_enter(pyprof_thread *t, pyprof_entry *e, uint64_t now);

/* A call whose function could not be recorded (out of memory): keeps the
 * stack balanced so that the matching leave is ignored. */
void pyprof_enter_lost(pyprof_thread *t);

/* The innermost activation returns at `now`. Ignored on an empty stack
 * (a return from a frame entered before profiling began). */
void pyprof_leave(pyprof_thread *t, uint64_t now);

/* Depth of the shadow stack. Overflow and allocation failures are
 * counted in `dropped`, never reported on the hot path; snapshots carry
 * the count to the file. */
uint32_t pyprof_stack_depth(const pyprof_thread *t);

/* ---- snapshots ---------------------------------------------------------- */

/* Statistics of one function merged over all threads, in pstats terms. */
typedef struct pyprof_row {
  pyprof_fid fid;
  uint64_t nc;  /* all calls */
  uint64_t cc;  /* primitive (non-recursive) calls */
  uint64_t tt;  /* own ticks (pstats "tottime") */
  uint64_t ct;  /* cumulative ticks (pstats "cumtime") */
} pyprof_row;

/* One caller->callee edge merged over all threads, in pstats terms. */
typedef struct pyprof_edge_row {
  pyprof_fid caller, callee;
  uint64_t nc, cc, tt, ct;
} pyprof_edge_row;

/* One call path merged over all threads. */
typedef struct pyprof_path_row {
  uint32_t parent;      /* index+1 in the snapshot's paths, 0 = root */
  pyprof_fid fid;       /* PYPROF_FID_NONE for "[truncated]" */
  uint64_t calls, tt, ct; /* own ticks (tt) and total ticks (ct) */
} pyprof_path_row;

typedef struct pyprof_snapshot {
  pyprof_row *rows;            /* sorted by fid; only functions with calls */
  size_t nrows;
  pyprof_edge_row *edges;      /* sorted by (callee, caller) */
  size_t nedges;
  uint64_t dropped;            /* events lost to allocation failure */
  uint32_t nthreads;           /* threads that contributed */
  pyprof_path_row *paths;      /* parents before children */
  size_t npaths;
  uint64_t truncated;          /* activations charged to "[truncated]" */
} pyprof_snapshot;

/* Takes a consistent snapshot of every thread. Activations still on a
 * stack are counted as if they returned at raw time `raw_now` (or, for a
 * thread whose clock is its own, at its last event), without changing the
 * live data:
 * later snapshots report as if this one never happened. The calling
 * thread's own data (if `self` is not NULL) is read directly.
 * Allocates (large arrays are mapped; release them with
 * pyprof_snapshot_free(), never free()); not async-signal-safe. Returns 0,
 * or -1 when out of memory. */
int pyprof_snapshot_take(pyprof_snapshot *s, pyprof_thread *self,
                         uint64_t raw_now);
void pyprof_snapshot_free(pyprof_snapshot *s);

/* The newest thread; follow ->next. Read without a lock (threads are
 * only ever added at the head and never freed or unlinked): for crash
 * reports and live stacks, which read stacks defensively. A retired
 * thread's tables may be freed at any time (pointers set to NULL and sizes
 * to 0 first), and its struct reused for a new thread (`retired` is
 * cleared last): read `retired` before the rest, and the tables only
 * through a fault-proof read. Async-signal-safe. */
pyprof_thread *pyprof_threads_head(void);

/* When set, a snapshot waits at most this long (ns) for a thread that is
 * in the middle of an event, then leaves that thread out: for the dump of
 * a crashing process, whose faulting thread may never finish its event.
 * Such a snapshot also folds no finished thread (it frees nothing and
 * allocates only its own result): those are read where they are. */
extern uint64_t pyprof_snapshot_patience_ns;

/* Forgets all statistics of every thread and of the finished threads'
 * totals (registry is kept; so are `dropped` counts and the number of
 * threads dumps report). Only safe when no thread is inside
 * pyprof_enter/leave and stacks are empty. */
void pyprof_reset_all(void);

/* Counts every activation on every stack as returning at raw time
 * `raw_now` and empties the stacks (cProfile's behaviour when disabled).
 * Only safe when no thread can run an event (the caller holds the GIL and
 * the hooks are off). */
void pyprof_flush_all(uint64_t raw_now);

/* In a child just forked: forgets every statistic and every other
 * thread, keeps the stack of `self` (the forking thread) with its
 * activations restarted at virtual time now, so the child's file holds
 * only what the child does. The other threads' structs are emptied and
 * marked retired, so that their tables are freed and the structs reused
 * later. Called with the core locks held (pyprof_core_lock() before the
 * fork). Async-signal-safe: it only stores to memory. */
void pyprof_fork_child(pyprof_thread *self);

/* Locks every mutex of core/ around fork() (prepare), and releases them
 * in the parent and the child. */
void pyprof_core_lock(void);
void pyprof_core_unlock(void);

/* ---- writer-side pause protocol (used by snapshots) --------------------- */

/* The owner brackets each mutation with these (see prof.c for the
 * protocol). If a reader asked it to park, it waits before mutating. */
void pyprof__park(pyprof_thread *t);
static inline void pyprof_write_begin(pyprof_thread *t) {
  t->seq++;
  __atomic_signal_fence(__ATOMIC_SEQ_CST); /* compiler barrier only */
  if (__builtin_expect(t->park, 0)) pyprof__park(t);
}
static inline void pyprof_write_end(pyprof_thread *t) {
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  t->seq++;
}

/* Prepares cross-thread snapshots (registers for membarrier(2)). Returns 0
 * when snapshots may be taken while other threads run; -1 when they may
 * only be taken while no other thread can produce events (e.g. with the
 * GIL held). Call once at start, and again in a forked child. */
int pyprof_snapshot_init(void);

/* Whether snapshots must be taken with the other threads stopped (no
 * membarrier): a caller without the GIL takes it first. */
int pyprof_snapshot_needs_gil(void);

#endif
