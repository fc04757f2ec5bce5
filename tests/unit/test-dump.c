/*
 * test-dump.c -- snapshots encoded as pstats data, and atomic file writes.
 *
 * The encoded bytes are read back with a small marshal decoder (below) that
 * understands exactly the types the writer emits, so each test states the
 * dict it expects: {(file, line, name): (cc, nc, tt, ct, {caller: (nc, cc,
 * tt, ct)})}, then the metadata dict, then the end of the data.
 */
#include "dump.h"
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- a marshal reader for the writer's subset --------------------------- */

/* One decoded object. Dicts hold 2n items: key, value, key, value, ... */
typedef struct mv {
  char type;                /* 'i' (int), 'g', 'u' (any str), 'N', '(' tuple, '{' */
  int64_t i;                /* int value */
  double f;                 /* float value */
  const unsigned char *s;   /* str bytes (points into the input) */
  size_t n;                 /* str length, tuple items or dict pairs */
  struct mv *items;         /* tuple items or dict keys and values */
} mv;

typedef struct {
  const unsigned char *p, *end;
} mreader;

static void mv_free(mv *v) {
  size_t n = v->type == '{' ? 2 * v->n : v->type == '(' ? v->n : 0;
  for (size_t k = 0; k < n; k++) mv_free(&v->items[k]);
  free(v->items);
  v->items = NULL;
}

/* Reads `n` little-endian bytes as an unsigned number. */
static int rd_le(mreader *r, int n, uint64_t *out) {
  if (r->end - r->p < n) return -1;
  *out = 0;
  for (int k = 0; k < n; k++) *out |= (uint64_t)r->p[k] << (8 * k);
  r->p += n;
  return 0;
}

static int rd_object(mreader *r, mv *v);

/* Back-references (marshal's FLAG_REF / 'r'): where each flagged object
 * starts, in the order the reader meets them. Reset per top-level object,
 * as marshal.load does; a reference decodes the object again from there. */
static const unsigned char *ref_pos[1 << 16];
static size_t nref;
static int replaying;

/* Reads `n` objects into a new array. */
static int rd_items(mreader *r, mv *v, size_t n) {
  v->items = calloc(n ? n : 1, sizeof *v->items);
  if (!v->items) return -1;
  for (size_t k = 0; k < n; k++) {
    if (rd_object(r, &v->items[k]) != 0) return -1;
  }
  return 0;
}

/* Reads dict pairs up to the '0' terminator. */
static int rd_dict(mreader *r, mv *v) {
  size_t cap = 0;
  for (;;) {
    if (r->p >= r->end) return -1;
    if (*r->p == '0') {
      r->p++;
      return 0;
    }
    if (2 * v->n + 2 > cap) {
      cap = cap ? 2 * cap : 16;
      mv *p = realloc(v->items, cap * sizeof *p);
      if (!p) return -1;
      v->items = p;
    }
    memset(&v->items[2 * v->n], 0, 2 * sizeof *v->items);
    v->n++;
    if (rd_object(r, &v->items[2 * v->n - 2]) != 0 ||
        rd_object(r, &v->items[2 * v->n - 1]) != 0)
      return -1;
  }
}

/* Reads a marshalled long of 15-bit digits into an int64. */
static int rd_long(mreader *r, mv *v) {
  uint64_t raw, d = 0;
  if (rd_le(r, 4, &raw) != 0) return -1;
  int32_t nd = (int32_t)(uint32_t)raw;
  int32_t an = nd < 0 ? -nd : nd;
  if (an == 0 || an > 5) return -1;
  uint64_t mag = 0;
  for (int32_t k = 0; k < an; k++) {
    if (rd_le(r, 2, &d) != 0 || d > 0x7fff) return -1;
    mag |= d << (15 * k);
  }
  if (d == 0) return -1; /* unnormalized */
  v->type = 'i';
  v->i = nd < 0 ? (int64_t)(0 - mag) : (int64_t)mag;
  return 0;
}

