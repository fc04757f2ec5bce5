/*
 * test-prof.c -- the engine's accounting, as cProfile's _lsprof.c does it.
 *
 * Timestamps are given directly (virtual ticks), so every figure below is
 * exact.
 */
#include <pthread.h>
#include <sched.h>

#include "dump.h"
#include "prof.h"
#include "test.h"

/* Keys stand for interpreter objects: any distinct non-NULL pointers. */
static char K[16];
#define KEY(i) ((const void *)&K[i])

/* Registers `name` in a fixed file and returns this thread's entry. */
static pyprof_entry *ent(pyprof_thread *t, int key, const char *name) {
  pyprof_entry *e = pyprof_lookup(t, KEY(key));
  if (e) return e;
  return pyprof_insert(t, KEY(key), pyprof_func_register("t.py", key, name));
}

static const pyprof_row *row(const pyprof_snapshot *s, const char *name) {
  for (size_t i = 0; i < s->nrows; i++)
    if (strcmp(pyprof_func_get(s->rows[i].fid)->name, name) == 0)
      return &s->rows[i];
  return NULL;
}

static const pyprof_edge_row *edge(const pyprof_snapshot *s, const char *a,
                                   const char *b) {
  for (size_t i = 0; i < s->nedges; i++)
    if (strcmp(pyprof_func_get(s->edges[i].caller)->name, a) == 0 &&
        strcmp(pyprof_func_get(s->edges[i].callee)->name, b) == 0)
      return &s->edges[i];
  return NULL;
}

/* Snapshot of this thread alone at virtual time `now` (the clock is set so
 * that the raw time given maps to `now`). */
static int snap(pyprof_snapshot *s, pyprof_thread *t, uint64_t now) {
  t->clock.vt = now;
  t->clock.raw_out = 1000;
  return pyprof_snapshot_take(s, t, 1000);
}

TEST_IMPL(nested_calls) {
  pyprof_thread *t = pyprof_thread_new(1);
  ASSERT(t);
  pyprof_enter(t, ent(t, 1, "nA"), 0);
  pyprof_enter(t, ent(t, 2, "nB"), 10);
  pyprof_leave(t, 30);
  pyprof_enter(t, ent(t, 2, "nB"), 40);
  pyprof_leave(t, 45);
  pyprof_leave(t, 100);
  pyprof_snapshot s;
  ASSERT_EQ_I(snap(&s, t, 100), 0);
  const pyprof_row *a = row(&s, "nA"), *b = row(&s, "nB");
  ASSERT(a && b);
  ASSERT_EQ_U(a->nc, 1);
  ASSERT_EQ_U(a->cc, 1);
  ASSERT_EQ_U(a->tt, 75); /* 100 - 20 - 5 */
  ASSERT_EQ_U(a->ct, 100);
  ASSERT_EQ_U(b->nc, 2);
  ASSERT_EQ_U(b->tt, 25);
  ASSERT_EQ_U(b->ct, 25);
  const pyprof_edge_row *ab = edge(&s, "nA", "nB");
  ASSERT(ab);
  ASSERT_EQ_U(ab->nc, 2);
  ASSERT_EQ_U(ab->cc, 2);
  ASSERT_EQ_U(ab->ct, 25);
  ASSERT(edge(&s, "nB", "nA") == NULL);
  pyprof_snapshot_free(&s);
  pyprof_thread_retire(t);
  pyprof_reset_all();
  return TEST_OK;
}

/* r -> r -> r: three calls, one primitive; cumulative time counted once. */
TEST_IMPL(direct_recursion) {
  pyprof_thread *t = pyprof_thread_new(2);
  pyprof_entry *r = ent(t, 3, "rec");
  pyprof_enter(t, r, 0);
  pyprof_enter(t, r, 10);
  pyprof_enter(t, r, 20);
  pyprof_leave(t, 30);
  pyprof_leave(t, 50);
  pyprof_leave(t, 100);
  pyprof_snapshot s;
  ASSERT_EQ_I(snap(&s, t, 100), 0);
  const pyprof_row *x = row(&s, "rec");
  ASSERT(x);
  ASSERT_EQ_U(x->nc, 3);
  ASSERT_EQ_U(x->cc, 1);
  ASSERT_EQ_U(x->ct, 100);
  ASSERT_EQ_U(x->tt, 100); /* all own time, split over activations */
  const pyprof_edge_row *rr = edge(&s, "rec", "rec");
  ASSERT(rr);
  ASSERT_EQ_U(rr->nc, 2);
  ASSERT_EQ_U(rr->cc, 1); /* the edge recursed once too */
  ASSERT_EQ_U(rr->ct, 40); /* outermost rec->rec activation: 10..50 */
  pyprof_snapshot_free(&s);
  pyprof_thread_retire(t);
  pyprof_reset_all();
  return TEST_OK;
}

/* even(2) -> odd(1) -> even(0): each function recursive through the other. */
TEST_IMPL(mutual_recursion) {
  pyprof_thread *t = pyprof_thread_new(3);
  pyprof_entry *ev = ent(t, 4, "even"), *od = ent(t, 5, "odd");
  pyprof_enter(t, ev, 0);
  pyprof_enter(t, od, 10);
  pyprof_enter(t, ev, 20);
  pyprof_leave(t, 25);
  pyprof_leave(t, 40);
  pyprof_leave(t, 60);
  pyprof_snapshot s;
  ASSERT_EQ_I(snap(&s, t, 60), 0);
  const pyprof_row *e = row(&s, "even"), *o = row(&s, "odd");
  ASSERT_EQ_U(e->nc, 2);
  ASSERT_EQ_U(e->cc, 1);
  ASSERT_EQ_U(e->ct, 60);
  ASSERT_EQ_U(e->tt, 35); /* 0..10 + 40..60 + 20..25 */
  ASSERT_EQ_U(o->nc, 1);
  ASSERT_EQ_U(o->cc, 1);
  ASSERT_EQ_U(o->ct, 30);
  ASSERT_EQ_U(o->tt, 25);
  ASSERT_EQ_U(edge(&s, "even", "odd")->nc, 1);
  ASSERT_EQ_U(edge(&s, "odd", "even")->nc, 1);
  pyprof_snapshot_free(&s);
  pyprof_thread_retire(t);
  pyprof_reset_all();
  return TEST_OK;
}

