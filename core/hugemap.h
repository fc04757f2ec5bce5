/*
 * hugemap.h -- large anonymous mappings, 2 MiB-aligned and advised to use
 * transparent huge pages (snapshot arrays in prof.c, the encoder's buffer
 * in marshal.c). On a VM a 4 KiB page fault can cost ~10 us, more than
 * filling the page; a huge page takes one fault per 2 MiB. Without THP the
 * advice is ignored and nothing is lost.
 */
#ifndef PYPROF_HUGEMAP_H
#define PYPROF_HUGEMAP_H

#include <stddef.h>

#define PYPROF_HUGE ((size_t)2 << 20)

/* `len` rounded up to a multiple of PYPROF_HUGE. */
static inline size_t pyprof_huge_round(size_t len) {
  return (len + PYPROF_HUGE - 1) & ~(PYPROF_HUGE - 1);
}

/* A fresh zeroed mapping of pyprof_huge_round(len) bytes, 2 MiB-aligned;
 * that length in *mapped (munmap it with that). NULL when the kernel
 * refuses. */
void *pyprof_huge_map(size_t len, size_t *mapped);

#endif
