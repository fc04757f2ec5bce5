/*
 * dump.c -- a snapshot as a pstats file, written atomically (see dump.h).
 *
 * The stats dict matches what Lib/cProfile.py's snapshot_stats() builds:
 *   key   (file, line, name)
 *   value (cc, nc, tt, ct, callers)        -- cc first
 *   callers[caller_key] = (nc, cc, tt, ct) -- nc first (sic)
 * with tt and ct in seconds as floats.
 */
#include "dump.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h> /* rename() only: no stdio streams here */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

/* ---- encoding ----------------------------------------------------------- */

/* A count as a Python int (counts never exceed INT64_MAX in practice). */
static void dump_count(pyprof_buf *b, uint64_t v) {
  pyprof_m_int(b, v > INT64_MAX ? INT64_MAX : (int64_t)v);
}

/* A C string as a Python str; NULL is written as "". */
static void dump_cstr(pyprof_buf *b, const char *s) {
  pyprof_m_str(b, s ? s : "", s ? strlen(s) : 0);
}

/* Back-references within one marshal object (marshal's are per object):
 * a label that appears several times in the stats dict (as a key and in
 * callers' dicts) is written once, flagged, and named by its index after
 * that; so is each file name, shared by every label of that file. */
typedef struct dump_refs {
  uint32_t *label;     /* by fid: 0 the function is left out, 1 not written
                          yet, k + 2 written as reference k; NULL when
                          labels are not remembered */
  uint32_t nfuncs;     /* entries of `label` */
  const char **files;  /* file names written (interned pointers), open
                          addressing; NULL once out of memory */
  uint32_t *file_idx;  /* their reference indices */
  uint32_t files_mask, nfiles;
  uint32_t next;       /* index of the next flagged object */
} dump_refs;

static void refs_init(dump_refs *r) {
  memset(r, 0, sizeof *r);
  r->files_mask = 63;
  r->files = calloc(64, sizeof *r->files);
  r->file_idx = malloc(64 * sizeof *r->file_idx);
  if (!r->files || !r->file_idx) {
    free(r->files);
    free(r->file_idx);
    r->files = NULL;
    r->file_idx = NULL;
  }
}

static void refs_free(dump_refs *r) {
  free(r->label);
  free(r->files);
  free(r->file_idx);
  memset(r, 0, sizeof *r);
}

/* The slot of `file` in `files`, or the empty slot where it would go. */
static uint32_t refs_slot(const char **files, uint32_t mask,
                          const char *file) {
  uint32_t i = (uint32_t)(((uintptr_t)file * 0x9E3779B97F4A7C15ull) >> 32) & mask;
  while (files[i] && files[i] != file) i = (i + 1) & mask;
  return i;
}

/* Doubles the file table; on failure file names are written in full. */
static int refs_grow_files(dump_refs *r) {
  uint32_t nmask = r->files_mask * 2 + 1;
  const char **nf = calloc((size_t)nmask + 1, sizeof *nf);
  uint32_t *ni = malloc(((size_t)nmask + 1) * sizeof *ni);
  if (!nf || !ni) {
    free(nf);
    free(ni);
    return -1;
  }
  for (uint32_t j = 0; j <= r->files_mask; j++) {
    if (!r->files[j]) continue;
    uint32_t i = refs_slot(nf, nmask, r->files[j]);
    nf[i] = r->files[j];
    ni[i] = r->file_idx[j];
  }
  free(r->files);
  free(r->file_idx);
  r->files = nf;
  r->file_idx = ni;
  r->files_mask = nmask;
  return 0;
}

/* A file name: a reference when written before in this object. Names are
 * interned by the registry, so the pointer identifies the name. */
static void dump_file(pyprof_buf *b, dump_refs *r, const char *file) {
  if (!file || !r->files) {
    dump_cstr(b, file);
    return;
  }
  uint32_t i = refs_slot(r->files, r->files_mask, file);
  if (r->files[i]) {
    pyprof_m_ref(b, r->file_idx[i]);
    return;
  }
  if ((r->nfiles + 1) * 2 > r->files_mask) {
    if (refs_grow_files(r) < 0) {
      dump_cstr(b, file);
      return;
    }
    i = refs_slot(r->files, r->files_mask, file);
  }
  r->files[i] = file;
  r->file_idx[i] = r->next++;
  r->nfiles++;
  pyprof_m_str_ref(b, file, strlen(file));
}

/* The (file, line, name) label of a registered function; remembered under
 * `fid` when labels are (see dump_refs). */