/* Reads one object of the subset; -1 on anything else or truncation. */
static int rd_object(mreader *r, mv *v) {
  uint64_t x;
  memset(v, 0, sizeof *v);
  if (r->p >= r->end) return -1;
  const unsigned char *start = r->p;
  char t = (char)(*r->p++ & 0x7f);
  if ((*start & 0x80) && !replaying) {
    if (nref == sizeof ref_pos / sizeof *ref_pos) return -1;
    ref_pos[nref++] = start;
  }
  v->type = t;
  switch (t) {
  case 'N': return 0;
  case 'r': {
    if (rd_le(r, 4, &x) != 0 || x >= nref) return -1;
    mreader sub = {ref_pos[x], r->end};
    replaying++;
    int rc = rd_object(&sub, v);
    replaying--;
    return rc;
  }
  case 'i':
    if (rd_le(r, 4, &x) != 0) return -1;
    v->i = (int32_t)(uint32_t)x;
    return 0;
  case 'l': return rd_long(r, v);
  case 'g':
    if (rd_le(r, 8, &x) != 0) return -1;
    memcpy(&v->f, &x, sizeof v->f);
    return 0;
  case 'u':
  case 'z': /* short ASCII: u8 length */
    if (rd_le(r, t == 'z' ? 1 : 4, &x) != 0 || x > (uint64_t)(r->end - r->p))
      return -1;
    v->type = 'u';
    v->s = r->p;
    v->n = (size_t)x;
    r->p += x;
    return 0;
  case ')':
    if (rd_le(r, 1, &x) != 0) return -1;
    v->type = '(';
    v->n = (size_t)x;
    return rd_items(r, v, v->n);
  case '(':
    if (rd_le(r, 4, &x) != 0 || x > INT32_MAX) return -1;
    v->n = (size_t)x;
    return rd_items(r, v, v->n);
  case '{': return rd_dict(r, v);
  default: return -1;
  }
}

/* Is `v` the str `s`? */
static int mv_is_str(const mv *v, const char *s) {
  return v->type == 'u' && v->n == strlen(s) && memcmp(v->s, s, v->n) == 0;
}

/* Is `v` the label (file, line, name)? */
static int mv_is_label(const mv *v, const char *file, int line,
                       const char *name) {
  return v->type == '(' && v->n == 3 && mv_is_str(&v->items[0], file) &&
         v->items[1].type == 'i' && v->items[1].i == line &&
         mv_is_str(&v->items[2], name);
}

/* The value stored under label (file, line, name) in dict `d`, or NULL. */
static const mv *mv_get(const mv *d, const char *file, int line,
                        const char *name) {
  if (d->type != '{') return NULL;
  for (size_t k = 0; k < d->n; k++)
    if (mv_is_label(&d->items[2 * k], file, line, name))
      return &d->items[2 * k + 1];
  return NULL;
}

/* The value stored under str key `key` in dict `d`, or NULL. */
static const mv *mv_get_str(const mv *d, const char *key) {
  if (d->type != '{') return NULL;
  for (size_t k = 0; k < d->n; k++)
    if (mv_is_str(&d->items[2 * k], key)) return &d->items[2 * k + 1];
  return NULL;
}

/* Decodes the encoder's output: the stats dict, then the metadata dict,
 * then nothing. `stats_end` is where the first object ends: pstats calls
 * marshal.load once, so the first object alone must be the stats. */
static int decode_file(const pyprof_buf *b, mv *stats, mv *meta,
                       size_t *stats_end) {
  mreader r = {b->data, b->data + b->len};
  memset(meta, 0, sizeof *meta);
  nref = 0;
  if (rd_object(&r, stats) != 0) return -1;
  *stats_end = (size_t)(r.p - b->data);
  nref = 0;
  if (rd_object(&r, meta) != 0) return -1;
  return r.p == r.end ? 0 : -1;
}

/* ---- building snapshots by hand ----------------------------------------- */

static int cmp_row(const void *a, const void *b) {
  const pyprof_row *x = a, *y = b;
  return (x->fid > y->fid) - (x->fid < y->fid);
}

static int cmp_edge(const void *a, const void *b) {
  const pyprof_edge_row *x = a, *y = b;
  if (x->callee != y->callee) return (x->callee > y->callee) ? 1 : -1;
  return (x->caller > y->caller) - (x->caller < y->caller);
}

/* Puts rows and edges in the order pyprof_snapshot_take() promises. */
static void sort_snapshot(pyprof_snapshot *s) {
  qsort(s->rows, s->nrows, sizeof *s->rows, cmp_row);
  qsort(s->edges, s->nedges, sizeof *s->edges, cmp_edge);
}

