/*
 * pyapi.h -- the CPython API as the library sees it: resolved at run time.
 *
 * We never link libpython (DESIGN.md principle 1) and never include one
 * version's Python.h: its inline macros (Py_INCREF, PyTuple_GET_ITEM, …)
 * bake in one version's object layout. Instead this header declares the
 * few types we need opaquely, every function is a pointer filled by
 * pyprof_pyapi_load() with dlsym(RTLD_DEFAULT), and the handful of struct
 * fields we read on the hot path are at offsets chosen per version in
 * pyapi.c and checked against the API once at start.
 */
#ifndef PYPROF_PYAPI_H
#define PYPROF_PYAPI_H

#include <stddef.h>
#include <sys/types.h>

typedef struct pyobj PyObject;   /* opaque */
typedef ssize_t Py_ssize_t;
typedef int (*Py_tracefunc)(PyObject *, void *frame, int what, PyObject *arg);
typedef int (*Py_AuditHookFunction)(const char *, PyObject *, void *);
typedef PyObject *(*PyCFunctionPtr)(PyObject *, PyObject *);

/* PyMethodDef is part of the stable ABI: this layout holds for 3.x. */
typedef struct PyMethodDef {
  const char *ml_name;
  PyCFunctionPtr ml_meth;
  int ml_flags;
  const char *ml_doc;
} PyMethodDef;
#define PY_METH_VARARGS 0x0001
#define PY_METH_NOARGS 0x0004
#define PY_METH_O 0x0008

enum { PyTrace_CALL = 0, PyTrace_EXCEPTION, PyTrace_LINE, PyTrace_RETURN,
       PyTrace_C_CALL, PyTrace_C_EXCEPTION, PyTrace_C_RETURN };

/* Functions and data resolved at run time. */
typedef struct pyprof_pyapi {
  int major, minor, micro;
  /* always present 3.8+ */
  const char *(*Py_GetVersion)(void);
  int (*PySys_AddAuditHook)(Py_AuditHookFunction, void *);
  int (*Py_IsInitialized)(void);
  void (*PyEval_SetProfile)(Py_tracefunc, PyObject *);
  PyObject *(*PyObject_GetAttrString)(PyObject *, const char *);
  PyObject *(*PyObject_CallMethod)(PyObject *, const char *, const char *, ...);
  PyObject *(*PyObject_Repr)(PyObject *);
  const char *(*PyUnicode_AsUTF8AndSize)(PyObject *, Py_ssize_t *);
  PyObject *(*PyUnicode_FromString)(const char *);
  long (*PyLong_AsLong)(PyObject *);
  void (*Py_IncRef)(PyObject *);
  void (*Py_DecRef)(PyObject *);
  void (*PyErr_Fetch)(PyObject **, PyObject **, PyObject **);
  void (*PyErr_Restore)(PyObject *, PyObject *, PyObject *);
  void (*PyErr_Clear)(void);
  PyObject *(*PyErr_Occurred)(void);
  PyObject *(*_PyType_Lookup)(void *type, PyObject *name);
  unsigned long (*PyType_GetFlags)(void *type);
  int (*PyType_IsSubtype)(void *a, void *b);
  PyObject *(*PyModule_GetNameObject)(PyObject *);
  PyObject *(*PyImport_ImportModule)(const char *);
  PyObject *(*PyCFunction_NewEx)(PyMethodDef *, PyObject *, PyObject *);
  void *(*PyInterpreterState_Main)(void);
  void *(*PyInterpreterState_ThreadHead)(void *interp);
  void *(*PyThreadState_Next)(void *tstate);
  void *(*PyGILState_GetThisThreadState)(void);
  int (*PyGILState_Check)(void);
  int (*PyGILState_Ensure)(void);
  void *(*PyEval_SaveThread)(void);
  void (*PyEval_RestoreThread)(void *);
  void (*PyGILState_Release)(int);
  PyObject *(*Py_BuildValue)(const char *, ...);
  PyObject *(*PyObject_Call)(PyObject *, PyObject *, PyObject *);
  PyObject *(*PyObject_CallFunction)(PyObject *, const char *, ...);
  PyObject *(*Py_CompileString)(const char *, const char *, int);
  PyObject *(*PyEval_EvalCode)(PyObject *, PyObject *, PyObject *);
  PyObject *(*PyDict_New)(void);
  PyObject *(*PyDict_GetItemString)(PyObject *, const char *);
  int (*PyDict_SetItemString)(PyObject *, const char *, PyObject *);
  PyObject *(*PyEval_GetBuiltins)(void);
  void *PyCFunction_Type, *PyModule_Type;
  PyObject *Py_None;
  /* 3.9+ (NULL on 3.8) */
  int (*_PyEval_SetProfile)(void *tstate, Py_tracefunc, PyObject *);
  PyObject *(*PyFrame_GetCode)(void *frame); /* new reference */
  /* Hot-path reads, chosen per version by pyprof_pyapi_load(). */
  int frame_code_off;   /* PyFrameObject -> code object (3.8-3.10) */
  int frame_iframe_off; /* PyFrameObject -> _PyInterpreterFrame (3.11+) */
  int iframe_code_off;  /* _PyInterpreterFrame -> code (3.11+) */
  int ts_profilefunc_off; /* PyThreadState -> c_profilefunc; 0 = unknown */
  int ts_use_tracing_off; /* 3.8/3.9: PyThreadState -> use_tracing (int) */
  int ts_cframe_off;      /* 3.10/3.11: PyThreadState -> cframe */
  int ts_root_cframe_off; /* 3.10/3.11: PyThreadState -> root_cframe */
  void *PyCMethod_Type; /* 3.9+, subtype of PyCFunction_Type */
  void *PyMethodDescr_Type;
  void *PyFunction_Type, *PyMethod_Type; /* for fast rejects on 3.12+ */
  /* Stack reports (pyframes.c), not the hot path. The frame a thread
   * state is running: *(ts + ts_frame_off), then through 3.12 (when
   * cframe_frame_off >= 0) *(that + cframe_frame_off). From a frame: the
   * caller's frame, the code object, and where it is in the code: f_lasti
   * (an int: a byte offset through 3.9, an instruction index in 3.10) or,
   * from 3.11, a pointer to the instruction, relative to the code object
   * plus co_code_off. */
  int ts_frame_off, cframe_frame_off;
  int fr_back_off, fr_code_off, fr_instr_off, co_code_off;
  void *(*PyThreadState_Get)(void);
  int (*PyCode_Addr2Line)(PyObject *code, int byte_offset);
} pyprof_pyapi;