/* A return with nothing on the stack (a frame entered before profiling
 * began) changes nothing. */
TEST_IMPL(leave_on_empty_stack) {
  pyprof_thread *t = pyprof_thread_new(4);
  pyprof_leave(t, 5);
  pyprof_enter(t, ent(t, 6, "late"), 10);
  pyprof_leave(t, 20);
  pyprof_leave(t, 30); /* returns from the frame that started us */
  pyprof_snapshot s;
  ASSERT_EQ_I(snap(&s, t, 30), 0);
  ASSERT_EQ_U(s.nrows, 1);
  ASSERT_EQ_U(row(&s, "late")->nc, 1);
  ASSERT_EQ_U(row(&s, "late")->ct, 10);
  pyprof_snapshot_free(&s);
  pyprof_thread_retire(t);
  pyprof_reset_all();
  return TEST_OK;
}

/* Activations on the stack count as returning at the snapshot, and the
 * snapshot leaves no trace in later ones. */
TEST_IMPL(snapshot_of_active_frames) {
  pyprof_thread *t = pyprof_thread_new(5);
  pyprof_entry *m = ent(t, 7, "outer"), *w = ent(t, 8, "inner");
  pyprof_enter(t, m, 0);
  pyprof_enter(t, w, 10);
  pyprof_snapshot s;
  ASSERT_EQ_I(snap(&s, t, 50), 0);
  ASSERT_EQ_U(row(&s, "outer")->nc, 1);
  ASSERT_EQ_U(row(&s, "outer")->ct, 50);
  ASSERT_EQ_U(row(&s, "outer")->tt, 10);
  ASSERT_EQ_U(row(&s, "inner")->ct, 40);
  pyprof_snapshot_free(&s);
  ASSERT_EQ_U(pyprof_stack_depth(t), 2);
  pyprof_leave(t, 70);
  pyprof_leave(t, 100);
  ASSERT_EQ_I(snap(&s, t, 100), 0);
  ASSERT_EQ_U(row(&s, "outer")->nc, 1);
  ASSERT_EQ_U(row(&s, "outer")->ct, 100);
  ASSERT_EQ_U(row(&s, "outer")->tt, 40);
  ASSERT_EQ_U(row(&s, "inner")->nc, 1);
  ASSERT_EQ_U(row(&s, "inner")->ct, 60);
  pyprof_snapshot_free(&s);
  pyprof_thread_retire(t);
  pyprof_reset_all();
  return TEST_OK;
}

/* Two interpreter objects with one label are one function: recursion
 * through both is still recursion. */
TEST_IMPL(keys_sharing_a_label) {
  pyprof_thread *t = pyprof_thread_new(6);
  pyprof_fid f = pyprof_func_register("<string>", 1, "<module>");
  ASSERT_EQ_U(pyprof_func_register("<string>", 1, "<module>"), f);
  ASSERT(pyprof_func_register("<string>", 2, "<module>") != f);
  pyprof_entry *a = pyprof_insert(t, KEY(9), f);
  pyprof_entry *b = pyprof_insert(t, KEY(10), f);
  ASSERT(a == b);
  ASSERT(pyprof_lookup(t, KEY(10)) == a);
  pyprof_enter(t, a, 0);
  pyprof_enter(t, pyprof_lookup(t, KEY(10)), 5);
  pyprof_leave(t, 8);
  pyprof_leave(t, 10);
  pyprof_snapshot s;
  ASSERT_EQ_I(snap(&s, t, 10), 0);
  const pyprof_row *r = NULL;
  for (size_t i = 0; i < s.nrows; i++)
    if (s.rows[i].fid == f) r = &s.rows[i];
  ASSERT(r);
  ASSERT_EQ_U(r->nc, 2);
  ASSERT_EQ_U(r->cc, 1);
  ASSERT_EQ_U(r->ct, 10);
  pyprof_snapshot_free(&s);
  pyprof_thread_retire(t);
  pyprof_reset_all();
  return TEST_OK;
}

/* Many keys force the tables to grow; lookups still find every one. */
TEST_IMPL(tables_grow) {
  static char keys[20000];
  pyprof_thread *t = pyprof_thread_new(7);
  pyprof_entry *root = ent(t, 11, "root");
  pyprof_enter(t, root, 0);
  for (int i = 0; i < 20000; i++) {
    char name[32];
    snprintf(name, sizeof name, "g%d", i);
    pyprof_entry *e =
        pyprof_insert(t, &keys[i], pyprof_func_register("grow.py", i, name));
    ASSERT(e);
    pyprof_enter(t, e, (uint64_t)i * 2);
    pyprof_leave(t, (uint64_t)i * 2 + 1);
  }
  pyprof_leave(t, 50000);
  for (int i = 0; i < 20000; i++) {
    pyprof_entry *e = pyprof_lookup(t, &keys[i]);
    ASSERT(e);
    ASSERT_EQ_U(e->calls, 1);
  }
  pyprof_snapshot s;
  ASSERT_EQ_I(snap(&s, t, 50000), 0);
  ASSERT_EQ_U(s.nrows, 20001);
  ASSERT_EQ_U(s.nedges, 20000);
  ASSERT_EQ_U(row(&s, "root")->tt, 50000 - 20000);
  pyprof_snapshot_free(&s);
  pyprof_thread_retire(t);
  pyprof_reset_all();
  return TEST_OK;
}

