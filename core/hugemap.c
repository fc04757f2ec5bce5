/*
 * hugemap.c -- see hugemap.h.
 */
#include "hugemap.h"

#include <stdint.h>
#include <sys/mman.h>

void *pyprof_huge_map(size_t len, size_t *mapped) {
  size_t n = pyprof_huge_round(len);
  /* Map one huge page more than needed and trim both ends to alignment. */
  char *p = mmap(NULL, n + PYPROF_HUGE, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return NULL;
  size_t head = (PYPROF_HUGE - ((uintptr_t)p & (PYPROF_HUGE - 1))) & (PYPROF_HUGE - 1);
  if (head) munmap(p, head);
  munmap(p + head + n, PYPROF_HUGE - head);
  p += head;
#ifdef MADV_HUGEPAGE
  madvise(p, n, MADV_HUGEPAGE); /* a hint; failure changes nothing */
#endif
  *mapped = n;
  return p;
}