static void dump_label(pyprof_buf *b, dump_refs *r, const pyprof_func *f,
                       pyprof_fid fid) {
  uint32_t *slot = r->label && fid < r->nfuncs ? &r->label[fid] : NULL;
  if (slot && *slot >= 2) {
    pyprof_m_ref(b, *slot - 2);
    return;
  }
  if (slot) {
    *slot = r->next++ + 2;
    pyprof_m_tuple_ref(b, 3);
  } else {
    pyprof_m_tuple(b, 3);
  }
  dump_file(b, r, f->file);
  pyprof_m_int(b, f->line);
  dump_cstr(b, f->name);
}

/* Finds the row of `fid` in rows sorted by fid; NULL if absent. */
static const pyprof_row *dump_find_row(const pyprof_snapshot *s,
                                       pyprof_fid fid) {
  size_t lo = 0, hi = s->nrows;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (s->rows[mid].fid < fid) lo = mid + 1;
    else hi = mid;
  }
  return lo < s->nrows && s->rows[lo].fid == fid ? &s->rows[lo] : NULL;
}

/* The registered function of a row that goes into the file, or NULL for a
 * row that is left out (no calls, or unknown to the registry). */
static const pyprof_func *dump_row_func(const pyprof_row *r) {
  if (!r || r->nc == 0) return NULL;
  return pyprof_func_get(r->fid);
}

/* The function `fid` if its row goes into the file, else NULL: from the
 * label table when there is one (O(1)), else by a search of the rows. */
static const pyprof_func *dump_func_in_file(const pyprof_snapshot *s,
                                            const dump_refs *r,
                                            pyprof_fid fid) {
  if (r->label)
    return fid < r->nfuncs && r->label[fid] ? pyprof_func_get(fid) : NULL;
  return dump_row_func(dump_find_row(s, fid));
}

/* Writes the callers dict of the callee whose edges are e[0..n): all have
 * the same callee and are sorted by caller. Adjacent duplicates (the same
 * caller twice) are summed, so each key appears once. Edges without calls
 * or whose caller is left out are dropped. */
static void dump_callers(pyprof_buf *b, dump_refs *refs,
                         const pyprof_snapshot *s, const pyprof_edge_row *e,
                         size_t n, double tick) {
  pyprof_m_dict_begin(b);
  for (size_t i = 0; i < n;) {
    pyprof_edge_row sum = e[i];
    for (i++; i < n && e[i].caller == sum.caller; i++) {
      sum.nc += e[i].nc;
      sum.cc += e[i].cc;
      sum.tt += e[i].tt;
      sum.ct += e[i].ct;
    }
    if (sum.nc == 0) continue;
    const pyprof_func *f = dump_func_in_file(s, refs, sum.caller);
    if (!f) continue;
    dump_label(b, refs, f, sum.caller);
    pyprof_m_tuple(b, 4);
    dump_count(b, sum.nc);
    dump_count(b, sum.cc);
    pyprof_m_float(b, (double)sum.tt * tick);
    pyprof_m_float(b, (double)sum.ct * tick);
  }
  pyprof_m_dict_end(b);
}

/* Writes the stats dict. Rows are sorted by fid and edges by (callee,
 * caller), so one forward pass over the edges pairs each callee row with
 * its run of edges. */
static void dump_stats(pyprof_buf *b, dump_refs *refs,
                       const pyprof_snapshot *s, double tick) {
  size_t j = 0; /* first edge whose callee is not below the current row */
  pyprof_m_dict_begin(b);
  for (size_t i = 0; i < s->nrows; i++) {
    const pyprof_row *r = &s->rows[i];
    while (j < s->nedges && s->edges[j].callee < r->fid) j++;
    size_t k = j;
    while (k < s->nedges && s->edges[k].callee == r->fid) k++;
    const pyprof_func *f = dump_row_func(r);
    if (f) {
      dump_label(b, refs, f, r->fid);
      pyprof_m_tuple(b, 5);
      dump_count(b, r->cc);
      dump_count(b, r->nc);
      pyprof_m_float(b, (double)r->tt * tick);
      pyprof_m_float(b, (double)r->ct * tick);
      dump_callers(b, refs, s, s->edges + j, k - j, tick);
    }
    j = k;
  }
  pyprof_m_dict_end(b);
}

/* Writes the metadata dict; items with a NULL key or value are skipped. */
static void dump_meta(pyprof_buf *b, const pyprof_meta *meta, size_t n) {
  pyprof_m_dict_begin(b);
  for (size_t i = 0; i < n; i++) {
    if (!meta[i].key || !meta[i].value) continue;
    dump_cstr(b, meta[i].key);
    dump_cstr(b, meta[i].value);
  }
  pyprof_m_dict_end(b);
}

/* Appends the stats dict, then the metadata dict, to `b` (see dump.h).
 * Cost: O(rows + edges * log rows). */