/* The calling-context tree keeps a->b->c apart from a->d->c; past the
 * depth cap, calls stay on the node at the cap (total time counted once). */
static const pyprof_path_row *path_row(const pyprof_snapshot *s,
                                       const char *const *names, int n) {
  uint32_t parent = 0;
  const pyprof_path_row *r = NULL;
  for (int k = 0; k < n; k++) {
    r = NULL;
    for (size_t i = 0; i < s->npaths && !r; i++)
      if (s->paths[i].parent == parent && s->paths[i].fid != PYPROF_FID_NONE &&
          strcmp(pyprof_func_get(s->paths[i].fid)->name, names[k]) == 0) {
        r = &s->paths[i];
        parent = (uint32_t)i + 1;
      }
    if (!r) return NULL;
  }
  return r;
}

TEST_IMPL(call_paths) {
  pyprof_thread *t = pyprof_thread_new(8);
  pyprof_entry *a = ent(t, 1, "pa"), *b = ent(t, 2, "pb"), *c = ent(t, 3, "pc"),
               *d = ent(t, 4, "pd");
  uint64_t now = 0;
  pyprof_enter(t, a, now);
  pyprof_enter(t, b, now += 1);
  pyprof_enter(t, c, now += 1);
  pyprof_leave(t, now += 2); /* pc under pb: 2 */
  pyprof_leave(t, now += 1);
  pyprof_enter(t, d, now += 1);
  for (int i = 0; i < 3; i++) {
    pyprof_enter(t, c, now += 1);
    pyprof_leave(t, now += 5); /* pc under pd: 3 x 5 */
  }
  pyprof_leave(t, now += 1);
  pyprof_leave(t, now += 1);
  pyprof_snapshot s;
  ASSERT_EQ_I(snap(&s, t, now), 0);
  const char *abc[] = {"pa", "pb", "pc"}, *adc[] = {"pa", "pd", "pc"};
  const pyprof_path_row *r1 = path_row(&s, abc, 3), *r2 = path_row(&s, adc, 3);
  ASSERT(r1 && r2);
  ASSERT_EQ_U(r1->calls, 1);
  ASSERT_EQ_U(r1->tt, 2);
  ASSERT_EQ_U(r2->calls, 3);
  ASSERT_EQ_U(r2->tt, 15);
  ASSERT_EQ_U(r2->ct, 15);
  ASSERT_EQ_U(path_row(&s, abc, 1)->ct, now);
  pyprof_snapshot_free(&s);
  pyprof_thread_retire(t);
  pyprof_reset_all();

  /* Recursion deeper than the cap: one node per level up to the cap. */
  t = pyprof_thread_new(9);
  pyprof_entry *r = ent(t, 5, "deep");
  int levels = PYPROF_PATH_DEPTH + 50;
  for (int i = 0; i < levels; i++) pyprof_enter(t, r, (uint64_t)i);
  for (int i = 0; i < levels; i++) pyprof_leave(t, (uint64_t)(levels + i));
  ASSERT_EQ_I(snap(&s, t, 2 * (uint64_t)levels), 0);
  size_t deep = 0;
  uint64_t calls = 0, root_ct = 0;
  pyprof_fid fdeep = pyprof_lookup(t, KEY(5))->fid;
  for (size_t i = 0; i < s.npaths; i++)
    if (s.paths[i].fid == fdeep) {
      deep++;
      calls += s.paths[i].calls;
      if (s.paths[i].parent == 0) root_ct = s.paths[i].ct;
    }
  ASSERT_EQ_U(deep, PYPROF_PATH_DEPTH);
  ASSERT_EQ_U(calls, (uint64_t)levels);
  ASSERT_EQ_U(root_ct, 2 * (uint64_t)levels - 1);
  pyprof_snapshot_free(&s);
  pyprof_thread_retire(t);
  pyprof_reset_all();
  return TEST_OK;
}

/* Snapshots count live activations from the stack alone, without
 * writing to the thread: the result must equal what the thread's own
 * tables say once those activations really return at that instant
 * (pyprof_flush_all). Random recursive calls on three threads, stacks left
 * deep, with call paths and the depth cap in play. */
static uint32_t lcg(uint32_t *x) { return (*x = *x * 1103515245u + 12345u) >> 16; }

/* Two snapshots have the same counts and rows and edges, in order. */
static int same_rows_edges(const pyprof_snapshot *a, const pyprof_snapshot *b) {
  ASSERT_EQ_U(a->nrows, b->nrows);
  ASSERT_EQ_U(a->nedges, b->nedges);
  ASSERT_EQ_U(a->npaths, b->npaths);
  ASSERT_EQ_U(a->truncated, b->truncated);
  ASSERT_EQ_U(a->nthreads, b->nthreads);
  for (size_t i = 0; i < a->nrows; i++) {
    ASSERT_EQ_U(a->rows[i].fid, b->rows[i].fid);
    ASSERT_EQ_U(a->rows[i].nc, b->rows[i].nc);
    ASSERT_EQ_U(a->rows[i].cc, b->rows[i].cc);
    ASSERT_EQ_U(a->rows[i].tt, b->rows[i].tt);
    ASSERT_EQ_U(a->rows[i].ct, b->rows[i].ct);
  }
  for (size_t i = 0; i < a->nedges; i++) {
    ASSERT_EQ_U(a->edges[i].caller, b->edges[i].caller);
    ASSERT_EQ_U(a->edges[i].callee, b->edges[i].callee);
    ASSERT_EQ_U(a->edges[i].nc, b->edges[i].nc);
    ASSERT_EQ_U(a->edges[i].cc, b->edges[i].cc);
    ASSERT_EQ_U(a->edges[i].tt, b->edges[i].tt);
    ASSERT_EQ_U(a->edges[i].ct, b->edges[i].ct);
  }
  return TEST_OK;
}