#define TICK 1e-6 /* seconds per tick in these tests */

/* Checks a 4- or 5-item stats tuple: counts first, then the two times. */
#define ASSERT_TIMES(t, a, b, tt, ct)                                     \
  do {                                                                    \
    ASSERT_EQ_U((t)->items[0].type, 'i');                                 \
    ASSERT_EQ_U((t)->items[1].type, 'i');                                 \
    ASSERT_EQ_I((t)->items[0].i, (a));                                    \
    ASSERT_EQ_I((t)->items[1].i, (b));                                    \
    ASSERT_EQ_U((t)->items[2].type, 'g');                                 \
    ASSERT_EQ_U((t)->items[3].type, 'g');                                 \
    ASSERT((t)->items[2].f == (double)(tt) * TICK);                       \
    ASSERT((t)->items[3].f == (double)(ct) * TICK);                       \
  } while (0)

/* Two functions, f calls g (g is also recursive): the exact dict
 * cProfile would write, then the metadata, then the end of the data. */
TEST_IMPL(encode_two_functions) {
  pyprof_fid f = pyprof_func_register("/t/two.py", 10, "f");
  pyprof_fid g = pyprof_func_register("/t/two.py", 20, "g");
  ASSERT(f != PYPROF_FID_NONE && g != PYPROF_FID_NONE && f != g);
  pyprof_row rows[] = {{f, 1, 1, 100, 3000}, {g, 3, 2, 2900, 2900}};
  pyprof_edge_row edges[] = {{f, g, 2, 2, 2000, 2900},
                             {g, g, 1, 0, 900, 1400}};
  pyprof_snapshot s = {.rows = rows, .nrows = 2, .edges = edges, .nedges = 2, .dropped = 0, .nthreads = 1};
  sort_snapshot(&s);
  pyprof_meta meta[] = {{"timer", "wall"}, {"bias", "0"}, {"x", NULL}};

  pyprof_buf b;
  pyprof_buf_init(&b);
  ASSERT_EQ_I(pyprof_pstats_encode(&b, &s, TICK, meta, 3), 0);
  mv st, md;
  size_t st_end;
  ASSERT_EQ_I(decode_file(&b, &st, &md, &st_end), 0);
  ASSERT_EQ_U(b.data[st_end], '{'); /* the metadata follows directly */

  ASSERT_EQ_U(st.type, '{');
  ASSERT_EQ_U(st.n, 2);
  const mv *vf = mv_get(&st, "/t/two.py", 10, "f");
  const mv *vg = mv_get(&st, "/t/two.py", 20, "g");
  ASSERT(vf && vg && vf->type == '(' && vg->type == '(');
  ASSERT_EQ_U(vf->n, 5);
  ASSERT_TIMES(vf, 1, 1, 100, 3000); /* (cc, nc, tt, ct) */
  ASSERT_EQ_U(vf->items[4].type, '{');
  ASSERT_EQ_U(vf->items[4].n, 0);
  ASSERT_EQ_U(vg->n, 5);
  ASSERT_TIMES(vg, 2, 3, 2900, 2900); /* cc=2 before nc=3 */
  const mv *callers = &vg->items[4];
  ASSERT_EQ_U(callers->n, 2);
  const mv *from_f = mv_get(callers, "/t/two.py", 10, "f");
  const mv *from_g = mv_get(callers, "/t/two.py", 20, "g");
  ASSERT(from_f && from_g && from_f->n == 4 && from_g->n == 4);
  ASSERT_TIMES(from_f, 2, 2, 2000, 2900);
  ASSERT_TIMES(from_g, 1, 0, 900, 1400); /* nc=1 before cc=0 */

  ASSERT_EQ_U(md.type, '{');
  ASSERT_EQ_U(md.n, 2); /* the NULL value was skipped */
  ASSERT(mv_get_str(&md, "timer") && mv_is_str(mv_get_str(&md, "timer"), "wall"));
  ASSERT(mv_get_str(&md, "bias") && mv_is_str(mv_get_str(&md, "bias"), "0"));
  mv_free(&st);
  mv_free(&md);
  pyprof_buf_free(&b);
  return TEST_OK;
}

/* Functions without calls are left out, and so is every edge that touches
 * one, names a function without a row, or has no calls itself. */