int pyprof_pstats_encode(pyprof_buf *b, const pyprof_snapshot *s,
                         double tick_seconds, const pyprof_meta *meta,
                         size_t nmeta) {
  dump_refs r;
  pyprof_buf_reserve(b, 96 * (s->nrows + s->nedges) + 4096);
  refs_init(&r);
  /* Which functions go into the file, by fid (rows are sorted by fid).
   * Without memory for that, labels are written in full each time. */
  uint32_t nf = s->nrows ? s->rows[s->nrows - 1].fid + 1 : 0;
  r.label = calloc((size_t)nf + 1, sizeof *r.label);
  if (r.label) {
    r.nfuncs = nf;
    for (size_t i = 0; i < s->nrows; i++)
      if (dump_row_func(&s->rows[i])) r.label[s->rows[i].fid] = 1;
  }
  dump_stats(b, &r, s, tick_seconds);
  refs_free(&r);
  dump_meta(b, meta, nmeta);
  return b->oom ? -1 : 0;
}

int pyprof_paths_encode(pyprof_buf *b, const pyprof_snapshot *s,
                        double tick_seconds, int max_depth) {
  /* Labels in order of first use; label_of[fid] = index+1. */
  uint32_t nf = pyprof_func_count();
  uint32_t *label_of = calloc((size_t)nf + 1, sizeof *label_of);
  pyprof_fid *labels = malloc((s->npaths + 1) * sizeof *labels);
  uint32_t nlabels = 0, trunc_label = 0;
  /* Paths with no calls and no time below them (the parent's tree in a
   * fork child, calibration, functions only on a stack at a reset) are
   * left out; new_index[i] = index+1 among those kept. */
  uint32_t *new_index = calloc(s->npaths + 1, sizeof *new_index);
  if (!label_of || !labels || !new_index) {
    free(label_of);
    free(labels);
    free(new_index);
    return -1;
  }
  for (size_t i = s->npaths; i-- > 0;) {
    const pyprof_path_row *p = &s->paths[i];
    if (p->calls || p->tt || p->ct) new_index[i] = 1;
    if (new_index[i] && p->parent) new_index[p->parent - 1] = 1;
  }
  uint32_t nkept = 0;
  for (size_t i = 0; i < s->npaths; i++)
    if (new_index[i]) new_index[i] = ++nkept;
  for (size_t i = 0; i < s->npaths; i++) {
    if (!new_index[i]) continue;
    pyprof_fid f = s->paths[i].fid;
    if (f == PYPROF_FID_NONE || f >= nf) {
      if (!trunc_label) labels[nlabels++] = PYPROF_FID_NONE, trunc_label = nlabels;
    } else if (!label_of[f]) {
      labels[nlabels++] = f;
      label_of[f] = nlabels;
    }
  }
  dump_refs r;
  refs_init(&r); /* file names only: each label is written once here */
  pyprof_m_dict_begin(b);
  dump_cstr(b, "version");
  pyprof_m_int(b, 1);
  dump_cstr(b, "labels");
  pyprof_m_list(b, nlabels);
  for (uint32_t i = 0; i < nlabels; i++) {
    const pyprof_func *fn = labels[i] == PYPROF_FID_NONE ? NULL
                                                          : pyprof_func_get(labels[i]);
    if (fn) {
      dump_label(b, &r, fn, labels[i]);
    } else {
      pyprof_m_tuple(b, 3);
      dump_cstr(b, "~");
      pyprof_m_int(b, 0);
      dump_cstr(b, "[truncated]");
    }
  }
  dump_cstr(b, "nodes");
  pyprof_m_list(b, nkept);
  for (size_t i = 0; i < s->npaths; i++) {
    const pyprof_path_row *p = &s->paths[i];
    if (!new_index[i]) continue;
    pyprof_fid f = p->fid;
    uint32_t lab = (f == PYPROF_FID_NONE || f >= nf) ? trunc_label : label_of[f];
    pyprof_m_tuple(b, 5);
    pyprof_m_int(b, p->parent ? (int64_t)new_index[p->parent - 1] - 1 : -1);
    pyprof_m_int(b, (int64_t)lab - 1);
    dump_count(b, p->calls);
    pyprof_m_float(b, (double)p->tt * tick_seconds);
    pyprof_m_float(b, (double)p->ct * tick_seconds);
  }
  dump_cstr(b, "truncated");
  dump_count(b, s->truncated);
  dump_cstr(b, "max_depth");
  pyprof_m_int(b, max_depth);
  pyprof_m_dict_end(b);
  refs_free(&r);
  free(label_of);
  free(labels);
  free(new_index);
  return b->oom ? -1 : 0;
}

/* ---- atomic file writing ------------------------------------------------ */

int pyprof_fsync_files;

/* Tells temporary names of concurrent dumps in one process apart. */
static unsigned dump_tmp_counter;