static int same_snapshots(const pyprof_snapshot *a, const pyprof_snapshot *b) {
  int rc = same_rows_edges(a, b);
  if (rc != TEST_OK) return rc;
  for (size_t i = 0; i < a->npaths; i++) {
    ASSERT_EQ_U(a->paths[i].parent, b->paths[i].parent);
    ASSERT_EQ_U(a->paths[i].fid, b->paths[i].fid);
    ASSERT_EQ_U(a->paths[i].calls, b->paths[i].calls);
    ASSERT_EQ_U(a->paths[i].tt, b->paths[i].tt);
    ASSERT_EQ_U(a->paths[i].ct, b->paths[i].ct);
  }
  return TEST_OK;
}

TEST_IMPL(live_frames_as_if_returned) {
  static char keys[6];
  pyprof_fid fids[6];
  for (int k = 0; k < 6; k++) {
    char name[16];
    snprintf(name, sizeof name, "live%d", k);
    fids[k] = pyprof_func_register("live.py", k, name);
  }
  uint32_t x = 12345;
  pyprof_thread *ts[3];
  uint64_t now[3] = {0, 0, 0};
  for (int n = 0; n < 3; n++) {
    pyprof_thread *t = ts[n] = pyprof_thread_new(200 + (uint64_t)n);
    int budget = 4000 + 1000 * n;
    for (int i = 0; i < budget; i++) {
      uint32_t r = lcg(&x);
      uint32_t d = pyprof_stack_depth(t);
      /* drift up to depth ~ PYPROF_PATH_DEPTH + 40 on the last thread */
      int call = d < 3 || (r % 100) < (d < (n == 2 ? PYPROF_PATH_DEPTH + 40u : 30u) ? 60u : 30u);
      now[n] += 1 + lcg(&x) % 7;
      if (call) {
        int k = (int)(lcg(&x) % (uint32_t)(n == 1 ? 2 : 6)); /* thread 1: deep recursion */
        pyprof_entry *e = pyprof_lookup(t, &keys[k]);
        if (!e) e = pyprof_insert(t, &keys[k], fids[k]);
        ASSERT(e);
        pyprof_enter(t, e, now[n]);
      } else {
        pyprof_leave(t, now[n]);
      }
    }
    ASSERT(pyprof_stack_depth(t) > 3);
    t->clock.vt = now[n] + 11; /* the snapshot instant in each thread */
    t->clock.raw_out = 1000;
  }
  pyprof_snapshot live, flushed;
  ASSERT_EQ_I(pyprof_snapshot_take(&live, NULL, 1000), 0);
  ASSERT(live.truncated == 0);
  pyprof_flush_all(1000);
  for (int n = 0; n < 3; n++) ASSERT_EQ_U(pyprof_stack_depth(ts[n]), 0);
  ASSERT_EQ_I(pyprof_snapshot_take(&flushed, NULL, 1000), 0);
  int rc = same_snapshots(&live, &flushed);
  pyprof_snapshot_free(&live);
  pyprof_snapshot_free(&flushed);
  for (int n = 0; n < 3; n++) pyprof_thread_retire(ts[n]);
  pyprof_reset_all();
  return rc;
}

/* Functions of one file share one copy of its name. */
TEST_IMPL(file_names_interned) {
  pyprof_fid a = pyprof_func_register("shared.py", 1, "one");
  pyprof_fid b = pyprof_func_register("shared.py", 2, "two");
  char other[] = "shared.py";
  pyprof_fid c = pyprof_func_register(other, 3, "three");
  ASSERT(a != b && b != c);
  ASSERT(pyprof_func_get(a)->file == pyprof_func_get(b)->file);
  ASSERT(pyprof_func_get(c)->file == pyprof_func_get(a)->file);
  ASSERT_STR_EQ(pyprof_func_get(c)->file, "shared.py");
  ASSERT(pyprof_func_get(pyprof_func_register("other.py", 1, "one"))->file !=
         pyprof_func_get(a)->file);
  return TEST_OK;
}

/* ---- threads ------------------------------------------------------------ */

#define WORKERS 4
#define ROUNDS 20000
#define CHAIN 32

static volatile int go;
static const char *chain_name(int k) {
  static char names[CHAIN][16];
  if (!names[k][0]) snprintf(names[k], sizeof names[k], "chain%d", k);
  return names[k];
}

/* Each worker: ROUNDS times chain0 -> chain1 -> ... -> chain31 and back. */
static void *worker(void *arg) {
  pyprof_thread *t = arg;
  while (!__atomic_load_n(&go, __ATOMIC_ACQUIRE)) sched_yield();
  uint64_t now = 0;
  for (int r = 0; r < ROUNDS; r++) {
    for (int k = 0; k < CHAIN; k++) {
      /* first round: entries are created (tables grow) while snapshots
       * run; later rounds find them */
      pyprof_entry *e = pyprof_lookup(t, chain_name(k));
      if (!e) e = pyprof_insert(t, chain_name(k),
                                pyprof_func_register("chain.py", k, chain_name(k)));
      pyprof_enter(t, e, now += 1);
    }
    for (int k = 0; k < CHAIN; k++) pyprof_leave(t, now += 1);
  }
  return NULL;
}

/* Checks what any consistent state of the workers satisfies: nothing is
 * recursive (cc == nc), a deeper function never has more calls than the
 * one above it, and they differ by at most one per worker in all. */
