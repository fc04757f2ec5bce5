/*
 * prof.c -- function registry, per-thread aggregation, snapshots.
 *
 * The reader/writer protocol between a thread (the only writer of its
 * pyprof_thread) and a snapshot taker (any thread, no GIL needed):
 *
 *   writer, per event:  seq++ (odd); [compiler barrier]
 *                       if (park) { seq++; wait while park; seq++ }
 *                       mutate; [compiler barrier]; seq++ (even)
 *   reader:             park = 1; membarrier(); wait while seq is odd;
 *                       copy; park = 0
 *
 * membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) runs a full memory barrier
 * on every CPU running a thread of this process. After it, a writer that
 * had begun an event has its odd `seq` visible, and a writer that begins
 * one later sees `park` and waits: so once `seq` reads even, no mutation
 * is under way or can start, and the tables (including arrays a realloc
 * could free) are safe to copy. The writer pays two plain stores and one
 * load per event and never a fence. Without membarrier, snapshots of other
 * threads are only safe when they cannot run events (GIL held).
 *
 * Threads that ended: a retired thread never writes again. Under
 * threads_lock (at the next pyprof_thread_new or snapshot) its statistics
 * are added to `finished`, one total of all folded threads kept like a
 * thread's tables, and its tables are freed; its struct stays in the list
 * (lock-free readers may hold it) and is reused for the next new thread.
 * Snapshots merge `finished` as one more thread, so they report exactly
 * what they reported before the fold.
 */
#include "prof.h"
#include "hugemap.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- registry ------------------------------------------------------------ */

/* Registry of functions by label. Append-only; `funcs` is reallocated
 * under `reg_lock`, and readers index it through pyprof_func_get() which
 * reads a published pointer to a chunk that never moves. */
#define REG_CHUNK_BITS 12
#define REG_CHUNK (1u << REG_CHUNK_BITS)
#define REG_MAX_CHUNKS 4096 /* 16M functions */

__thread int pyprof_busy __attribute__((tls_model("initial-exec")));

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static pyprof_func *reg_chunks[REG_MAX_CHUNKS]; /* fixed-size chunks */
static volatile uint32_t reg_count;             /* published count */
static uint32_t *reg_index;                     /* label hash -> fid+1 */
static uint32_t reg_index_mask;
static const char **reg_files;  /* interned file names, open addressing */
static uint32_t reg_files_mask, reg_nfiles;

