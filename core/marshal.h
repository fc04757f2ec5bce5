/*
 * marshal.h -- a writer for the subset of CPython's marshal format that a
 * pstats file needs: dict, tuple, str, int, float.
 *
 * Output goes to a growable memory buffer (large ones are mapped in huge
 * pages where the kernel offers them; see marshal.c). Failures are sticky:
 * after an allocation failure every call is a no-op and `oom` stays set, so
 * callers check once at the end. Not async-signal-safe (uses malloc/realloc
 * and mmap).
 */
#ifndef PYPROF_MARSHAL_H
#define PYPROF_MARSHAL_H

#include <stddef.h>
#include <stdint.h>

typedef struct pyprof_buf {
  unsigned char *data; /* bytes written so far (owned) */
  size_t len;          /* bytes used */
  size_t cap;          /* bytes allocated */
  int oom;             /* set once an allocation failed */
  int mapped;          /* data is an mmap of cap bytes (large buffers),
                          not from malloc: release with pyprof_buf_free */
} pyprof_buf;

void pyprof_buf_init(pyprof_buf *b);
void pyprof_buf_free(pyprof_buf *b);

void pyprof_m_dict_begin(pyprof_buf *b);            /* '{' ... */
void pyprof_m_dict_end(pyprof_buf *b);              /* ... '0' */
void pyprof_m_tuple(pyprof_buf *b, uint32_t n);     /* then n items */
void pyprof_m_list(pyprof_buf *b, uint32_t n);      /* then n items */
void pyprof_m_tuple_ref(pyprof_buf *b, uint32_t n); /* tuple, remembered */
void pyprof_m_ref(pyprof_buf *b, uint32_t idx);     /* idx-th remembered */
void pyprof_buf_reserve(pyprof_buf *b, size_t n);   /* room for n more */
void pyprof_m_str(pyprof_buf *b, const char *s, size_t n); /* UTF-8 */
void pyprof_m_str_ref(pyprof_buf *b, const char *s, size_t n); /* remembered */
void pyprof_m_int(pyprof_buf *b, int64_t v);        /* Python int */
void pyprof_m_float(pyprof_buf *b, double v);       /* Python float */
void pyprof_m_none(pyprof_buf *b);

#endif