static int chain_consistent(const pyprof_snapshot *s) {
  uint64_t prev = UINT64_MAX, first = 0, lastn = 0;
  for (int k = 0; k < CHAIN; k++) {
    const pyprof_row *r = row(s, chain_name(k));
    uint64_t nc = r ? r->nc : 0;
    if (r) ASSERT_EQ_U(r->cc, r->nc);
    if (r) ASSERT(r->ct >= r->tt);
    ASSERT(nc <= prev);
    if (k == 0) first = nc;
    lastn = nc;
    prev = nc;
  }
  ASSERT(first - lastn <= WORKERS);
  return TEST_OK;
}

/* Snapshots taken while the workers run are consistent and their counts
 * only grow; the final one is exact. */
TEST_IMPL(concurrent_snapshots) {
  if (pyprof_snapshot_init() < 0) RETURN_SKIP("no membarrier(2) here");
  for (int k = 0; k < CHAIN; k++) chain_name(k); /* before any thread */
  pyprof_thread *ts[WORKERS];
  pthread_t th[WORKERS];
  for (int k = 0; k < WORKERS; k++) {
    ts[k] = pyprof_thread_new(100 + (uint64_t)k);
    ASSERT(pthread_create(&th[k], NULL, worker, ts[k]) == 0);
  }
  __atomic_store_n(&go, 1, __ATOMIC_RELEASE);
  uint64_t last = 0;
  for (int n = 0; n < 300; n++) {
    pyprof_snapshot s;
    ASSERT_EQ_I(pyprof_snapshot_take(&s, NULL, 0), 0);
    if (chain_consistent(&s) != TEST_OK) return TEST_FAIL;
    const pyprof_row *o = row(&s, chain_name(0));
    ASSERT(!o || o->nc >= last);
    last = o ? o->nc : 0;
    pyprof_snapshot_free(&s);
  }
  for (int k = 0; k < WORKERS; k++) pthread_join(th[k], NULL);
  pyprof_snapshot s;
  ASSERT_EQ_I(pyprof_snapshot_take(&s, NULL, 0), 0);
  for (int k = 0; k < CHAIN; k++) {
    const pyprof_row *r = row(&s, chain_name(k));
    ASSERT_EQ_U(r->nc, (uint64_t)WORKERS * ROUNDS);
    ASSERT_EQ_U(r->tt, (uint64_t)WORKERS * ROUNDS * (k == CHAIN - 1 ? 1 : 2));
  }
  ASSERT_EQ_U(edge(&s, chain_name(0), chain_name(1))->nc,
              (uint64_t)WORKERS * ROUNDS);
  pyprof_snapshot_free(&s);
  for (int k = 0; k < WORKERS; k++) pyprof_thread_retire(ts[k]);
  pyprof_reset_all();
  return TEST_OK;
}

/* ---- finished threads --------------------------------------------------- */

#define FOLD_FUNCS 8
static char fold_keys[FOLD_FUNCS];
static pyprof_fid fold_fids[FOLD_FUNCS];

static void fold_register(void) {
  for (int k = 0; k < FOLD_FUNCS; k++) {
    char name[16];
    snprintf(name, sizeof name, "fold%d", k);
    fold_fids[k] = pyprof_func_register("fold.py", k, name);
  }
}

/* `events` random calls and returns of the first `nf` fold functions on
 * `t` (recursion, depths up to `maxdepth`), from virtual time *now; with
 * `unwind`, every activation returns at the end. */
static int random_calls(pyprof_thread *t, uint32_t *x, int events,
                        uint32_t maxdepth, uint32_t nf, uint64_t *now,
                        int unwind) {
  for (int i = 0; i < events; i++) {
    uint32_t d = pyprof_stack_depth(t);
    int call = d == 0 || (d < maxdepth && lcg(x) % 100 < 55);
    *now += 1 + lcg(x) % 5;
    if (call) {
      uint32_t k = lcg(x) % nf;
      pyprof_entry *e = pyprof_lookup(t, &fold_keys[k]);
      if (!e) e = pyprof_insert(t, &fold_keys[k], fold_fids[k]);
      ASSERT(e);
      pyprof_enter(t, e, *now);
    } else {
      pyprof_leave(t, *now);
    }
  }
  while (unwind && pyprof_stack_depth(t)) pyprof_leave(t, *now += 1);
  t->clock.vt = *now + 3; /* the instant its live frames are counted at */
  t->clock.raw_out = 1000;
  return TEST_OK;
}

static uint32_t path_hash(uint32_t parent, pyprof_fid fid) {
  return (uint32_t)((((uint64_t)parent << 32) | fid) * 0x9E3779B97F4A7C15ull >> 32);
}

/* Two snapshots say the same: rows, edges, counters, and the same call
 * tree (its paths may come in another order). */