static uint64_t label_hash(const char *file, int line, const char *name) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (const char *p = file; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
  h = (h ^ (uint64_t)(unsigned)line) * 1099511628211ull;
  for (const char *p = name; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
  return h;
}

static uint64_t str_hash(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* The registry's copy of file name `file`: one per distinct name, shared
 * by every function of that file (dumps name a file once by pointer).
 * Called with reg_lock held; NULL when out of memory. */
static const char *reg_intern_file(const char *file) {
  if ((reg_nfiles + 1) * 2 > reg_files_mask) {
    uint32_t nmask = reg_files_mask ? reg_files_mask * 2 + 1 : 255;
    const char **nf = calloc((size_t)nmask + 1, sizeof *nf);
    if (!nf) return NULL;
    for (uint32_t j = 0; reg_files && j <= reg_files_mask; j++) {
      if (!reg_files[j]) continue;
      uint32_t i = (uint32_t)str_hash(reg_files[j]) & nmask;
      while (nf[i]) i = (i + 1) & nmask;
      nf[i] = reg_files[j];
    }
    free(reg_files);
    reg_files = nf;
    reg_files_mask = nmask;
  }
  uint32_t i = (uint32_t)str_hash(file) & reg_files_mask;
  for (; reg_files[i]; i = (i + 1) & reg_files_mask)
    if (strcmp(reg_files[i], file) == 0) return reg_files[i];
  char *copy = strdup(file);
  if (!copy) return NULL;
  reg_nfiles++;
  return reg_files[i] = copy;
}

static pyprof_func *reg_at(uint32_t fid) {
  return &reg_chunks[fid >> REG_CHUNK_BITS][fid & (REG_CHUNK - 1)];
}

/* Doubles the label index. Called with reg_lock held. */
static int reg_grow_index(void) {
  uint32_t nmask = reg_index_mask ? reg_index_mask * 2 + 1 : 1023;
  uint32_t *ni = calloc((size_t)nmask + 1, sizeof *ni);
  if (!ni) return -1;
  for (uint32_t f = 0; f < reg_count; f++) {
    pyprof_func *fn = reg_at(f);
    uint32_t i = (uint32_t)label_hash(fn->file, fn->line, fn->name) & nmask;
    while (ni[i]) i = (i + 1) & nmask;
    ni[i] = f + 1;
  }
  free(reg_index);
  reg_index = ni;
  reg_index_mask = nmask;
  return 0;
}

pyprof_fid pyprof_func_register(const char *file, int line, const char *name) {
  pyprof_fid fid = PYPROF_FID_NONE;
  pyprof_lock(&reg_lock);
  if ((reg_count + 1) * 2 > reg_index_mask && reg_grow_index() < 0) goto out;
  uint32_t i = (uint32_t)label_hash(file, line, name) & reg_index_mask;
  for (; reg_index[i]; i = (i + 1) & reg_index_mask) {
    pyprof_func *fn = reg_at(reg_index[i] - 1);
    if (fn->line == line && strcmp(fn->name, name) == 0 &&
        strcmp(fn->file, file) == 0) {
      fid = reg_index[i] - 1;
      goto out;
    }
  }
  uint32_t n = reg_count, chunk = n >> REG_CHUNK_BITS;
  if (chunk >= REG_MAX_CHUNKS) goto out;
  /* malloc, not calloc: an entry is written before reg_count covers it,
   * and zeroing the 96 kB chunk faulted in 24 pages at every start
   * (~12 us each on this project's VM). */
  if (!reg_chunks[chunk] &&
      !(reg_chunks[chunk] = malloc(REG_CHUNK * sizeof(pyprof_func))))
    goto out;
  const char *f = reg_intern_file(file);
  char *nm = f ? strdup(name) : NULL;
  if (!nm) goto out;
  pyprof_func *fn = reg_at(n);
  fn->file = f;
  fn->name = nm;
  fn->line = line;
  reg_index[i] = n + 1;
  __atomic_store_n(&reg_count, n + 1, __ATOMIC_RELEASE); /* publish */
  fid = n;
out:
  pyprof_unlock(&reg_lock);
  return fid;
}

uint32_t pyprof_func_count(void) {
  return __atomic_load_n(&reg_count, __ATOMIC_ACQUIRE);
}

const pyprof_func *pyprof_func_get(pyprof_fid fid) {
  if (fid >= pyprof_func_count()) return NULL;
  return reg_at(fid);
}

/* ---- threads ------------------------------------------------------------- */

int pyprof_paths_enabled = 1;

static pthread_mutex_t threads_lock = PTHREAD_MUTEX_INITIALIZER;
static pyprof_thread *threads_head; /* all threads, newest first */

/* Threads that ended. A retired thread never writes again, so its
 * statistics can be added to `finished` and its tables freed ("folded")
 * whenever threads_lock is held: see fold_retired(). */
static pyprof_thread finished;       /* totals of folded threads: a thread
                                        of its own (never in the list),
                                        one entry per function, edges and
                                        nodes keyed as in any thread;
                                        threads_lock */
static uint32_t finished_nthreads;   /* folded threads that had entries
                                        (pyprof_snapshot.nthreads);
                                        threads_lock */
static int retired_pending;          /* retired, not yet folded (atomic;
                                        a hint that a fold may be due) */
static uint32_t nfolded;             /* folded structs in the list, free
                                        for new threads; threads_lock */

static void fold_retired(void);

#define INIT_SLOTS 256u
#define INIT_EDGES 256u
#define INIT_STACK 64u

/* The tables a new thread starts with (see pyprof_thread_new). */
typedef struct thread_tables {
  pyprof_slot *slots;
  uint32_t *edge_heads, *node_heads;
  pyprof_frame *stack;
} thread_tables;

static void tables_free(thread_tables *tb) {
  free(tb->slots);
  free(tb->edge_heads);
  free(tb->node_heads);
  free(tb->stack);
}

/* Gives `t` (new, or a folded struct being reused) the state of a thread
 * that has seen nothing, with tables `tb`. Leaves `seq`, `next`,
 * `retired` and `folded` to the caller. */
static void thread_init(pyprof_thread *t, const thread_tables *tb,
                        uint64_t tid, const pyprof_vclock *clock) {
  t->park = 0;
  t->overflow = 0;
  t->depth = 0;
  t->stack_cap = INIT_STACK;
  t->stack = tb->stack;
  t->entries = NULL;
  t->nentries = t->entries_cap = 0;
  t->slots = tb->slots;
  t->nslots_used = 0;
  t->slot_mask = INIT_SLOTS - 1;
  t->fid_entry = NULL;
  t->fid_cap = 0;
  t->edges = NULL;
  t->nedges = t->edges_cap = 0;
  t->edge_heads = tb->edge_heads;
  t->edge_mask = INIT_EDGES - 1;
  t->nodes = NULL;
  t->nnodes = t->nodes_cap = 0;
  t->node_heads = tb->node_heads;
  t->node_mask = INIT_EDGES - 1;
  t->truncated = 0;
  t->dropped = 0;
  t->tid = tid;
  t->host = NULL;
  t->clock = *clock;
}

/* A folded struct of the list, to be reused; NULL if none. Called with
 * threads_lock held. */
static pyprof_thread *take_folded(void) {
  if (nfolded == 0) return NULL;
  for (pyprof_thread *t = threads_head; t; t = t->next)
    if (t->folded) {
      nfolded--;
      return t;
    }
  return NULL;
}

pyprof_thread *pyprof_thread_new(uint64_t tid) {
  thread_tables tb = {
      .slots = calloc(INIT_SLOTS, sizeof *tb.slots),
      .edge_heads = calloc(INIT_EDGES, sizeof *tb.edge_heads),
      .node_heads = calloc(INIT_EDGES, sizeof *tb.node_heads),
      .stack = malloc(INIT_STACK * sizeof *tb.stack),
  };
  pyprof_vclock clock;
  memset(&clock, 0, sizeof clock);
  pyprof_vclock_start(&clock, pyprof_clock_read()); /* this thread's CPU */
  if (!tb.slots || !tb.edge_heads || !tb.node_heads || !tb.stack) {
    tables_free(&tb);
    return NULL;
  }
  pyprof_lock(&threads_lock);
  fold_retired();
  pyprof_thread *t = take_folded();
  if (t) {
    /* Lock-free readers may be looking at it: they skip it while it is
     * retired, and `retired` is cleared only once it is whole. */
    thread_init(t, &tb, tid, &clock);
    t->folded = 0;
    __atomic_store_n(&t->retired, 0, __ATOMIC_RELEASE);
  } else if ((t = calloc(1, sizeof *t))) {
    thread_init(t, &tb, tid, &clock);
    t->next = threads_head;
    __atomic_store_n(&threads_head, t, __ATOMIC_RELEASE);
  }
  pyprof_unlock(&threads_lock);
  if (!t) tables_free(&tb);
  return t;
}

void pyprof_thread_retire(pyprof_thread *t) {
  /* Release: a folder that sees `retired` sees every write before it. */
  if (__atomic_exchange_n(&t->retired, 1, __ATOMIC_ACQ_REL) == 0)
    __atomic_fetch_add(&retired_pending, 1, __ATOMIC_RELEASE);
}

/* Writer side: wait while a reader copies this thread's data. Entered
 * with an odd `seq`; shows an even one while waiting. */
void pyprof__park(pyprof_thread *t) {
  __atomic_store_n(&t->seq, t->seq + 1, __ATOMIC_RELEASE);
  while (__atomic_load_n(&t->park, __ATOMIC_ACQUIRE)) sched_yield();
  __atomic_store_n(&t->seq, t->seq + 1, __ATOMIC_SEQ_CST);
}

static int membarrier_ok;

int pyprof_snapshot_needs_gil(void) { return !membarrier_ok; }

int pyprof_snapshot_init(void) {
  membarrier_ok =
      syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
  return membarrier_ok ? 0 : -1;
}

/* ---- per-thread tables --------------------------------------------------- */

/* Doubles the slot table of `t`. Called inside a write section. */
static int grow_slots(pyprof_thread *t) {
  uint32_t nmask = t->slot_mask * 2 + 1;
  pyprof_slot *ns = calloc((size_t)nmask + 1, sizeof *ns);
  if (!ns) return -1;
  for (uint32_t j = 0; j <= t->slot_mask; j++) {
    if (!t->slots[j].key) continue;
    uint32_t i = pyprof__hash_ptr(t->slots[j].key) & nmask;
    while (ns[i].key) i = (i + 1) & nmask;
    ns[i] = t->slots[j];
  }
  free(t->slots);
  t->slots = ns;
  t->slot_mask = nmask;
  return 0;
}

/* Makes the array *arr (capacity *cap elements of `size` bytes, `used` of
 * them in use) hold `more` more: it at least doubles, and starts at
 * `first`. -1 when out of memory or past 2^32 elements. */
static int reserve(void **arr, uint32_t *cap, uint32_t used, uint32_t more,
                   size_t size, uint32_t first) {
  if (more <= *cap - used) return 0;
  uint64_t ncap = *cap ? (uint64_t)*cap * 2 : first;
  if (ncap < (uint64_t)used + more) ncap = (uint64_t)used + more;
  if (ncap > UINT32_MAX) return -1;
  void *p = realloc(*arr, (size_t)ncap * size);
  if (!p) return -1;
  *arr = p;
  *cap = (uint32_t)ncap;
  return 0;
}
#define RESERVE(arr, cap, used, more, first) \
  reserve((void **)&(arr), &(cap), (used), (more), sizeof *(arr), (first))

/* Makes fid_entry of `t` cover registry id `fid`. */
static int fid_reserve(pyprof_thread *t, pyprof_fid fid) {
  uint32_t ncap = t->fid_cap ? t->fid_cap : 256;
  while (ncap <= fid) ncap *= 2;
  if (ncap == t->fid_cap) return 0;
  uint32_t *nf = realloc(t->fid_entry, ncap * sizeof *nf);
  if (!nf) return -1;
  memset(nf + t->fid_cap, 0, (ncap - t->fid_cap) * sizeof *nf);
  t->fid_entry = nf;
  t->fid_cap = ncap;
  return 0;
}

/* The entry of `fid` in `t`, created if needed; index, or -1 on OOM.
 * Called inside a write section. */
static int64_t entry_for_fid(pyprof_thread *t, pyprof_fid fid) {
  if (fid >= t->fid_cap && fid_reserve(t, fid) < 0) return -1;
  if (t->fid_entry[fid]) return t->fid_entry[fid] - 1;
  if (RESERVE(t->entries, t->entries_cap, t->nentries, 1, 128) < 0) return -1;
  pyprof_entry *e = &t->entries[t->nentries];
  memset(e, 0, sizeof *e);
  e->fid = fid;
  t->fid_entry[fid] = ++t->nentries;
  return t->nentries - 1;
}

pyprof_entry *pyprof_insert(pyprof_thread *t, const void *key,
                            pyprof_fid fid) {
  pyprof_entry *res = NULL;
  pyprof_write_begin(t);
  if ((t->nslots_used + 1) * 2 > t->slot_mask && grow_slots(t) < 0) goto out;
  int64_t idx = entry_for_fid(t, fid);
  if (idx < 0) goto out;
  uint32_t i = pyprof__hash_ptr(key) & t->slot_mask;
  while (t->slots[i].key && t->slots[i].key != key) i = (i + 1) & t->slot_mask;
  if (!t->slots[i].key) t->nslots_used++;
  t->slots[i].key = key;
  t->slots[i].entry = (uint32_t)idx;
  res = &t->entries[idx];
out:
  if (!res) t->dropped++;
  pyprof_write_end(t);
  return res;
}

static uint32_t edge_hash(uint32_t caller, uint32_t callee) {
  return (uint32_t)((((uint64_t)caller << 32) | callee) * 0x9E3779B97F4A7C15ull >> 32);
}

/* Rebuilds the edge chains with `nmask` + 1 heads (a power of two, above
 * the old mask). Called inside a write section, or on the finished
 * threads' totals under threads_lock. */
static int rehash_edges(pyprof_thread *t, uint32_t nmask) {
  uint32_t *nh = calloc((size_t)nmask + 1, sizeof *nh);
  if (!nh) return -1;
  for (uint32_t k = 0; k < t->nedges; k++) {
    pyprof_edge *g = &t->edges[k];
    uint32_t h = edge_hash(g->caller, g->callee) & nmask;
    g->next = nh[h];
    nh[h] = k + 1;
  }
  free(t->edge_heads);
  t->edge_heads = nh;
  t->edge_mask = nmask;
  return 0;
}

/* Finds or creates the edge caller->callee; returns index+1, 0 on OOM. */
static uint32_t edge_get(pyprof_thread *t, uint32_t caller, uint32_t callee) {
  pyprof_entry *ce = &t->entries[callee];
  if (ce->last_edge && t->edges[ce->last_edge - 1].caller == caller)
    return ce->last_edge;
  uint32_t h = edge_hash(caller, callee) & t->edge_mask;
  for (uint32_t k = t->edge_heads[h]; k; k = t->edges[k - 1].next) {
    if (t->edges[k - 1].caller == caller && t->edges[k - 1].callee == callee)
      return ce->last_edge = k;
  }
  if (t->nedges >= t->edge_mask && rehash_edges(t, t->edge_mask * 2 + 1) < 0)
    return 0;
  if (RESERVE(t->edges, t->edges_cap, t->nedges, 1, 256) < 0) return 0;
  pyprof_edge *g = &t->edges[t->nedges];
  memset(g, 0, sizeof *g);
  g->caller = caller;
  g->callee = callee;
  h = edge_hash(caller, callee) & t->edge_mask;
  g->next = t->edge_heads[h];
  t->edge_heads[h] = ++t->nedges;
  return ce->last_edge = t->nedges;
}

/* Rebuilds the node chains with `nmask` + 1 heads (see rehash_edges). */
static int rehash_nodes(pyprof_thread *t, uint32_t nmask) {
  uint32_t *nh = calloc((size_t)nmask + 1, sizeof *nh);
  if (!nh) return -1;
  for (uint32_t k = 0; k < t->nnodes; k++) {
    pyprof_node *n = &t->nodes[k];
    uint32_t h = edge_hash(n->parent, n->entry) & nmask;
    n->next = nh[h];
    nh[h] = k + 1;
  }
  free(t->node_heads);
  t->node_heads = nh;
  t->node_mask = nmask;
  return 0;
}

/* Finds or creates the node (parent, entry); index+1, 0 on failure. Past
 * `budget` nodes only "[truncated]" nodes are created. */
static uint32_t node_find(pyprof_thread *t, uint32_t parent, uint32_t entry,
                          uint32_t budget) {
  uint32_t h = edge_hash(parent, entry) & t->node_mask;
  for (uint32_t k = t->node_heads[h]; k; k = t->nodes[k - 1].next)
    if (t->nodes[k - 1].parent == parent && t->nodes[k - 1].entry == entry)
      return k;
  if (t->nnodes >= budget && entry != PYPROF_NODE_TRUNC) return 0;
  if (t->nnodes >= t->node_mask && rehash_nodes(t, t->node_mask * 2 + 1) < 0)
    return 0;
  if (RESERVE(t->nodes, t->nodes_cap, t->nnodes, 1, 256) < 0) return 0;
  pyprof_node *n = &t->nodes[t->nnodes];
  memset(n, 0, sizeof *n);
  n->parent = parent;
  n->entry = entry;
  h = edge_hash(parent, entry) & t->node_mask;
  n->next = t->node_heads[h];
  t->node_heads[h] = ++t->nnodes;
  return t->nnodes;
}

/* The call-path node for a call of entry `idx` under `parent` (index+1,
 * 0 at the root): cached per callee; past the depth cap, the parent's own
 * node; past the node budget, the parent's "[truncated]" child. */
static uint32_t node_get(pyprof_thread *t, uint32_t parent, uint32_t idx) {
  if (t->depth >= PYPROF_PATH_DEPTH && parent) return parent;
  pyprof_entry *e = &t->entries[idx];
  if (e->last_node && t->nodes[e->last_node - 1].parent == parent &&
      t->nodes[e->last_node - 1].entry == idx)
    return e->last_node;
  uint32_t k = node_find(t, parent, idx, PYPROF_PATH_NODES);
  if (k) return e->last_node = k;
  t->truncated++;
  k = node_find(t, parent, PYPROF_NODE_TRUNC, PYPROF_PATH_NODES);
  return k ? k : parent;
}

/* ---- finished threads ---------------------------------------------------- */

/* A mask for chains of at least `n` elements, no smaller than `mask`. */
static uint32_t mask_for(uint32_t mask, uint32_t n) {
  if (mask < INIT_EDGES - 1) mask = INIT_EDGES - 1;
  while (mask < n && mask < UINT32_MAX / 2) mask = mask * 2 + 1;
  return mask;
}

/* Makes room in `finished` for all of `t`, so that fold_thread() cannot
 * fail half-way: afterwards entry_for_fid(), edge_get() and node_find()
 * on it allocate nothing. Called with threads_lock held. */
static int finished_reserve(const pyprof_thread *t) {
  pyprof_thread *f = &finished;
  pyprof_fid maxfid = 0;
  for (uint32_t i = 0; i < t->nentries; i++)
    if (t->entries[i].fid > maxfid) maxfid = t->entries[i].fid;
  if (t->nentries && fid_reserve(f, maxfid) < 0) return -1;
  if (RESERVE(f->entries, f->entries_cap, f->nentries, t->nentries, 0) < 0 ||
      RESERVE(f->edges, f->edges_cap, f->nedges, t->nedges, 0) < 0 ||
      RESERVE(f->nodes, f->nodes_cap, f->nnodes, t->nnodes, 0) < 0)
    return -1;
  /* edge_get() and node_find() rehash when the count reaches the mask */
  uint32_t em = mask_for(f->edge_mask, f->nedges + t->nedges);
  uint32_t nm = mask_for(f->node_mask, f->nnodes + t->nnodes);
  if ((!f->edge_heads || em != f->edge_mask) && rehash_edges(f, em) < 0)
    return -1;
  if ((!f->node_heads || nm != f->node_mask) && rehash_nodes(f, nm) < 0)
    return -1;
  return 0;
}

/* Index in `finished` of the function of entry `i` of `t` (present once
 * its entries were folded). */
static uint32_t finished_entry(const pyprof_thread *t, uint32_t i) {
  return finished.fid_entry[t->entries[i].fid] - 1;
}

/* Frees the tables of `t` (retired), after setting every pointer to NULL
 * and every size to 0, for lock-free readers (see pyprof_threads_head). */
static void thread_release(pyprof_thread *t) {
  void *mem[] = {t->stack, t->entries,    t->slots, t->fid_entry,
                 t->edges, t->edge_heads, t->nodes, t->node_heads};
  t->depth = t->stack_cap = t->overflow = 0;
  t->stack = NULL;
  t->nentries = t->entries_cap = 0;
  t->entries = NULL;
  t->nslots_used = t->slot_mask = 0;
  t->slots = NULL;
  t->fid_cap = 0;
  t->fid_entry = NULL;
  t->nedges = t->edges_cap = t->edge_mask = 0;
  t->edges = NULL;
  t->edge_heads = NULL;
  t->nnodes = t->nodes_cap = t->node_mask = 0;
  t->nodes = NULL;
  t->node_heads = NULL;
  t->truncated = t->dropped = 0;
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  for (size_t i = 0; i < sizeof mem / sizeof *mem; i++) free(mem[i]);
}

/* Adds the statistics of `t` (retired, empty stack) to `finished` and
 * frees its tables: every later snapshot reports the same as if `t` were
 * still read where it was (sums of integers; call paths merged by
 * (parent, function) as snapshots merge threads). Called with
 * threads_lock held. Returns 0, or -1 when out of memory, with nothing
 * changed. */
static int fold_thread(pyprof_thread *t) {
  pyprof_thread *f = &finished;
  if (finished_reserve(t) < 0) return -1;
  /* From here on nothing allocates, so nothing fails. */
  for (uint32_t i = 0; i < t->nentries; i++) {
    const pyprof_entry *e = &t->entries[i];
    pyprof_entry *d = &f->entries[entry_for_fid(f, e->fid)];
    d->calls += e->calls;
    d->rcalls += e->rcalls;
    d->tt += e->tt;
    d->it += e->it;
  }
  for (uint32_t k = 0; k < t->nedges; k++) {
    const pyprof_edge *g = &t->edges[k];
    uint32_t m = edge_get(f, finished_entry(t, g->caller),
                          finished_entry(t, g->callee));
    pyprof_edge *d = &f->edges[m - 1];
    d->calls += g->calls;
    d->rcalls += g->rcalls;
    d->tt += g->tt;
    d->it += g->it;
  }
  /* Parents come before children; each node's `next` (its hash chain,
   * not needed any more) is overwritten with its node in `finished`. */
  for (uint32_t k = 0; k < t->nnodes; k++) {
    pyprof_node *n = &t->nodes[k];
    uint32_t parent = n->parent ? t->nodes[n->parent - 1].next : 0;
    uint32_t entry = n->entry == PYPROF_NODE_TRUNC
                         ? PYPROF_NODE_TRUNC
                         : finished_entry(t, n->entry);
    uint32_t m = node_find(f, parent, entry, UINT32_MAX);
    pyprof_node *d = &f->nodes[m - 1];
    d->calls += n->calls;
    d->tt += n->tt;
    d->it += n->it;
    n->next = m;
  }
  f->dropped += t->dropped;
  f->truncated += t->truncated;
  finished_nthreads += t->nentries != 0;
  thread_release(t);
  t->folded = 1;
  return 0;
}

/* Folds every retired thread with an empty stack (see fold_thread).
 * Called with threads_lock held; allocates and frees, so never from a
 * crash dump. A thread left unfolded for want of memory is read where it
 * is by snapshots and tried again next time. Cost: a walk of the list
 * when a thread retired since the last fold, plus the folded tables. */
static void fold_retired(void) {
  if (__atomic_load_n(&retired_pending, __ATOMIC_ACQUIRE) <= 0) return;
  for (pyprof_thread *t = threads_head; t; t = t->next) {
    if (t->folded || !__atomic_load_n(&t->retired, __ATOMIC_ACQUIRE) ||
        t->depth)
      continue;
    if (fold_thread(t) < 0) return;
    __atomic_fetch_sub(&retired_pending, 1, __ATOMIC_RELAXED);
    nfolded++;
  }
}

/* ---- enter / leave ------------------------------------------------------- */

void pyprof_enter(pyprof_thread *t, pyprof_entry *e, uint64_t now) {
  pyprof_write_begin(t);
  if (t->depth == t->stack_cap || t->overflow) {
    pyprof_frame *ns = t->overflow ? NULL
        : realloc(t->stack, (size_t)t->stack_cap * 2 * sizeof *ns);
    if (!ns) {
      t->overflow++; /* keep leaves balanced; count the loss */
      t->dropped++;
      goto out;
    }
    t->stack = ns;
    t->stack_cap *= 2;
  }
  uint32_t idx = (uint32_t)(e - t->entries);
  pyprof_frame *f = &t->stack[t->depth];
  f->entry = idx;
  f->edge = 0;
  f->t0 = now;
  f->subt = 0;
  f->node = 0;
  if (pyprof_paths_enabled) {
    f->node = node_get(t, t->depth ? t->stack[t->depth - 1].node : 0, idx);
    if (f->node) t->nodes[f->node - 1].active++;
  }
  e->depth++;
  if (t->depth > 0) {
    uint32_t k = edge_get(t, t->stack[t->depth - 1].entry, idx);
    if (k) t->edges[k - 1].depth++;
    else t->dropped++;
    f->edge = k;
  }
  t->depth++;
out:
  pyprof_write_end(t);
}

void pyprof_enter_lost(pyprof_thread *t) {
  pyprof_write_begin(t);
  t->overflow++;
  t->dropped++;
  pyprof_write_end(t);
}

/* Completes the activation `f` at `now` on the tables of `t` (shared by
 * leave and by snapshots, which run it on a copy). `parent` is the frame
 * below it or NULL. */
static void complete(pyprof_entry *entries, pyprof_edge *edges,
                     pyprof_node *nodes, const pyprof_frame *f,
                     pyprof_frame *parent, uint64_t now) {
  uint64_t tt = now > f->t0 ? now - f->t0 : 0;
  uint64_t it = tt > f->subt ? tt - f->subt : 0;
  if (parent) parent->subt += tt;
  pyprof_entry *e = &entries[f->entry];
  if (--e->depth == 0) e->tt += tt;
  else e->rcalls++;
  e->it += it;
  e->calls++;
  if (f->edge) {
    pyprof_edge *g = &edges[f->edge - 1];
    if (--g->depth == 0) g->tt += tt;
    else g->rcalls++;
    g->it += it;
    g->calls++;
  }
  if (f->node) {
    pyprof_node *n = &nodes[f->node - 1];
    if (--n->active == 0) n->tt += tt;
    n->it += it;
    n->calls++;
  }
}

void pyprof_leave(pyprof_thread *t, uint64_t now) {
  pyprof_write_begin(t);
  if (t->overflow) t->overflow--;
  else if (t->depth) {
    t->depth--;
    complete(t->entries, t->edges, t->nodes, &t->stack[t->depth],
             t->depth ? &t->stack[t->depth - 1] : NULL, now);
  }
  pyprof_write_end(t);
}

uint32_t pyprof_stack_depth(const pyprof_thread *t) { return t->depth; }


/* ---- snapshots ----------------------------------------------------------- */

/* A snapshot reads each thread's tables in place, while the owner is
 * parked (or is the caller), and merges them straight into the result:
 * no copy of the tables is made. Activations still on a stack are added
 * as complete() would count them returning at the snapshot instant, from
 * the stack alone, without writing to the thread. */

uint64_t pyprof_snapshot_patience_ns;

pyprof_thread *pyprof_threads_head(void) {
  return __atomic_load_n(&threads_head, __ATOMIC_ACQUIRE);
}

/* Whether `t` finished its event within the patience (always, without). */
static int wait_even(pyprof_thread *t) {
  uint64_t limit = pyprof_snapshot_patience_ns, t0 = 0;
  if (limit) t0 = pyprof__ts_ns(CLOCK_MONOTONIC);
  while (__atomic_load_n(&t->seq, __ATOMIC_ACQUIRE) & 1) {
    if (limit && pyprof__ts_ns(CLOCK_MONOTONIC) - t0 > limit) return 0;
    sched_yield();
  }
  return 1;
}

/* Arrays of a snapshot (rows, edges, paths). Those of BIG_MIN bytes or
 * more are mapped directly, 2 MiB-aligned and advised to use transparent
 * huge pages (hugemap.h), as the encoder's buffer is: the first snapshot
 * of 100k functions touches ~12 MB of fresh memory here, ~3000 page
 * faults at ~12 us each on this VM, against a few with huge pages. A
 * header in front of each array says how it was allocated; only
 * big_free() (pyprof_snapshot_free) may release one. */
#define BIG_MIN ((size_t)1 << 20)
#define BIG_HDR 64 /* keeps the array 64-byte aligned */

typedef struct big_hdr {
  size_t map_len; /* bytes mapped (header included), 0 = from malloc */
} big_hdr;

static big_hdr *big_hdr_of(void *p) {
  return (big_hdr *)(void *)((char *)p - BIG_HDR);
}

/* Resizes array `p` (NULL: a new one) to `n` bytes, keeping the first
 * `used` bytes; new bytes are zero when `zero`. NULL when out of memory
 * (`p` is left as it was). */
static void *big_realloc(void *p, size_t used, size_t n, int zero) {
  big_hdr *h = p ? big_hdr_of(p) : NULL;
  size_t total = n + BIG_HDR;
  if (h && h->map_len) {
    if (total <= h->map_len) return p; /* mapped pages start out zero */
    size_t len = pyprof_huge_round(total);
    if (mremap(h, h->map_len, len, 0) != MAP_FAILED) { /* in place */
      h->map_len = len;
      return p;
    }
  }
  if (total >= BIG_MIN) {
    size_t len;
    big_hdr *nh = pyprof_huge_map(total, &len);
    if (nh) {
      nh->map_len = len;
      void *np = (char *)nh + BIG_HDR;
      if (h) {
        memcpy(np, p, used);
        if (h->map_len) munmap(h, h->map_len);
        else free(h);
      }
      return np;
    }
    if (h && h->map_len) return NULL;
  }
  big_hdr *nh = realloc(h, total);
  if (!nh) return NULL;
  nh->map_len = 0;
  if (zero && n > used) memset((char *)nh + BIG_HDR + used, 0, n - used);
  return (char *)nh + BIG_HDR;
}

static void big_free(void *p) {
  if (!p) return;
  big_hdr *h = big_hdr_of(p);
  if (h->map_len) munmap(h, h->map_len);
  else free(h);
}

/* The snapshot being built. Arrays grow to exact sizes known once a
 * thread is parked, so a snapshot of one thread allocates each once. */
typedef struct acc {
  pyprof_row *rows;       /* by fid */
  uint32_t nfuncs;
  pyprof_edge_row *edges; /* appended per thread, summed at the end */
  size_t nedges, edges_cap;
  pyprof_path_row *paths; /* merged call paths */
  uint32_t npaths, paths_cap;
  uint32_t *path_next;    /* hash chains, parallel to paths: built only
                             when a second thread's tree is merged */
  uint32_t *path_heads;
  uint32_t path_mask;     /* 0 while there are no chains */
  uint32_t *map;          /* a thread's node index -> merged path index+1 */
  uint32_t map_cap;
  uint64_t truncated;
} acc;

static void acc_free_scratch(acc *a) {
  free(a->path_heads);
  free(a->path_next);
  free(a->map);
  a->path_heads = a->path_next = a->map = NULL;
}

/* Room for `n` more edge rows. */
static int acc_reserve_edges(acc *a, size_t n) {
  if (n <= a->edges_cap - a->nedges) return 0;
  size_t ncap = a->nedges + n;
  if (ncap < a->edges_cap + a->edges_cap / 2) ncap = a->edges_cap + a->edges_cap / 2;
  pyprof_edge_row *ne = big_realloc(a->edges, a->nedges * sizeof *ne,
                                    (ncap + 1) * sizeof *ne, 0);
  if (!ne) return -1;
  a->edges = ne;
  a->edges_cap = ncap;
  return 0;
}

static void acc_add_edge(acc *a, pyprof_fid caller, pyprof_fid callee,
                         uint64_t nc, uint64_t cc, uint64_t tt, uint64_t ct) {
  pyprof_edge_row *r = &a->edges[a->nedges++];
  r->caller = caller;
  r->callee = callee;
  r->nc = nc;
  r->cc = cc;
  r->tt = tt;
  r->ct = ct;
}

/* Makes room in the rows for registry id `fid`: functions registered
 * after the snapshot began (first called just then) get a row too. */
static int acc_fit(acc *a, pyprof_fid fid) {
  if (fid < a->nfuncs) return 0;
  uint32_t n = pyprof_func_count();
  if (fid >= n) return -1; /* cannot happen: ids come from the registry */
  pyprof_row *nr = big_realloc(a->rows, ((size_t)a->nfuncs + 1) * sizeof *nr,
                               ((size_t)n + 1) * sizeof *nr, 1);
  if (!nr) return -1;
  a->rows = nr;
  a->nfuncs = n;
  return 0;
}

/* Room for `n` more paths, with hash chains sized for them when chains
 * are in use (`chained`). */
static int acc_reserve_paths(acc *a, uint32_t n, int chained) {
  uint32_t need = a->npaths + n;
  if (need > a->paths_cap) {
    pyprof_path_row *np = big_realloc(a->paths, a->npaths * sizeof *np,
                                      ((size_t)need + 1) * sizeof *np, 0);
    if (!np) return -1;
    a->paths = np;
    a->paths_cap = need;
  }
  if (!chained) return 0;
  uint32_t *nn = realloc(a->path_next, ((size_t)a->paths_cap + 1) * sizeof *nn);
  if (!nn) return -1;
  a->path_next = nn;
  if (a->path_mask && need <= a->path_mask / 2) return 0;
  uint32_t nmask = 1023;
  while (nmask / 2 < need) nmask = nmask * 2 + 1;
  uint32_t *nh = calloc((size_t)nmask + 1, sizeof *nh);
  if (!nh) return -1;
  for (uint32_t k = 0; k < a->npaths; k++) {
    uint32_t h = edge_hash(a->paths[k].parent, a->paths[k].fid) & nmask;
    nn[k] = nh[h];
    nh[h] = k + 1;
  }
  free(a->path_heads);
  a->path_heads = nh;
  a->path_mask = nmask;
  return 0;
}

/* The merged path (parent, fid), created if needed (room was reserved
 * with chains): its index+1. */
static uint32_t acc_path(acc *a, uint32_t parent, pyprof_fid fid) {
  uint32_t h = edge_hash(parent, fid) & a->path_mask;
  for (uint32_t k = a->path_heads[h]; k; k = a->path_next[k - 1])
    if (a->paths[k - 1].parent == parent && a->paths[k - 1].fid == fid)
      return k;
  pyprof_path_row *r = &a->paths[a->npaths];
  memset(r, 0, sizeof *r);
  r->parent = parent;
  r->fid = fid;
  a->path_next[a->npaths] = a->path_heads[h];
  a->path_heads[h] = ++a->npaths;
  return a->npaths;
}

/* Merges the tree of `t` (parked, idle, or the caller) into the paths.
 * Nodes come after their parents, so one pass maps every node. The first
 * tree needs no lookups: its (parent, function) pairs are distinct, so
 * each node becomes the path of the same number. Sets *map to the node
 * -> path mapping, or NULL for that identity. */
__attribute__((no_sanitize("thread")))
static int acc_add_paths(acc *a, const pyprof_thread *t, const uint32_t **map) {
  uint32_t nn = t->nnodes;
  *map = NULL;
  a->truncated += t->truncated;
  if (nn == 0) return 0;
  int first = a->npaths == 0;
  if (acc_reserve_paths(a, nn, !first) < 0) return -1;
  if (first) {
    for (uint32_t k = 0; k < nn; k++) {
      const pyprof_node *n = &t->nodes[k];
      pyprof_path_row *p = &a->paths[k];
      p->parent = n->parent;
      p->fid = n->entry == PYPROF_NODE_TRUNC ? PYPROF_FID_NONE
                                             : t->entries[n->entry].fid;
      p->calls = n->calls;
      p->tt = n->it;
      p->ct = n->tt;
    }
    a->npaths = nn;
    return 0;
  }
  if (nn > a->map_cap) {
    uint32_t *m = realloc(a->map, (size_t)nn * sizeof *m);
    if (!m) return -1;
    a->map = m;
    a->map_cap = nn;
  }
  for (uint32_t k = 0; k < nn; k++) {
    const pyprof_node *n = &t->nodes[k];
    uint32_t parent = n->parent ? a->map[n->parent - 1] : 0;
    pyprof_fid fid = n->entry == PYPROF_NODE_TRUNC ? PYPROF_FID_NONE
                                                    : t->entries[n->entry].fid;
    uint32_t m = acc_path(a, parent, fid);
    a->map[k] = m;
    a->paths[m - 1].calls += n->calls;
    a->paths[m - 1].tt += n->it;
    a->paths[m - 1].ct += n->tt;
  }
  *map = a->map;
  return 0;
}

/* A set of nonzero keys (open addressing), for marking the outermost
 * live activation of each entry, edge and node. */
static int set_add(uint64_t *set, size_t mask, uint64_t key) {
  size_t i = (size_t)(key * 0x9E3779B97F4A7C15ull >> 32) & mask;
  for (; set[i]; i = (i + 1) & mask)
    if (set[i] == key) return 0;
  set[i] = key;
  return 1;
}

#define LIVE_ENTRY 1u /* outermost activation of its entry */
#define LIVE_EDGE 2u  /* ... of its edge */
#define LIVE_NODE 4u  /* ... of its path node */

/* Adds the activations on the stack of `t` as if each returned at `now`,
 * innermost first, with complete()'s arithmetic: an activation adds its
 * total time to an entry, edge or node only if it is the lowest one of
 * that entry, edge or node on the stack (the one whose return would
 * bring the depth to 0); the others count as recursive. `map` is the
 * node -> path mapping of acc_add_paths(). */
__attribute__((no_sanitize("thread")))
static int acc_add_live(acc *a, const pyprof_thread *t, const uint32_t *map,
                        uint64_t now) {
  uint32_t depth = t->depth;
  if (depth == 0) return 0;
  size_t n = 64;
  while (n < 8 * (size_t)depth) n *= 2; /* 3 keys per frame, load <= 3/8 */
  uint64_t *set = calloc(n, sizeof *set);
  unsigned char *outer = malloc(depth);
  if (!set || !outer || acc_reserve_edges(a, depth) < 0) {
    free(set);
    free(outer);
    return -1;
  }
  for (uint32_t d = 0; d < depth; d++) {
    const pyprof_frame *f = &t->stack[d];
    unsigned char o = 0;
    if (set_add(set, n - 1, (1ull << 32) | f->entry)) o |= LIVE_ENTRY;
    if (f->edge && set_add(set, n - 1, (2ull << 32) | f->edge)) o |= LIVE_EDGE;
    if (f->node && set_add(set, n - 1, (3ull << 32) | f->node)) o |= LIVE_NODE;
    outer[d] = o;
  }
  int rc = 0;
  uint64_t child_tt = 0; /* what complete() adds to the parent's subt */
  for (uint32_t d = depth; d-- > 0;) {
    const pyprof_frame *f = &t->stack[d];
    uint64_t tt = now > f->t0 ? now - f->t0 : 0;
    uint64_t subt = f->subt + child_tt;
    uint64_t it = tt > subt ? tt - subt : 0;
    child_tt = tt;
    pyprof_fid fid = t->entries[f->entry].fid;
    if (acc_fit(a, fid) < 0) {
      rc = -1;
      break;
    }
    pyprof_row *r = &a->rows[fid];
    r->nc++;
    r->tt += it;
    if (outer[d] & LIVE_ENTRY) {
      r->cc++;
      r->ct += tt;
    }
    if (f->edge) {
      const pyprof_edge *g = &t->edges[f->edge - 1];
      int o = (outer[d] & LIVE_EDGE) != 0;
      acc_add_edge(a, t->entries[g->caller].fid, fid, 1, (uint64_t)o, it,
                   o ? tt : 0);
    }
    if (f->node) {
      pyprof_path_row *p = &a->paths[(map ? map[f->node - 1] : f->node) - 1];
      p->calls++;
      p->tt += it;
      if (outer[d] & LIVE_NODE) p->ct += tt;
    }
  }
  free(set);
  free(outer);
  return rc;
}

/* Merges the tables of `t` (parked, idle, or the caller) into `a`, live
 * activations counted at raw time `raw_now`. Reads `t` only. */
__attribute__((no_sanitize("thread")))
static int acc_add_thread(acc *a, const pyprof_thread *t, uint64_t raw_now,
                          uint64_t *dropped, int *has_entries) {
  pyprof_vclock clock = t->clock;
  uint64_t now = pyprof_vclock_peek(&clock, raw_now);
  uint32_t ne = t->nentries, ng = t->nedges;
  const pyprof_entry *entries = t->entries;
  *dropped = t->dropped;
  *has_entries = ne != 0;
  for (uint32_t i = 0; i < ne; i++) {
    const pyprof_entry *e = &entries[i];
    if (e->calls == 0) continue;
    if (acc_fit(a, e->fid) < 0) return -1;
    pyprof_row *r = &a->rows[e->fid];
    r->nc += e->calls;
    r->cc += e->calls - e->rcalls;
    r->tt += e->it;
    r->ct += e->tt;
  }
  if (acc_reserve_edges(a, ng) < 0) return -1;
  for (uint32_t k = 0; k < ng; k++) {
    const pyprof_edge *g = &t->edges[k];
    if (g->calls == 0) continue;
    acc_add_edge(a, entries[g->caller].fid, entries[g->callee].fid, g->calls,
                 g->calls - g->rcalls, g->it, g->tt);
  }
  const uint32_t *map;
  if (acc_add_paths(a, t, &map) < 0) return -1;
  return acc_add_live(a, t, map, now);
}

static int edge_cmp(const void *x, const void *y) {
  const pyprof_edge_row *a = x, *b = y;
  if (a->callee != b->callee) return a->callee < b->callee ? -1 : 1;
  if (a->caller != b->caller) return a->caller < b->caller ? -1 : 1;
  return 0;
}

/* Sorts edges and sums duplicates (the same pair seen by several threads). */
static void merge_edges(acc *a) {
  if (a->nedges == 0) return;
  qsort(a->edges, a->nedges, sizeof *a->edges, edge_cmp);
  size_t w = 0;
  for (size_t r = 1; r < a->nedges; r++) {
    pyprof_edge_row *d = &a->edges[w], *s = &a->edges[r];
    if (s->caller == d->caller && s->callee == d->callee) {
      d->nc += s->nc;
      d->cc += s->cc;
      d->tt += s->tt;
      d->ct += s->ct;
    } else {
      a->edges[++w] = *s;
    }
  }
  a->nedges = w + 1;
}

int pyprof_snapshot_take(pyprof_snapshot *s, pyprof_thread *self,
                         uint64_t raw_now) {
  memset(s, 0, sizeof *s);
  acc a = {0};
  a.nfuncs = pyprof_func_count();
  a.rows = big_realloc(NULL, 0, ((size_t)a.nfuncs + 1) * sizeof *a.rows, 1);
  if (!a.rows) return -1;
  int rc = 0;
  pyprof_lock(&threads_lock);
  /* Threads that ended are folded first (not in a crash dump: that frees
   * and allocates). Retired threads need no parking but get it anyway. */
  if (!pyprof_snapshot_patience_ns) fold_retired();
  for (pyprof_thread *t = threads_head; t; t = t->next)
    if (t != self) __atomic_store_n(&t->park, 1, __ATOMIC_SEQ_CST);
  if (membarrier_ok)
    syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
  for (pyprof_thread *t = threads_head; t; t = t->next) {
    /* A thread stuck mid-event past the patience (crash dumps only) is
     * left out; after a failure the rest are only released. Folded
     * threads have nothing left (their statistics are in `finished`). */
    if (rc == 0 && !t->folded && (t == self || wait_even(t))) {
      uint64_t dropped;
      int has_entries;
      if (acc_add_thread(&a, t, raw_now, &dropped, &has_entries) < 0) rc = -1;
      s->dropped += dropped;
      s->nthreads += has_entries;
    }
    if (t != self) __atomic_store_n(&t->park, 0, __ATOMIC_RELEASE);
  }
  if (rc == 0) { /* the folded threads, as if each were still read */
    uint64_t dropped;
    int has_entries;
    if (acc_add_thread(&a, &finished, raw_now, &dropped, &has_entries) < 0)
      rc = -1;
    s->dropped += dropped;
    s->nthreads += finished_nthreads;
  }
  pyprof_unlock(&threads_lock);
  acc_free_scratch(&a);
  if (rc < 0) {
    big_free(a.rows);
    big_free(a.edges);
    big_free(a.paths);
    memset(s, 0, sizeof *s);
    return -1;
  }
  merge_edges(&a);
  /* Compact rows to the functions that were called. */
  size_t w = 0;
  for (uint32_t f = 0; f < a.nfuncs; f++) {
    if (a.rows[f].nc == 0) continue;
    a.rows[w] = a.rows[f];
    a.rows[w].fid = f;
    w++;
  }
  s->rows = a.rows;
  s->nrows = w;
  s->edges = a.edges;
  s->nedges = a.nedges;
  s->paths = a.paths;
  s->npaths = a.npaths;
  s->truncated = a.truncated;
  return 0;
}

void pyprof_snapshot_free(pyprof_snapshot *s) {
  big_free(s->rows);
  big_free(s->edges);
  big_free(s->paths);
  memset(s, 0, sizeof *s);
}

/* Zeroes the statistics and empties the stack of `t` (pyprof_reset_all). */
static void reset_thread(pyprof_thread *t) {
  for (uint32_t i = 0; i < t->nentries; i++) {
    pyprof_entry *e = &t->entries[i];
    e->calls = e->rcalls = e->tt = e->it = 0;
    e->depth = 0;
  }
  for (uint32_t k = 0; k < t->nedges; k++) {
    pyprof_edge *g = &t->edges[k];
    g->calls = g->rcalls = g->tt = g->it = 0;
    g->depth = 0;
  }
  for (uint32_t k = 0; k < t->nnodes; k++) {
    pyprof_node *n = &t->nodes[k];
    n->calls = n->tt = n->it = 0;
    n->active = 0;
  }
  t->truncated = 0;
  t->depth = 0;
  t->overflow = 0;
}

void pyprof_reset_all(void) {
  pyprof_lock(&threads_lock);
  for (pyprof_thread *t = threads_head; t; t = t->next) reset_thread(t);
  reset_thread(&finished);
  pyprof_unlock(&threads_lock);
}

void pyprof_flush_all(uint64_t raw_now) {
  pyprof_lock(&threads_lock);
  for (pyprof_thread *t = threads_head; t; t = t->next) {
    uint64_t now = pyprof_vclock_peek(&t->clock, raw_now);
    pyprof_write_begin(t);
    while (t->depth) {
      t->depth--;
      complete(t->entries, t->edges, t->nodes, &t->stack[t->depth],
               t->depth ? &t->stack[t->depth - 1] : NULL, now);
    }
    t->overflow = 0;
    pyprof_write_end(t);
  }
  pyprof_unlock(&threads_lock);
}

/* Zeroes the counters of `t`, keeping stack-related depths. */
static void zero_counts(pyprof_thread *t) {
  for (uint32_t i = 0; i < t->nentries; i++) {
    pyprof_entry *e = &t->entries[i];
    e->calls = e->rcalls = e->tt = e->it = 0;
  }
  for (uint32_t k = 0; k < t->nedges; k++) {
    pyprof_edge *g = &t->edges[k];
    g->calls = g->rcalls = g->tt = g->it = 0;
  }
  for (uint32_t k = 0; k < t->nnodes; k++) {
    pyprof_node *n = &t->nodes[k];
    n->calls = n->tt = n->it = 0;
  }
  t->dropped = 0;
  t->truncated = 0;
}

/* Forgets the folded threads' totals, keeping their memory (stores
 * only: pyprof_fork_child). */
static void finished_clear(void) {
  pyprof_thread *f = &finished;
  if (f->fid_entry) memset(f->fid_entry, 0, f->fid_cap * sizeof *f->fid_entry);
  if (f->edge_heads)
    memset(f->edge_heads, 0, ((size_t)f->edge_mask + 1) * sizeof *f->edge_heads);
  if (f->node_heads)
    memset(f->node_heads, 0, ((size_t)f->node_mask + 1) * sizeof *f->node_heads);
  f->nentries = f->nedges = f->nnodes = 0;
  f->dropped = f->truncated = 0;
  finished_nthreads = 0;
}

void pyprof_fork_child(pyprof_thread *self) {
  /* Other threads do not exist here: their structs are emptied (counts
   * to 0; the tables stay allocated, inconsistent, until a fold frees
   * them) and retired, so dumps read nothing from them and the next fold
   * frees their tables. Folded structs stay free. */
  int pending = 0;
  for (pyprof_thread *t = threads_head; t; t = t->next) {
    if (t == self || t->folded) continue;
    t->nentries = t->nedges = t->nnodes = 0;
    t->depth = 0;
    t->overflow = 0;
    t->dropped = t->truncated = 0;
    t->park = 0;
    if (t->seq & 1) t->seq++; /* it was mid-event at the fork: never ends */
    t->retired = 1;
    pending++;
  }
  retired_pending = pending;
  finished_clear();
  if (self) {
    self->park = 0;
    zero_counts(self);
    if (pyprof_clk.cpu_hybrid) /* a new task: its CPU clock restarts */
      self->clock.cpu_in = self->clock.cpu_out = pyprof_thread_cpu_ns();
    for (uint32_t d = 0; d < self->depth; d++) {
      self->stack[d].t0 = self->clock.vt;
      self->stack[d].subt = 0;
    }
  }
}

void pyprof_core_lock(void) {
  pyprof_lock(&reg_lock);
  pyprof_lock(&threads_lock);
}

void pyprof_core_unlock(void) {
  pyprof_unlock(&threads_lock);
  pyprof_unlock(&reg_lock);
}
