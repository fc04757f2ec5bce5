/*
 * names.c -- pstats labels for interpreter objects, at first sight.
 *
 * A label is (file, first line, name), exactly as cProfile builds it:
 * code objects give (co_filename, co_firstlineno, co_name); built-ins give
 * ("~", 0, name) with the name cProfile's normalizeUserObj() would give:
 *   "<built-in method builtins.len>"            function of a module
 *   "<method 'append' of 'list' objects>"       repr of the type's attribute
 *   "<len>" / "<mod.len>"                        function without self
 *
 * All of this runs with the GIL held and calls into Python, so it happens
 * once per object: the global cache below maps a key to its registry id
 * for every thread, and holds a reference to each code object so that its
 * address is never reused by another one while we know it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "preload.h"

#define TPFLAGS_UNICODE_SUBCLASS (1UL << 28)

/* key -> fid cache shared by all threads; guarded by cache_lock. */
typedef struct cache_slot {
  const void *key;
  pyprof_fid fid;
} cache_slot;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static cache_slot *cache;
static uint32_t cache_mask, cache_used;

/* Looks `key` up; PYPROF_FID_NONE if absent. cache_lock held. */
static pyprof_fid cache_get(const void *key) {
  if (!cache) return PYPROF_FID_NONE;
  for (uint32_t i = pyprof__hash_ptr(key) & cache_mask; cache[i].key;
       i = (i + 1) & cache_mask)
    if (cache[i].key == key) return cache[i].fid;
  return PYPROF_FID_NONE;
}

/* Adds key -> fid. cache_lock held. Failure only costs a recomputation. */
static void cache_put(const void *key, pyprof_fid fid) {
  if ((cache_used + 1) * 2 > cache_mask) {
    uint32_t nmask = cache_mask ? cache_mask * 2 + 1 : 1023;
    cache_slot *nc = calloc((size_t)nmask + 1, sizeof *nc);
    if (!nc) return;
    for (uint32_t j = 0; cache && j <= cache_mask; j++) {
      if (!cache[j].key) continue;
      uint32_t i = pyprof__hash_ptr(cache[j].key) & nmask;
      while (nc[i].key) i = (i + 1) & nmask;
      nc[i] = cache[j];
    }
    free(cache);
    cache = nc;
    cache_mask = nmask;
  }
  uint32_t i = pyprof__hash_ptr(key) & cache_mask;
  while (cache[i].key) i = (i + 1) & cache_mask;
  cache[i].key = key;
  cache[i].fid = fid;
  cache_used++;
}

/* UTF-8 of a str object, or `dflt`. Clears any error. */
static const char *utf8_or(PyObject *s, const char *dflt) {
  const char *u = s ? py.PyUnicode_AsUTF8AndSize(s, NULL) : NULL;
  if (!u) py.PyErr_Clear();
  return u ? u : dflt;
}

static int is_str(PyObject *o) {
  return o && (py.PyType_GetFlags(pyprof_type(o)) & TPFLAGS_UNICODE_SUBCLASS);
}

static int is_module(PyObject *o) {
  void *t = o ? pyprof_type(o) : NULL;
  return t && (t == py.PyModule_Type || py.PyType_IsSubtype(t, py.PyModule_Type));
}

/* The label of a code object. */
static pyprof_fid label_code(PyObject *code) {
  PyObject *file = py.PyObject_GetAttrString(code, "co_filename");
  PyObject *name = py.PyObject_GetAttrString(code, "co_name");
  PyObject *line = py.PyObject_GetAttrString(code, "co_firstlineno");
  long ln = line ? py.PyLong_AsLong(line) : 0;
  py.PyErr_Clear();
  pyprof_fid fid = pyprof_func_register(utf8_or(file, "?"), (int)ln,
                                        utf8_or(name, "?"));
  if (file) py.Py_DecRef(file);
  if (name) py.Py_DecRef(name);
  if (line) py.Py_DecRef(line);
  return fid;
}

/* The name cProfile gives a built-in function object. */
static void cfunc_name(PyObject *fn, char *buf, size_t len) {
  PyMethodDef *ml = pyprof_cfunc_ml(fn);
  PyObject *self = pyprof_cfunc_self(fn), *mod = pyprof_cfunc_module(fn);
  const char *mlname = ml && ml->ml_name ? ml->ml_name : "?";
  if (!self) {
    PyObject *modname = NULL;
    if (is_str(mod)) {
      modname = mod;
      py.Py_IncRef(modname);
    } else if (is_module(mod)) {
      modname = py.PyModule_GetNameObject(mod);
      py.PyErr_Clear();
    }
    const char *m = modname ? utf8_or(modname, NULL) : NULL;
    if (m && strcmp(m, "builtins") != 0) snprintf(buf, len, "<%s.%s>", m, mlname);
    else snprintf(buf, len, "<%s>", mlname);
    if (modname) py.Py_DecRef(modname);
    return;
  }
  PyObject *name = py.PyUnicode_FromString(mlname);
  PyObject *attr = name ? py._PyType_Lookup(pyprof_type(self), name) : NULL;
  if (name) py.Py_DecRef(name);
  if (attr) {
    py.Py_IncRef(attr);
    PyObject *repr = py.PyObject_Repr(attr);
    py.Py_DecRef(attr);
    if (repr) {
      snprintf(buf, len, "%s", utf8_or(repr, "?"));
      py.Py_DecRef(repr);
      return;
    }
  }
  py.PyErr_Clear();
  if (is_str(mod))
    snprintf(buf, len, "<built-in method %s.%s>", utf8_or(mod, "?"), mlname);
  else
    snprintf(buf, len, "<built-in method %s>", mlname);
}

static pyprof_fid label_cfunc(PyObject *fn) {
  char name[512];
  cfunc_name(fn, name, sizeof name);
  return pyprof_func_register("~", 0, name);
}

/* Shared by both kinds: cache, error state, reference. */
static pyprof_fid name_of(const void *key, PyObject *obj, int is_code) {
  pyprof_lock(&cache_lock);
  pyprof_fid fid = cache_get(key);
  pyprof_unlock(&cache_lock);
  if (fid != PYPROF_FID_NONE) return fid;

  PyObject *et, *ev, *tb;
  py.PyErr_Fetch(&et, &ev, &tb);
  fid = is_code ? label_code(obj) : label_cfunc(obj);
  py.PyErr_Restore(et, ev, tb);
  if (fid == PYPROF_FID_NONE) return fid;

  pyprof_lock(&cache_lock);
  if (cache_get(key) == PYPROF_FID_NONE) {
    cache_put(key, fid);
    if (is_code) py.Py_IncRef(obj); /* keep the address ours */
  }
  pyprof_unlock(&cache_lock);
  return fid;
}

pyprof_fid pyprof_name_code(PyObject *code) { return name_of(code, code, 1); }

pyprof_fid pyprof_name_cfunc(PyObject *fn) {
  return name_of(pyprof_cfunc_key(fn), fn, 0);
}

void pyprof_names_atfork(int phase) {
  if (phase == 0) pyprof_lock(&cache_lock);
  else pyprof_unlock(&cache_lock);
}