static int same_results(const pyprof_snapshot *a, const pyprof_snapshot *b) {
  int rc = same_rows_edges(a, b);
  if (rc != TEST_OK) return rc;
  ASSERT_EQ_U(a->dropped, b->dropped);
  /* b's paths by (parent, fid); a's matched in order (parents first) */
  size_t mask = 1023;
  while (mask < 2 * b->npaths) mask = mask * 2 + 1;
  uint32_t *heads = calloc(mask + 1, sizeof *heads);
  uint32_t *map = malloc((a->npaths + 1) * sizeof *map);
  ASSERT(heads && map);
  for (size_t j = 0; j < b->npaths; j++) {
    size_t h = path_hash(b->paths[j].parent, b->paths[j].fid) & mask;
    while (heads[h]) h = (h + 1) & mask;
    heads[h] = (uint32_t)j + 1;
  }
  for (size_t i = 0; i < a->npaths && rc == TEST_OK; i++) {
    const pyprof_path_row *p = &a->paths[i], *q = NULL;
    uint32_t parent = p->parent ? map[p->parent - 1] : 0;
    size_t h = path_hash(parent, p->fid) & mask;
    for (; heads[h] && !q; h = (h + 1) & mask) {
      const pyprof_path_row *c = &b->paths[heads[h] - 1];
      if (c->parent == parent && c->fid == p->fid) q = c;
    }
    if (!q || q->calls != p->calls || q->tt != p->tt || q->ct != p->ct) {
      fprintf(stderr, "path %zu (fid %u): %s\n", i, p->fid,
              q ? "counts differ" : "missing");
      rc = TEST_FAIL;
      break;
    }
    map[i] = (uint32_t)(q - b->paths) + 1;
  }
  free(heads);
  free(map);
  if (rc) return rc;
  /* and the same pstats file, byte for byte */
  pyprof_buf ea, eb;
  pyprof_buf_init(&ea);
  pyprof_buf_init(&eb);
  const pyprof_meta meta[] = {{"tool", "test"}};
  ASSERT_EQ_I(pyprof_pstats_encode(&ea, a, 1e-6, meta, 1), 0);
  ASSERT_EQ_I(pyprof_pstats_encode(&eb, b, 1e-6, meta, 1), 0);
  ASSERT_EQ_U(ea.len, eb.len);
  ASSERT(memcmp(ea.data, eb.data, ea.len) == 0);
  pyprof_buf_free(&ea);
  pyprof_buf_free(&eb);
  return TEST_OK;
}

/* A folded thread: its tables are freed and its sizes 0. */
static int is_released(const pyprof_thread *t) {
  ASSERT(t->retired && t->folded);
  ASSERT(!t->stack && !t->entries && !t->slots && !t->fid_entry);
  ASSERT(!t->edges && !t->edge_heads && !t->nodes && !t->node_heads);
  ASSERT_EQ_U(t->depth, 0);
  ASSERT_EQ_U(t->stack_cap, 0);
  ASSERT_EQ_U(t->nentries, 0);
  ASSERT_EQ_U(t->slot_mask, 0);
  ASSERT_EQ_U(t->fid_cap, 0);
  ASSERT_EQ_U(t->nedges, 0);
  ASSERT_EQ_U(t->nnodes, 0);
  return TEST_OK;
}

/* Snapshot without folding (as a crash dump takes it), and with. */
static int snap_unfolded(pyprof_snapshot *s) {
  pyprof_snapshot_patience_ns = 60000000000ull;
  int rc = pyprof_snapshot_take(s, NULL, 1000);
  pyprof_snapshot_patience_ns = 0;
  return rc;
}

#define FOLD_WAVE 24

/* Threads that ended are folded into one total and their tables freed;
 * every snapshot says what it said before the fold, call paths and
 * "[truncated]" nodes, dropped events and thread count included. A live
 * thread with frames on its stack runs beside them throughout. */
TEST_IMPL(retired_threads_fold) {
  fold_register();
  uint32_t x = 777;
  uint64_t now = 0, lnow = 0;
  pyprof_thread *live = pyprof_thread_new(300);
  ASSERT(live);
  if (random_calls(live, &x, 3000, 30, FOLD_FUNCS, &lnow, 0)) return TEST_FAIL;
  ASSERT(pyprof_stack_depth(live) > 0);

  /* Wave 1, created before any of them retires (a new thread folds). */
  pyprof_thread *w1[FOLD_WAVE];
  for (int n = 0; n < FOLD_WAVE; n++) ASSERT((w1[n] = pyprof_thread_new(400 + (uint64_t)n)));
  for (int n = 0; n < FOLD_WAVE; n++) {
    pyprof_thread *t = w1[n];
    if (n == 0) { /* > PYPROF_PATH_NODES call paths: "[truncated]" nodes */
      if (random_calls(t, &x, 1300000, 220, 8, &now, 1)) return TEST_FAIL;
      ASSERT(t->truncated > 0);
    } else if (n == 1) { /* deeper than the path depth cap */
      if (random_calls(t, &x, 4000, PYPROF_PATH_DEPTH + 30, 3, &now, 1)) return TEST_FAIL;
    } else {
      if (random_calls(t, &x, 500 + 100 * n, 12 + (uint32_t)n, 2 + (uint32_t)n % 7,
                       &now, 1))
        return TEST_FAIL;
    }
    if (n == 2) { /* an event lost to an allocation failure */
      pyprof_enter_lost(t);
      pyprof_leave(t, now);
    }
    pyprof_thread_retire(t);
  }
  pyprof_snapshot a, b;
  ASSERT_EQ_I(snap_unfolded(&a), 0);
  for (int n = 0; n < FOLD_WAVE; n++) ASSERT(!w1[n]->folded && w1[n]->entries);
  ASSERT(a.truncated > 0);
  ASSERT(a.dropped > 0);
  ASSERT_EQ_I(pyprof_snapshot_take(&b, NULL, 1000), 0);
  for (int n = 0; n < FOLD_WAVE; n++)
    if (is_released(w1[n])) return TEST_FAIL;
  ASSERT(!live->folded && live->entries);
  int rc = same_results(&a, &b);
  pyprof_snapshot_free(&a);
  pyprof_snapshot_free(&b);
  if (rc) return rc;

  /* Wave 2 reuses the structs of wave 1; one retires with frames on its
   * stack: it is not folded, and its frames count at each snapshot. */
  pyprof_thread *w2[FOLD_WAVE];
  for (int n = 0; n < FOLD_WAVE; n++) {
    ASSERT((w2[n] = pyprof_thread_new(500 + (uint64_t)n)));
    ASSERT(!w2[n]->retired && !w2[n]->folded);
    ASSERT_EQ_U(w2[n]->nentries, 0);
    ASSERT_EQ_U(w2[n]->dropped, 0);
    int reused = 0;
    for (int k = 0; k < FOLD_WAVE; k++) reused |= w2[n] == w1[k];
    ASSERT(reused);
  }
  for (int n = 0; n < FOLD_WAVE; n++) {
    if (random_calls(w2[n], &x, 300 + 50 * n, 10, 1 + (uint32_t)n % FOLD_FUNCS,
                     &now, n != 5))
      return TEST_FAIL;
    pyprof_thread_retire(w2[n]);
  }
  ASSERT(pyprof_stack_depth(w2[5]) > 0);
  ASSERT_EQ_I(snap_unfolded(&a), 0);
  ASSERT_EQ_I(pyprof_snapshot_take(&b, NULL, 1000), 0);
  for (int n = 0; n < FOLD_WAVE; n++)
    if (n != 5 && is_released(w2[n])) return TEST_FAIL;
  ASSERT(!w2[5]->folded && w2[5]->stack && w2[5]->entries);
  rc = same_results(&a, &b);
  pyprof_snapshot_free(&a);
  pyprof_snapshot_free(&b);
  if (rc) return rc;

  /* Flushed, its stack is empty: the next snapshot folds it. */
  pyprof_flush_all(1000);
  ASSERT_EQ_I(snap_unfolded(&a), 0);
  ASSERT_EQ_I(pyprof_snapshot_take(&b, NULL, 1000), 0);
  if (is_released(w2[5])) return TEST_FAIL;
  rc = same_results(&a, &b);
  pyprof_snapshot_free(&a);
  pyprof_snapshot_free(&b);
  pyprof_thread_retire(live);
  pyprof_reset_all();
  return rc;
}

