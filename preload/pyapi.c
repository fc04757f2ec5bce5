/*
 * pyapi.c -- run-time resolution of the CPython API and version gates.
 */
#include "pyapi.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

pyprof_pyapi py;

#define NEED(name)                                                     \
  do {                                                                 \
    *(void **)&py.name = dlsym(RTLD_DEFAULT, #name);                   \
    if (!py.name) return -2;                                           \
  } while (0)
#define WANT(name) (*(void **)&py.name = dlsym(RTLD_DEFAULT, #name))

/* Reads a decimal number at *s, advancing it; -1 if there is none. */
static int read_num(const char **s) {
  int n = 0, digits = 0;
  while (**s >= '0' && **s <= '9' && digits < 6) {
    n = n * 10 + (**s - '0');
    (*s)++;
    digits++;
  }
  return digits ? n : -1;
}

/* The interpreter's version. 3.11+ exports it as a number (Py_Version);
 * older ones only as the text of Py_GetVersion(), "3.9.18 (main, ...".
 * Calling Py_GetVersion() and sscanf() in the constructor cost about
 * 0.3 ms of start-up on this VM (first touch of their code pages), so the
 * number is read where it exists and the text is parsed by hand. */
static int read_version(void) {
  const unsigned long *hex = dlsym(RTLD_DEFAULT, "Py_Version");
  if (hex) {
    py.major = (int)((*hex >> 24) & 0xff);
    py.minor = (int)((*hex >> 16) & 0xff);
    py.micro = (int)((*hex >> 8) & 0xff);
    return 0;
  }
  const char *v = py.Py_GetVersion();
  if ((py.major = read_num(&v)) < 0 || *v++ != '.' ||
      (py.minor = read_num(&v)) < 0)
    return -1;
  py.micro = *v == '.' ? (v++, read_num(&v)) : 0;
  if (py.micro < 0) py.micro = 0;
  return 0;
}

int pyprof_pyapi_load(void) {
  memset(&py, 0, sizeof py);
  WANT(Py_GetVersion);
  WANT(PySys_AddAuditHook);
  if (!py.Py_GetVersion || !py.PySys_AddAuditHook) return -1; /* not Python */
  if (read_version() < 0) return -2;
  if (py.major != 3 || py.minor < 8 || py.minor > 13) return -2;
  NEED(Py_IsInitialized);
  NEED(PyEval_SetProfile);
  NEED(PyObject_GetAttrString);
  NEED(PyObject_CallMethod);
  NEED(PyObject_Repr);
  NEED(PyUnicode_AsUTF8AndSize);
  NEED(PyUnicode_FromString);
  NEED(PyLong_AsLong);
  NEED(Py_IncRef);
  NEED(Py_DecRef);
  NEED(PyErr_Fetch);
  NEED(PyErr_Restore);
  NEED(PyErr_Clear);
  NEED(PyErr_Occurred);
  NEED(_PyType_Lookup);
  NEED(PyType_GetFlags);
  NEED(PyType_IsSubtype);
  NEED(PyModule_GetNameObject);
  NEED(PyImport_ImportModule);
  NEED(PyCFunction_NewEx);
  NEED(PyInterpreterState_Main);
  NEED(PyInterpreterState_ThreadHead);
  NEED(PyThreadState_Next);
  NEED(PyGILState_GetThisThreadState);
  NEED(PyGILState_Check);
  NEED(PyGILState_Ensure);
  NEED(PyEval_SaveThread);
  NEED(PyEval_RestoreThread);
  NEED(PyGILState_Release);
  NEED(Py_BuildValue);
  NEED(PyObject_Call);
  NEED(PyObject_CallFunction);
  NEED(PyEval_EvalCode);
  NEED(PyDict_New);
  NEED(PyDict_GetItemString);
  NEED(PyDict_SetItemString);
  NEED(PyEval_GetBuiltins);
  NEED(Py_CompileString);
  NEED(PyThreadState_Get);
  NEED(PyCode_Addr2Line);
  if (!(py.PyCFunction_Type = dlsym(RTLD_DEFAULT, "PyCFunction_Type")) ||
      !(py.PyModule_Type = dlsym(RTLD_DEFAULT, "PyModule_Type")) ||
      !(py.Py_None = dlsym(RTLD_DEFAULT, "_Py_NoneStruct")))
    return -2;
  if (py.minor >= 9) {
    NEED(_PyEval_SetProfile);
    NEED(PyFrame_GetCode);
  }
  /* Where a frame keeps its code object. PyFrameObject starts with
   * PyObject_VAR_HEAD then f_back through 3.10 (f_code at 32); from 3.11
   * it is PyObject_HEAD, f_back, then f_frame, the _PyInterpreterFrame,
   * whose code is its 5th word in 3.11 and its first in 3.12/3.13
   * (f_code, renamed f_executable in 3.13). Checked once in use against
   * PyFrame_GetCode (see pyprof_pyapi_check_frame). */
  /* offsetof(PyThreadState, c_profilefunc) in each version's
   * Include/cpython/pystate.h (Debian's 3.11.2 agrees with 3.11.7). */
  py.ts_profilefunc_off = py.minor <= 10 ? 56 : py.minor <= 12 ? 64 : 80;
  /* Where "tracing is on" lives before 3.12 (same headers): an int in the
   * thread state (3.8, 3.9), or the first field of the CFrame that
   * tstate->cframe points to (int in 3.10, uint8_t 0/255 in 3.11). */
  if (py.minor <= 9) py.ts_use_tracing_off = 48;
  else if (py.minor == 10) py.ts_cframe_off = 48, py.ts_root_cframe_off = 264;
  else if (py.minor == 11) py.ts_cframe_off = 56, py.ts_root_cframe_off = 336;
  py.PyCMethod_Type = dlsym(RTLD_DEFAULT, "PyCMethod_Type");
  py.PyMethodDescr_Type = dlsym(RTLD_DEFAULT, "PyMethodDescr_Type");
  py.PyFunction_Type = dlsym(RTLD_DEFAULT, "PyFunction_Type");
  py.PyMethod_Type = dlsym(RTLD_DEFAULT, "PyMethod_Type");
  if (py.minor <= 10) {
    py.frame_code_off = 32;
  } else {
    py.frame_iframe_off = 24;
    py.iframe_code_off = py.minor == 11 ? 32 : 0;
  }
  /* Frame walking for stack reports, from the same headers (offsetof in
   * Include/cpython/pystate.h, frameobject.h and, from 3.11,
   * Include/internal/pycore_frame.h and pycore_code.h; Debian's 3.11.2
   * agrees with 3.11.7). */
  py.cframe_frame_off = -1;
  if (py.minor <= 10) {
    py.ts_frame_off = 24;                          /* tstate->frame */
    py.fr_back_off = 24, py.fr_code_off = 32;      /* f_back, f_code */
    py.fr_instr_off = py.minor == 10 ? 96 : 104;   /* f_lasti */
  } else if (py.minor == 11) {
    py.ts_frame_off = 56, py.cframe_frame_off = 8; /* cframe->current_frame */
    py.fr_code_off = 32, py.fr_back_off = 48, py.fr_instr_off = 56;
    py.co_code_off = 184;                          /* co_code_adaptive */
  } else if (py.minor == 12) {
    py.ts_frame_off = 56, py.cframe_frame_off = 0;
    py.fr_code_off = 0, py.fr_back_off = 8, py.fr_instr_off = 56;
    py.co_code_off = 192;
  } else {
    py.ts_frame_off = 72;                          /* tstate->current_frame */
    py.fr_code_off = 0, py.fr_back_off = 8, py.fr_instr_off = 56;
    py.co_code_off = 200;
  }
  return 0;
}

/* 3.8 PyThreadState: prev, next, interp, frame, recursion_depth (int),
 * overflowed, recursion_critical (char), stackcheck_counter, tracing,
 * use_tracing (int), c_profilefunc, c_tracefunc, c_profileobj. */
enum { TS38_USE_TRACING = 48, TS38_PROFILEFUNC = 56, TS38_TRACEFUNC = 64,
       TS38_PROFILEOBJ = 72 };

int pyprof_set_profile(void *tstate, Py_tracefunc fn) {
  if (py._PyEval_SetProfile) {
    if (py._PyEval_SetProfile(tstate, fn, NULL) < 0) {
      py.PyErr_Clear();
      return -1;
    }
    return 0;
  }
  /* 3.8: only the current thread has an API; others are set as
   * _PyEval_SetProfile does it in 3.8's ceval.c. */
  if (tstate == py.PyGILState_GetThisThreadState()) {
    py.PyEval_SetProfile(fn, NULL);
    return 0;
  }
  char *ts = tstate;
  PyObject **obj = (PyObject **)(ts + TS38_PROFILEOBJ);
  PyObject *old = *obj;
  *(Py_tracefunc *)(ts + TS38_PROFILEFUNC) = NULL;
  *obj = NULL;
  if (old) py.Py_DecRef(old);
  *(Py_tracefunc *)(ts + TS38_PROFILEFUNC) = fn;
  *(int *)(ts + TS38_USE_TRACING) =
      fn != NULL || *(Py_tracefunc *)(ts + TS38_TRACEFUNC) != NULL;
  return 0;
}