TEST_IMPL(uncalled_are_omitted) {
  pyprof_fid f = pyprof_func_register("/t/omit.py", 1, "f");
  pyprof_fid h = pyprof_func_register("/t/omit.py", 2, "h");
  pyprof_fid g = pyprof_func_register("/t/omit.py", 3, "g");
  pyprof_fid x = pyprof_func_register("/t/omit.py", 4, "no_row");
  pyprof_fid u = pyprof_func_register("/t/omit.py", 5, "uncalled_edge");
  pyprof_row rows[] = {{f, 1, 1, 10, 50}, {h, 0, 0, 0, 0}, {g, 2, 2, 20, 20},
                       {u, 1, 1, 5, 5}};
  pyprof_edge_row edges[] = {
      {h, g, 1, 1, 1, 1}, /* caller omitted */
      {f, g, 2, 2, 20, 20},
      {f, h, 1, 1, 1, 1}, /* callee omitted */
      {f, x, 1, 1, 1, 1}, /* callee has no row */
      {x, g, 1, 1, 1, 1}, /* caller has no row */
      {f, u, 0, 0, 0, 0}, /* edge without calls */
  };
  pyprof_snapshot s = {.rows = rows, .nrows = 4, .edges = edges, .nedges = 6, .dropped = 0, .nthreads = 1};
  sort_snapshot(&s);

  pyprof_buf b;
  pyprof_buf_init(&b);
  ASSERT_EQ_I(pyprof_pstats_encode(&b, &s, TICK, NULL, 0), 0);
  mv st, md;
  size_t st_end;
  ASSERT_EQ_I(decode_file(&b, &st, &md, &st_end), 0);
  ASSERT_EQ_U(st.n, 3);
  ASSERT(mv_get(&st, "/t/omit.py", 2, "h") == NULL);
  ASSERT(mv_get(&st, "/t/omit.py", 4, "no_row") == NULL);
  const mv *vg = mv_get(&st, "/t/omit.py", 3, "g");
  const mv *vf = mv_get(&st, "/t/omit.py", 1, "f");
  const mv *vu = mv_get(&st, "/t/omit.py", 5, "uncalled_edge");
  ASSERT(vg && vf && vu);
  ASSERT_EQ_U(vg->items[4].n, 1);
  ASSERT(mv_get(&vg->items[4], "/t/omit.py", 1, "f") != NULL);
  ASSERT_EQ_U(vf->items[4].n, 0);
  ASSERT_EQ_U(vu->items[4].n, 0);
  ASSERT_EQ_U(md.n, 0);
  mv_free(&st);
  mv_free(&md);
  pyprof_buf_free(&b);
  return TEST_OK;
}

/* The same caller->callee pair twice (adjacent after sorting) becomes one
 * key with the sums, as cProfile's snapshot_stats merges duplicates. */
TEST_IMPL(duplicate_edges_are_summed) {
  pyprof_fid f = pyprof_func_register("/t/dup.py", 1, "f");
  pyprof_fid g = pyprof_func_register("/t/dup.py", 2, "g");
  pyprof_row rows[] = {{f, 1, 1, 1, 10}, {g, 5, 5, 9, 9}};
  pyprof_edge_row edges[] = {{f, g, 2, 2, 4, 4}, {f, g, 3, 3, 5, 5}};
  pyprof_snapshot s = {.rows = rows, .nrows = 2, .edges = edges, .nedges = 2, .dropped = 0, .nthreads = 1};
  sort_snapshot(&s);
  pyprof_buf b;
  pyprof_buf_init(&b);
  ASSERT_EQ_I(pyprof_pstats_encode(&b, &s, TICK, NULL, 0), 0);
  mv st, md;
  size_t st_end;
  ASSERT_EQ_I(decode_file(&b, &st, &md, &st_end), 0);
  const mv *vg = mv_get(&st, "/t/dup.py", 2, "g");
  ASSERT(vg);
  ASSERT_EQ_U(vg->items[4].n, 1);
  const mv *e = mv_get(&vg->items[4], "/t/dup.py", 1, "f");
  ASSERT(e);
  ASSERT_TIMES(e, 5, 5, 9, 9);
  mv_free(&st);
  mv_free(&md);
  pyprof_buf_free(&b);
  return TEST_OK;
}