/* Thread after thread starts, calls and ends: the list of thread structs
 * does not grow, and every call is still counted, every thread too. */
TEST_IMPL(short_threads_reuse_structs) {
  pyprof_snapshot s;
  ASSERT_EQ_I(pyprof_snapshot_take(&s, NULL, 0), 0);
  uint32_t threads0 = s.nthreads;
  pyprof_snapshot_free(&s);
  size_t len0 = 0, len1 = 0;
  for (pyprof_thread *t = pyprof_threads_head(); t; t = t->next) len0++;
  for (int n = 0; n < 3000; n++) {
    pyprof_thread *t = pyprof_thread_new(1000 + (uint64_t)n);
    ASSERT(t);
    pyprof_enter(t, ent(t, 12, "shortA"), 0);
    pyprof_enter(t, ent(t, 13, "shortB"), 1);
    pyprof_leave(t, 3);
    pyprof_leave(t, 4);
    pyprof_thread_retire(t);
  }
  for (pyprof_thread *t = pyprof_threads_head(); t; t = t->next) len1++;
  ASSERT(len1 <= len0 + 1);
  ASSERT_EQ_I(pyprof_snapshot_take(&s, NULL, 0), 0);
  ASSERT_EQ_U(s.nthreads, threads0 + 3000);
  ASSERT_EQ_U(row(&s, "shortA")->nc, 3000);
  ASSERT_EQ_U(row(&s, "shortA")->ct, 3000 * 4);
  ASSERT_EQ_U(row(&s, "shortA")->tt, 3000 * 2);
  ASSERT_EQ_U(edge(&s, "shortA", "shortB")->nc, 3000);
  const char *ab[] = {"shortA", "shortB"};
  ASSERT_EQ_U(path_row(&s, ab, 2)->calls, 3000);
  ASSERT_EQ_U(path_row(&s, ab, 2)->ct, 3000 * 2);
  pyprof_snapshot_free(&s);
  /* A reset forgets the folded calls too, not the threads. */
  pyprof_reset_all();
  ASSERT_EQ_I(pyprof_snapshot_take(&s, NULL, 0), 0);
  ASSERT(row(&s, "shortA") == NULL);
  ASSERT_EQ_U(s.nthreads, threads0 + 3000);
  pyprof_snapshot_free(&s);
  return TEST_OK;
}

/* Short-lived OS threads (each folds the ones that ended before it)
 * while snapshots run: every snapshot is consistent, counts only grow,
 * and the last one is exact. */
#define SHORT_ROUNDS 40
#define SHORT_PER_SPAWNER 150
#define SPAWNERS 3
#define SHORT_CHAIN 6

static const char *short_name(int k) {
  static char names[SHORT_CHAIN][16];
  if (!names[k][0]) snprintf(names[k], sizeof names[k], "short%d", k);
  return names[k];
}

static void *short_thread(void *arg) {
  (void)arg;
  pyprof_thread *t = pyprof_thread_new((uint64_t)pthread_self());
  if (!t) return NULL;
  uint64_t now = 0;
  for (int r = 0; r < SHORT_ROUNDS; r++) {
    for (int k = 0; k < SHORT_CHAIN; k++) {
      pyprof_entry *e = pyprof_lookup(t, short_name(k));
      if (!e) e = pyprof_insert(t, short_name(k),
                                pyprof_func_register("short.py", k, short_name(k)));
      pyprof_enter(t, e, now += 1);
    }
    for (int k = 0; k < SHORT_CHAIN; k++) pyprof_leave(t, now += 1);
  }
  pyprof_thread_retire(t);
  return NULL;
}

static void *spawner(void *arg) {
  (void)arg;
  for (int n = 0; n < SHORT_PER_SPAWNER; n++) {
    pthread_t th;
    if (pthread_create(&th, NULL, short_thread, NULL) != 0) continue;
    pthread_join(th, NULL);
  }
  return NULL;
}