extern pyprof_pyapi py;

/* Resolves everything. Returns 0 when this process has a supported
 * CPython, -1 (quietly) when it has none, -2 when it has an unsupported
 * one (the caller says so once). */
int pyprof_pyapi_load(void);

/* ob_type: the second word of every object (GIL builds, 3.8-3.13). */
static inline void *pyprof_type(const PyObject *o) {
  return ((void *const *)o)[1];
}

/* The code object of a frame (borrowed). Hot path. */
static inline void *pyprof_frame_code(void *frame) {
  if (py.frame_iframe_off) {
    char *iframe = *(char **)((char *)frame + py.frame_iframe_off);
    return *(void **)(iframe + py.iframe_code_off);
  }
  return *(void **)((char *)frame + py.frame_code_off);
}

/* PyCFunctionObject fields after PyObject_HEAD (stable 3.8-3.13). */
static inline PyMethodDef *pyprof_cfunc_ml(PyObject *f) {
  return ((PyMethodDef **)f)[2];
}
static inline PyObject *pyprof_cfunc_self(PyObject *f) {
  return ((PyObject **)f)[3];
}
static inline PyObject *pyprof_cfunc_module(PyObject *f) {
  return ((PyObject **)f)[4];
}

/* The profile function installed on `tstate`, or (Py_tracefunc)1 when
 * that cannot be known on this version. */
static inline Py_tracefunc pyprof_get_profile(void *tstate) {
  if (!py.ts_profilefunc_off) return (Py_tracefunc)1;
  return *(Py_tracefunc *)((char *)tstate + py.ts_profilefunc_off);
}

/* Whether `o` is a PyCFunction (or subtype). Hot path. */
static inline int pyprof_is_cfunc(PyObject *o) {
  void *t = pyprof_type(o);
  return t == py.PyCFunction_Type || t == py.PyCMethod_Type ||
         py.PyType_IsSubtype(t, py.PyCFunction_Type);
}

/* Installs `fn` as the profile function of thread state `tstate` (any
 * thread; GIL held). NULL removes it. Returns 0 or -1. */
int pyprof_set_profile(void *tstate, Py_tracefunc fn);

#endif