/* Nothing profiled: two empty dicts, byte for byte ("{0" twice). Also
 * checks that encoding appends to what the buffer already holds. */
TEST_IMPL(empty_snapshot) {
  static const unsigned char want[] = {'N', '{', '0', '{', '0'};
  pyprof_snapshot s = {.rows = NULL, .nrows = 0, .edges = NULL, .nedges = 0, .dropped = 0, .nthreads = 0};
  pyprof_buf b;
  pyprof_buf_init(&b);
  pyprof_m_none(&b);
  ASSERT_EQ_I(pyprof_pstats_encode(&b, &s, TICK, NULL, 0), 0);
  ASSERT_EQ_U(b.len, sizeof want);
  ASSERT(memcmp(b.data, want, sizeof want) == 0);
  pyprof_buf_free(&b);
  return TEST_OK;
}

/* Built-in labels, large counts and non-ASCII names survive the trip. */
TEST_IMPL(builtin_and_big_values) {
  const char *name = "<built-in method builtins.len>";
  pyprof_fid f = pyprof_func_register("~", 0, name);
  pyprof_fid g = pyprof_func_register("/t/\xc3\xa9t\xc3\xa9.py", 7, "caf\xc3\xa9");
  uint64_t big = UINT64_C(5000000000); /* needs the long form */
  pyprof_row rows[] = {{f, big, big, big, big}, {g, 1, 1, 1, 1}};
  pyprof_edge_row edges[] = {{g, f, big, big, big, big}};
  pyprof_snapshot s = {.rows = rows, .nrows = 2, .edges = edges, .nedges = 1, .dropped = 0, .nthreads = 1};
  sort_snapshot(&s);
  pyprof_buf b;
  pyprof_buf_init(&b);
  ASSERT_EQ_I(pyprof_pstats_encode(&b, &s, TICK, NULL, 0), 0);
  mv st, md;
  size_t st_end;
  ASSERT_EQ_I(decode_file(&b, &st, &md, &st_end), 0);
  const mv *vf = mv_get(&st, "~", 0, name);
  ASSERT(vf);
  ASSERT_TIMES(vf, big, big, big, big);
  const mv *e = mv_get(&vf->items[4], "/t/\xc3\xa9t\xc3\xa9.py", 7, "caf\xc3\xa9");
  ASSERT(e);
  ASSERT_TIMES(e, big, big, big, big);
  mv_free(&st);
  mv_free(&md);
  pyprof_buf_free(&b);
  return TEST_OK;
}

/* ---- atomic writes ------------------------------------------------------ */

/* Number of entries in directory `dir` other than . and .. (-1 on error). */
static int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
  closedir(d);
  return n;
}

/* Reads up to `cap` bytes of `path` into `out`; returns the length or -1. */
static ssize_t read_file(const char *path, char *out, size_t cap) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  ssize_t n = read(fd, out, cap);
  close(fd);
  return n;
}

/* A fresh empty directory under $TMPDIR (or /tmp) in `out`. */
static int make_tmpdir(char *out, size_t cap) {
  const char *base = getenv("TMPDIR");
  snprintf(out, cap, "%s/pyprof-test-dump.XXXXXX", base && *base ? base : "/tmp");
  return mkdtemp(out) ? 0 : -1;
}