TEST_IMPL(short_threads_with_snapshots) {
  if (pyprof_snapshot_init() < 0) RETURN_SKIP("no membarrier(2) here");
  for (int k = 0; k < SHORT_CHAIN; k++)
    pyprof_func_register("short.py", k, short_name(k));
  pthread_t sp[SPAWNERS];
  static volatile int done;
  for (int k = 0; k < SPAWNERS; k++)
    ASSERT(pthread_create(&sp[k], NULL, spawner, NULL) == 0);
  uint64_t last = 0;
  int snaps = 0;
  while (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) {
    pyprof_snapshot s;
    ASSERT_EQ_I(pyprof_snapshot_take(&s, NULL, 0), 0);
    uint64_t prev = UINT64_MAX, first = 0, lastn = 0;
    for (int k = 0; k < SHORT_CHAIN; k++) {
      const pyprof_row *r = row(&s, short_name(k));
      uint64_t nc = r ? r->nc : 0;
      if (r) ASSERT_EQ_U(r->cc, r->nc);
      ASSERT(nc <= prev);
      if (k == 0) first = nc;
      lastn = nc;
      prev = nc;
    }
    ASSERT(first - lastn <= SPAWNERS);
    ASSERT(first >= last);
    last = first;
    pyprof_snapshot_free(&s);
    snaps++;
    if (first == (uint64_t)SPAWNERS * SHORT_PER_SPAWNER * SHORT_ROUNDS)
      __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
    sched_yield();
  }
  for (int k = 0; k < SPAWNERS; k++) pthread_join(sp[k], NULL);
  pyprof_snapshot s;
  ASSERT_EQ_I(pyprof_snapshot_take(&s, NULL, 0), 0);
  for (int k = 0; k < SHORT_CHAIN; k++) {
    const pyprof_row *r = row(&s, short_name(k));
    ASSERT(r);
    ASSERT_EQ_U(r->nc, (uint64_t)SPAWNERS * SHORT_PER_SPAWNER * SHORT_ROUNDS);
    ASSERT_EQ_U(r->ct, (uint64_t)SPAWNERS * SHORT_PER_SPAWNER * SHORT_ROUNDS *
                           (2 * (SHORT_CHAIN - k) - 1));
  }
  pyprof_snapshot_free(&s);
  size_t len = 0;
  for (pyprof_thread *t = pyprof_threads_head(); t; t = t->next) len++;
  ASSERT(len < 64); /* structs reused: about one per spawner, not 450 */
  ASSERT(snaps > 0);
  pyprof_reset_all();
  return TEST_OK;
}

/* In a forked child, the other threads' data is gone, including the
 * folded totals and a thread that was mid-event at the fork (a snapshot
 * must not wait for it); their structs are reused afterwards. Last test:
 * it forgets every other thread of this process. */
TEST_IMPL(fork_child_forgets_others) {
  pyprof_thread *old = pyprof_thread_new(600);
  pyprof_enter(old, ent(old, 14, "forkOld"), 0);
  pyprof_leave(old, 5);
  pyprof_thread_retire(old);
  pyprof_thread *other = pyprof_thread_new(601); /* folds `old`, reuses it */
  ASSERT(other == old && !other->folded);
  pyprof_enter(other, ent(other, 14, "forkOld"), 0);
  other->seq |= 1; /* mid-event when the fork happens */
  pyprof_thread *self = pyprof_thread_new(602);
  pyprof_enter(self, ent(self, 15, "forkSelf"), 0);
  pyprof_core_lock();
  pyprof_fork_child(self);
  pyprof_core_unlock();
  ASSERT_EQ_U(other->seq & 1, 0); /* no snapshot may wait for it */
  pyprof_snapshot s, u;
  self->clock.vt = 7;
  self->clock.raw_out = 1000;
  ASSERT_EQ_I(snap_unfolded(&u), 0); /* reads the emptied threads */
  ASSERT(!other->folded);
  ASSERT_EQ_I(pyprof_snapshot_take(&s, self, 1000), 0);
  int rc = same_results(&u, &s);
  pyprof_snapshot_free(&u);
  if (rc) return rc;
  ASSERT_EQ_U(s.nrows, 1);
  ASSERT_EQ_U(row(&s, "forkSelf")->nc, 1);
  ASSERT_EQ_U(row(&s, "forkSelf")->ct, 7);
  ASSERT_EQ_U(s.nthreads, 1);
  ASSERT_EQ_U(s.dropped, 0);
  ASSERT_EQ_U(s.npaths, 1);
  pyprof_snapshot_free(&s);
  if (is_released(other)) return TEST_FAIL;
  size_t len0 = 0, len1 = 0;
  for (pyprof_thread *t = pyprof_threads_head(); t; t = t->next) len0++;
  pyprof_thread *again = pyprof_thread_new(603);
  ASSERT(again && again != self);
  for (pyprof_thread *t = pyprof_threads_head(); t; t = t->next) len1++;
  ASSERT_EQ_U(len1, len0);
  pyprof_leave(self, 9);
  pyprof_thread_retire(self);
  pyprof_thread_retire(again);
  pyprof_reset_all();
  return TEST_OK;
}

TEST_MAIN(TEST_ENTRY(nested_calls) TEST_ENTRY(direct_recursion)
              TEST_ENTRY(mutual_recursion) TEST_ENTRY(leave_on_empty_stack)
                  TEST_ENTRY(snapshot_of_active_frames)
                      TEST_ENTRY(keys_sharing_a_label) TEST_ENTRY(tables_grow) TEST_ENTRY(call_paths)
                          TEST_ENTRY(live_frames_as_if_returned)
                              TEST_ENTRY(file_names_interned)
                                  TEST_ENTRY(concurrent_snapshots)
                                      TEST_ENTRY(retired_threads_fold)
                                          TEST_ENTRY(short_threads_reuse_structs)
                                              TEST_ENTRY(short_threads_with_snapshots)
                                                  TEST_ENTRY(fork_child_forgets_others))