/* Appends the decimal digits of `v` at `p`; returns the new end. */
static char *dump_utoa(char *p, unsigned long v) {
  char tmp[24];
  size_t n = 0;
  do tmp[n++] = (char)('0' + v % 10); while (v /= 10);
  while (n) *p++ = tmp[--n];
  return p;
}

/* Builds "<path>.tmp.<pid>.<counter>" in `out` (PATH_MAX + 64 bytes) and
 * opens it exclusively. Returns the descriptor, or -1 with errno set. */
static int dump_open_tmp(const char *path, char *out) {
  size_t n = strlen(path);
  if (n >= PATH_MAX) {
    errno = ENAMETOOLONG;
    return -1;
  }
  for (int attempt = 0; attempt < 100; attempt++) {
    unsigned c = __atomic_fetch_add(&dump_tmp_counter, 1, __ATOMIC_RELAXED);
    char *p = out + n;
    memcpy(out, path, n);
    memcpy(p, ".tmp.", 5);
    p = dump_utoa(p + 5, (unsigned long)getpid());
    *p++ = '.';
    *dump_utoa(p, c) = '\0';
    int fd = open(out, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    if (fd >= 0 || errno != EEXIST) return fd;
  }
  return -1; /* errno is EEXIST */
}

/* Writes all of data[0..len) to `fd`, retrying on EINTR and short writes.
 * Returns 0, or -1 with errno set. */
static int dump_write_all(int fd, const unsigned char *data, size_t len) {
  while (len > 0) {
    size_t chunk = len > (1u << 30) ? (1u << 30) : len;
    ssize_t w = write(fd, data, chunk);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -1;
    if (w == 0) {
      errno = EIO;
      return -1;
    }
    data += w;
    len -= (size_t)w;
  }
  return 0;
}

/* Flushes `fd` to stable storage. A file system that cannot sync at all
 * (EINVAL) is accepted: the rename still makes the update atomic. */
static int dump_fsync(int fd) {
  for (;;) {
    if (fsync(fd) == 0) return 0;
    if (errno == EINTR) continue;
    return errno == EINVAL ? 0 : -1;
  }
}

/* Writes the temporary file behind `fd` and closes it. Returns 0, or -1
 * with errno from the failing call (`fd` is closed either way). */
static int dump_fill_tmp(int fd, const void *data, size_t len) {
  if (dump_write_all(fd, data, len) != 0 ||
      (pyprof_fsync_files && dump_fsync(fd) != 0)) {
    int err = errno;
    close(fd);
    errno = err;
    return -1;
  }
  /* On Linux the descriptor is gone even when close() says EINTR. */
  if (close(fd) != 0 && errno != EINTR) return -1;
  return 0;
}

/* Puts the finished temporary file `tmp` in place of `path`. Both names
 * are in one directory. Async-signal-safe (system calls only).
 *
 * rename() over an existing file makes ext4 (auto_da_alloc, the default)
 * start writing the new file's data out at once: a small file took 0.43
 * ms to write and replace that way on this project's machine, 0.15 ms
 * with the exchange below (50 replaces in a C loop). Swapping the two names with renameat2(RENAME_EXCHANGE) is just
 * as atomic for readers (`path` always names a complete file, old or new)
 * and skips that; `tmp` then names the old file, which we unlink. With
 * PYPROF_FSYNC=1 the data is on disk already and plain rename() is used.
 * Where the exchange is not possible (no such target, a kernel or file
 * system without it) rename() is used. */
static int dump_replace(const char *tmp, const char *path, int exists) {
#ifdef SYS_renameat2
  if (exists && !pyprof_fsync_files &&
      syscall(SYS_renameat2, AT_FDCWD, tmp, AT_FDCWD, path,
              2 /* RENAME_EXCHANGE */) == 0) {
    unlink(tmp); /* the old file; if this fails, it stays behind */
    return 0;
  }
#else
  (void)exists;
#endif
  return rename(tmp, path);
}

/* Writes `len` bytes to `path` atomically (see dump.h). Uses only
 * async-signal-safe calls and no heap, so a crash handler may call it.
 * Refuses (EINVAL) a target that exists and is not a regular file: a
 * rename would replace it, and as root /dev/full or a FIFO is no place to
 * put a profile. */
int pyprof_write_atomic(const char *path, const void *data, size_t len) {
  char tmp[PATH_MAX + 64];
  struct stat st;
  int exists = lstat(path, &st) == 0;
  if (exists && !S_ISREG(st.st_mode)) {
    errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
    return -1;
  }
  int fd = dump_open_tmp(path, tmp);
  if (fd < 0) return -1;
  if (dump_fill_tmp(fd, data, len) != 0 ||
      dump_replace(tmp, path, exists) != 0) {
    int err = errno;
    unlink(tmp);
    errno = err;
    return -1;
  }
  return 0;
}
