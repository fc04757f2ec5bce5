/*
 * dump.h -- turning a snapshot into a pstats file.
 *
 * The file is `marshal.dumps(stats)` as cProfile writes it:
 *   {(file, line, name): (cc, nc, tt, ct, {caller_label: (nc, cc, tt, ct)})}
 * followed by a second marshal object, a dict of metadata (timer, bias, …),
 * which pstats never reads (it loads one object) and `pyprof view` shows.
 * Files are written atomically: a temporary file in the same directory,
 * fsync'd if PYPROF_FSYNC asks for it, then renamed over the target.
 */
#ifndef PYPROF_DUMP_H
#define PYPROF_DUMP_H

#include "marshal.h"
#include "prof.h"

/* One metadata item: key -> string value. */
typedef struct pyprof_meta {
  const char *key;
  const char *value;
} pyprof_meta;

/* Serialises `s` (ticks converted with `tick_seconds`) followed by the
 * metadata dict into `b`. Functions without calls are left out; edges whose
 * caller or callee is left out are dropped too. Returns 0, -1 on OOM. */
int pyprof_pstats_encode(pyprof_buf *b, const pyprof_snapshot *s,
                         double tick_seconds, const pyprof_meta *meta,
                         size_t nmeta);

/* Appends the calling-context tree of `s` as a third marshal object:
 *   {"version": 1, "labels": [(file, line, name), ...],
 *    "nodes": [(parent, label, calls, own_seconds, total_seconds), ...],
 *    "truncated": n, "max_depth": d}
 * parent is an index into nodes or -1; nodes come after their parents;
 * "[truncated]" nodes have the label ("~", 0, "[truncated]").
 * Returns 0, -1 on OOM. */
int pyprof_paths_encode(pyprof_buf *b, const pyprof_snapshot *s,
                        double tick_seconds, int max_depth);

/* Whether pyprof_write_atomic() fsyncs the file before renaming it into
 * place. The rename alone is atomic for every reader and against the
 * writer's death (SIGKILL cannot lose the page cache); fsync adds
 * durability across a power loss at the price of a disk flush per dump
 * (~2 ms here). Off by default; PYPROF_FSYNC=1. */
extern int pyprof_fsync_files;

/* Writes `len` bytes to `path` atomically (tmp file [+ fsync] + rename).
 * Returns 0, or -1 with errno set; on failure nothing is left at `path`
 * that was not there before and the temporary file is removed. */
int pyprof_write_atomic(const char *path, const void *data, size_t len);

#endif
