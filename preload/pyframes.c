/*
 * pyframes.c -- where each thread is in its Python code, for stack reports.
 *
 * Our shadow stacks know which functions are running on every thread but
 * not which line of them. The interpreter knows: each thread state points
 * to its innermost frame, frames point to their callers, and each frame
 * records the instruction it is executing. We read that chain for crash
 * reports and `pyprof stacks`, from a signal handler or from the dumper
 * thread while the owner keeps running, so every read of interpreter
 * memory goes through pyprof_safe_read(): a frame freed under us gives a
 * failed read, never a fault. The chain is then matched against the
 * shadow stack by code object, and only code objects that we hold a
 * reference to (names.c keeps every code object it has named) are handed
 * to PyCode_Addr2Line.
 *
 * Safety: pyprof_safe_read and pyprof_py_frames are async-signal-safe
 * (process_vm_readv(2), plain arithmetic). pyprof_code_line calls
 * PyCode_Addr2Line, which only decodes the code object's line table: no
 * allocation, no lock, no Python object changed; written defensively
 * rather than async-signal-safe by contract.
 */
#include <errno.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "preload.h"

static volatile int vm_read_broken; /* process_vm_readv refused: read raw */

/* Copies `n` bytes at `addr` of this process into `out`. Returns 0, or -1
 * when any of them cannot be read. Async-signal-safe. Where the kernel
 * refuses process_vm_readv altogether (seccomp, old kernel) it falls back
 * to plain loads, which can fault on a freed frame: the crash handler's
 * re-entry guard then ends the report. */
int pyprof_safe_read(void *out, const void *addr, size_t n) {
  if (!addr) return -1;
  if (!vm_read_broken) {
    struct iovec local = {out, n}, remote = {(void *)addr, n};
    ssize_t r = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    if (r == (ssize_t)n) return 0;
    if (r >= 0 || errno == EFAULT || errno == ESRCH) return -1;
    vm_read_broken = 1; /* ENOSYS, EPERM: not allowed here */
  }
  memcpy(out, addr, n);
  return 0;
}

static int read_ptr(const void *base, int off, void **out) {
  return pyprof_safe_read(out, (const char *)base + off, sizeof *out);
}

/* The interpreter frames of thread state `ts`, innermost first: their
 * code objects and byte offsets in the code. Returns how many were read
 * (at most `cap`; 0 when `ts` is unknown or unreadable). Async-signal-
 * safe. */
int pyprof_py_frames(void *ts, pyprof_pyframe *out, int cap) {
  void *frame;
  if (!ts || !py.ts_frame_off || read_ptr(ts, py.ts_frame_off, &frame) < 0)
    return 0;
  if (py.cframe_frame_off >= 0 &&
      read_ptr(frame, py.cframe_frame_off, &frame) < 0)
    return 0;
  int n = 0;
  while (frame && n < cap) {
    void *code;
    if (read_ptr(frame, py.fr_code_off, &code) < 0) break;
    int addr = -1;
    if (py.co_code_off) { /* 3.11+: a pointer into the code */
      char *instr;
      if (read_ptr(frame, py.fr_instr_off, (void **)&instr) == 0 && code) {
        long d = (long)(instr - ((char *)code + py.co_code_off));
        if (d >= -2 && d < (1L << 30)) addr = (int)d;
      }
    } else { /* f_lasti */
      int lasti;
      if (pyprof_safe_read(&lasti, (char *)frame + py.fr_instr_off,
                           sizeof lasti) == 0)
        addr = py.minor == 10 && lasti >= 0 ? lasti * 2 : lasti;
    }
    out[n].code = code;
    out[n].addr = addr;
    n++;
    if (read_ptr(frame, py.fr_back_off, &frame) < 0) break;
  }
  return n;
}

/* The line that byte offset `addr` of `code` belongs to, or 0 when
 * unknown. Only for code objects we hold a reference to (see the top). */
int pyprof_code_line(const void *code, int addr) {
  if (!code || addr < 0 || !py.PyCode_Addr2Line) return 0;
  int line = py.PyCode_Addr2Line((PyObject *)code, addr);
  return line > 0 ? line : 0;
}