/* Removes `dir` and the files directly in it (best effort). */
static void remove_tmpdir(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *e;
  char p[4096];
  chmod(dir, 0700);
  while (d && (e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    if (unlink(p) != 0) rmdir(p);
  }
  if (d) closedir(d);
  rmdir(dir);
}

/* The file appears with exactly the data, replaces an older file, and no
 * temporary file stays behind. */
TEST_IMPL(atomic_write_ok) {
  char dir[512], path[600], got[64];
  ASSERT_EQ_I(make_tmpdir(dir, sizeof dir), 0);
  snprintf(path, sizeof path, "%s/x.prof", dir);
  ASSERT_EQ_I(pyprof_write_atomic(path, "first version", 13), 0);
  ASSERT_EQ_I(read_file(path, got, sizeof got), 13);
  ASSERT(memcmp(got, "first version", 13) == 0);
  ASSERT_EQ_I(pyprof_write_atomic(path, "second", 6), 0);
  ASSERT_EQ_I(read_file(path, got, sizeof got), 6);
  ASSERT(memcmp(got, "second", 6) == 0);
  ASSERT_EQ_I(pyprof_write_atomic(path, NULL, 0), 0);
  ASSERT_EQ_I(read_file(path, got, sizeof got), 0);
  ASSERT_EQ_I(count_entries(dir), 1);
  struct stat st;
  ASSERT_EQ_I(stat(path, &st), 0);
  ASSERT(S_ISREG(st.st_mode));
  mode_t mask = umask(0);
  umask(mask);
  ASSERT_EQ_U(st.st_mode & 07777, 0644 & ~mask);
  remove_tmpdir(dir);
  return TEST_OK;
}

/* An existing file is replaced by a new one, never rewritten in place: a
 * reader that has the old file open, and a hard link to it, still see the
 * old data; no temporary file stays behind. Both ways of replacing are
 * checked: the name exchange (default) and fsync + rename. */
TEST_IMPL(atomic_write_replaces_not_rewrites) {
  char dir[512], path[600], link_path[600], got[64];
  for (int fs = 0; fs <= 1; fs++) {
    pyprof_fsync_files = fs;
    ASSERT_EQ_I(make_tmpdir(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/x.prof", dir);
    snprintf(link_path, sizeof link_path, "%s/old.prof", dir);
    ASSERT_EQ_I(pyprof_write_atomic(path, "old data", 8), 0);
    ASSERT_EQ_I(link(path, link_path), 0);
    int fd = open(path, O_RDONLY);
    ASSERT(fd >= 0);
    ASSERT_EQ_I(pyprof_write_atomic(path, "new", 3), 0);
    ssize_t n = pread(fd, got, sizeof got, 0);
    close(fd);
    ASSERT_EQ_I(n, 8);
    ASSERT(memcmp(got, "old data", 8) == 0);
    ASSERT_EQ_I(read_file(path, got, sizeof got), 3);
    ASSERT(memcmp(got, "new", 3) == 0);
    ASSERT_EQ_I(read_file(link_path, got, sizeof got), 8);
    ASSERT_EQ_I(count_entries(dir), 2);
    remove_tmpdir(dir);
  }
  pyprof_fsync_files = 0;
  return TEST_OK;
}

/* A directory that does not exist: -1, ENOENT, nothing created. */
TEST_IMPL(atomic_write_no_dir) {
  errno = 0;
  ASSERT_EQ_I(pyprof_write_atomic("/nonexistent/x.prof", "abc", 3), -1);
  ASSERT_EQ_I(errno, ENOENT);
  ASSERT(access("/nonexistent", F_OK) != 0);
  return TEST_OK;
}

/* /proc does not take new files: -1 with the error of open(). */
TEST_IMPL(atomic_write_proc) {
  errno = 0;
  ASSERT_EQ_I(pyprof_write_atomic("/proc/pyprof-test.prof", "abc", 3), -1);
  ASSERT(errno == ENOENT || errno == EACCES || errno == EPERM);
  ASSERT(access("/proc/pyprof-test.prof", F_OK) != 0);
  errno = 0;
  ASSERT_EQ_I(pyprof_write_atomic("/proc/self/x.prof", "abc", 3), -1);
  ASSERT(errno != 0);
  return TEST_OK;
}

/* A read-only directory (meaningless for root, who bypasses modes). */
TEST_IMPL(atomic_write_readonly_dir) {
  char dir[512], path[600];
  if (geteuid() == 0) RETURN_SKIP("root ignores directory permissions");
  ASSERT_EQ_I(make_tmpdir(dir, sizeof dir), 0);
  snprintf(path, sizeof path, "%s/x.prof", dir);
  ASSERT_EQ_I(chmod(dir, 0555), 0);
  errno = 0;
  int r = pyprof_write_atomic(path, "abc", 3);
  int err = errno;
  chmod(dir, 0700);
  ASSERT_EQ_I(r, -1);
  ASSERT_EQ_I(err, EACCES);
  ASSERT_EQ_I(count_entries(dir), 0);
  remove_tmpdir(dir);
  return TEST_OK;
}

/* The rename fails (the target is a non-empty directory): the temporary
 * file is removed and errno comes from rename(). */
TEST_IMPL(atomic_write_rename_fails) {
  char dir[512], path[600], inner[700];
  ASSERT_EQ_I(make_tmpdir(dir, sizeof dir), 0);
  snprintf(path, sizeof path, "%s/x.prof", dir);
  snprintf(inner, sizeof inner, "%s/keep", path);
  ASSERT_EQ_I(mkdir(path, 0700), 0);
  int fd = open(inner, O_CREAT | O_WRONLY, 0600);
  ASSERT(fd >= 0);
  close(fd);
  errno = 0;
  ASSERT_EQ_I(pyprof_write_atomic(path, "abc", 3), -1);
  ASSERT_EQ_I(errno, EISDIR);
  ASSERT_EQ_I(count_entries(dir), 1);
  ASSERT_EQ_I(count_entries(path), 1);
  unlink(inner);
  remove_tmpdir(dir);
  return TEST_OK;
}

/* A target that is not a regular file (a FIFO here; /dev/full as root in
 * real life) is refused, left as it was, and no temporary file remains. */
TEST_IMPL(atomic_write_not_regular) {
  char dir[512], path[600];
  ASSERT_EQ_I(make_tmpdir(dir, sizeof dir), 0);
  snprintf(path, sizeof path, "%s/fifo.prof", dir);
  ASSERT_EQ_I(mkfifo(path, 0600), 0);
  errno = 0;
  ASSERT_EQ_I(pyprof_write_atomic(path, "abc", 3), -1);
  ASSERT_EQ_I(errno, EINVAL);
  struct stat st;
  ASSERT_EQ_I(lstat(path, &st), 0);
  ASSERT(S_ISFIFO(st.st_mode));
  ASSERT_EQ_I(count_entries(dir), 1);
  unlink(path);
  remove_tmpdir(dir);
  return TEST_OK;
}

/* write() fails half-way (file size limit): -1 with EFBIG, the old file
 * is untouched, and the temporary file is gone. */
TEST_IMPL(atomic_write_write_fails) {
  char dir[512], path[600], got[64], big[4096];
  struct rlimit old, lim;
  ASSERT_EQ_I(make_tmpdir(dir, sizeof dir), 0);
  snprintf(path, sizeof path, "%s/x.prof", dir);
  ASSERT_EQ_I(pyprof_write_atomic(path, "old", 3), 0);
  memset(big, 'x', sizeof big);
  ASSERT_EQ_I(getrlimit(RLIMIT_FSIZE, &old), 0);
  lim = old;
  lim.rlim_cur = 100;
  void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ_I(setrlimit(RLIMIT_FSIZE, &lim), 0);
  errno = 0;
  int r = pyprof_write_atomic(path, big, sizeof big);
  int err = errno;
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, prev);
  ASSERT_EQ_I(r, -1);
  ASSERT_EQ_I(err, EFBIG);
  ASSERT_EQ_I(read_file(path, got, sizeof got), 3);
  ASSERT(memcmp(got, "old", 3) == 0);
  ASSERT_EQ_I(count_entries(dir), 1);
  remove_tmpdir(dir);
  return TEST_OK;
}

/* A path longer than PATH_MAX is refused before anything is created. */
TEST_IMPL(atomic_write_long_path) {
  static char path[5000];
  memset(path, 'a', sizeof path - 1);
  path[0] = '/';
  errno = 0;
  ASSERT_EQ_I(pyprof_write_atomic(path, "abc", 3), -1);
  ASSERT_EQ_I(errno, ENAMETOOLONG);
  return TEST_OK;
}

TEST_MAIN(TEST_ENTRY(encode_two_functions) TEST_ENTRY(atomic_write_replaces_not_rewrites) TEST_ENTRY(uncalled_are_omitted)
              TEST_ENTRY(duplicate_edges_are_summed) TEST_ENTRY(empty_snapshot)
                  TEST_ENTRY(builtin_and_big_values) TEST_ENTRY(atomic_write_ok)
                      TEST_ENTRY(atomic_write_no_dir) TEST_ENTRY(atomic_write_proc)
                          TEST_ENTRY(atomic_write_readonly_dir)
                              TEST_ENTRY(atomic_write_rename_fails)
                              TEST_ENTRY(atomic_write_not_regular)
                                  TEST_ENTRY(atomic_write_write_fails)
                                      TEST_ENTRY(atomic_write_long_path))
