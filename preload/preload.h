/*
 * preload.h -- what the files of preload/ share.
 *
 * main.c        constructor, configuration, start and stop, dumps
 * hook_legacy.c the PyEval_SetProfile hook and per-thread installation
 * names.c       labels of code objects and built-ins, at first sight
 * pyapi.c       run-time CPython API
 *
 * Shared state and its rules:
 * - `pyprof_on` (main.c): 1 while collecting. Written with the GIL held;
 *   read by the hook on every event.
 * - the thread-local `pyprof_tls` (hook_legacy.c): this thread's engine
 *   state; only this thread touches it.
 */
#ifndef PYPROF_PRELOAD_H
#define PYPROF_PRELOAD_H

#include <stdint.h>

#include "prof.h"
#include "pyapi.h"

extern volatile int pyprof_on;

/* names.c: registry ids for a code object / a built-in (PyCFunction),
 * computed with Python calls. GIL held; the error indicator is saved and
 * restored. Return PYPROF_FID_NONE on failure. */
pyprof_fid pyprof_name_code(PyObject *code);
pyprof_fid pyprof_name_cfunc(PyObject *fn);

/* The key of a built-in for the lookup table: its PyMethodDef mixed with
 * the type of its `self` (one PyMethodDef may serve several types, whose
 * names then differ). Hot path. */
static inline const void *pyprof_cfunc_key(PyObject *fn) {
  PyObject *self = pyprof_cfunc_self(fn);
  uintptr_t k = (uintptr_t)pyprof_cfunc_ml(fn) ^
                ((uintptr_t)(self ? pyprof_type(self) : 0) *
                 (uintptr_t)0x9E3779B97F4A7C15ull);
  return (const void *)(k ? k : 1);
}

/* hook_legacy.c */
int pyprof_hook_start(void);     /* current + existing threads; GIL held */
void pyprof_hook_stop(void);     /* removes the hook everywhere; GIL held */
pyprof_thread *pyprof_hook_self(void); /* this thread's state or NULL */

#endif
