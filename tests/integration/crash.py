#!/usr/bin/env python3
"""Crash-report and live-stack tests for libpyprof.

    crash.py --lib build/libpyprof.so --scenario segv --python 3.12 --workdir DIR

Runs one scenario against one interpreter and exits 0 (pass), 1 (fail) or 77
(skip, with the reason).  Same conventions as run.py, whose helpers it
imports (Checker, load_prof, find_interpreter, ...); stdlib only, 3.8+.

Scenarios (each function's docstring gives the exact expectations):
  segv              string_at(0) under outer->middle->leaf: report, .crash.txt, .prof, -SIGSEGV
  abort             abort() under the same, relative %p PYPROF_OUT after os.chdir: -SIGABRT
  overflow          native stack overflow in C (main thread and a threading.Thread)
  thread            a non-main thread crashes while main is in join()
  faulthandler      python -X faulthandler: our report, then faulthandler's, unchanged
  late_faulthandler faulthandler.enable() after start: its output, then ours
  sent              SIGSEGV sent with kill(2) to a sleeping process
  early             the program's first statement sends itself SIGSEGV: native frames still
  off               PYPROF_CRASH=0: nothing of ours, same death as without the library
  symbols           every `symbol+0xOFF` of the native stack lies inside that symbol
  altstack          finished threads do not keep their alternate signal stacks
  stacks            live stacks (sigqueue) while threads sleep, spin, block, hold the GIL
"""
import ctypes
import os
import pstats
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as R  # noqa: E402  (the integration driver: helpers only)

from run import CHK, Fatal, Skip, fresh_dir, load_prof, pyprof_lines  # noqa: E402

WORKLOADS = os.path.join(HERE, "workloads")
PYPROF_CLI = os.path.join(os.path.dirname(os.path.dirname(HERE)), "scripts", "pyprof")
LABELS = ("deb3.11", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13")
STACKS_REQUEST = 0x70797374
STACKS_NATIVE = 0x7079736e
NESTED = "crash_nested.py"


def W(name):
    return os.path.join(WORKLOADS, name)


# ---------------------------------------------------------------------------
# Running programs that crash

def child_limits(stack=False):
    """preexec_fn: no core files (a crash test must not fill the disk or wait
    for a core handler); with stack=True a finite 8 MiB stack, so that an
    overflow ends quickly even where the stack limit is unlimited."""
    def fn():
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if stack:
            soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
            want = 8 << 20
            if soft == resource.RLIM_INFINITY or soft > want:
                resource.setrlimit(resource.RLIMIT_STACK, (want, hard))
    return fn


def run(argv, cwd, lib=None, env=None, stack=False, timeout=20):
    """Like run.run, with no core dumps (and a finite stack if asked)."""
    full, extra = R.env_for(lib, env)
    t0 = time.time()
    proc = subprocess.Popen(argv, cwd=cwd, env=full, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=child_limits(stack))
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        res = R.Result(argv, proc.pid, "timeout", out, err, extra)
        raise Fatal("timed out after %ss: %s" % (timeout, res.describe()))
    res = R.Result(argv, proc.pid, proc.returncode, out, err, extra)
    res.seconds = time.time() - t0
    return res


def Proc(argv, cwd, lib=None, env=None):
    """run.Proc with no core dumps."""
    return R.Proc(argv, cwd, lib=lib, env=env, preexec_fn=child_limits())


kill_leftovers, wait_file = R.kill_leftovers, R.wait_file


def sigqueue(pid, sig, value):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.sigqueue.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    if libc.sigqueue(pid, sig, value) != 0:
        e = ctypes.get_errno()
        raise Fatal("sigqueue(%d, %d, %#x): %s" % (pid, sig, value, os.strerror(e)))


def build_c(src, wd, name):
    """Compile workloads/<src> into wd/<name> (-O0 -shared -fPIC)."""
    cc = R.compiler()
    if not cc:
        raise Skip("no C compiler (cc, gcc, clang) to build %s" % src)
    out = os.path.join(wd, name)
    R.compile_c([cc, "-O0", "-g", "-shared", "-fPIC", "-o", out, W(src)], src)
    return out


# ---------------------------------------------------------------------------
# The crash report

HEAD_RE = re.compile(r"pyprof: fatal signal (SIG[A-Z]+)(?: at address (0x[0-9a-f]+))?"
                     r" in thread (\d+) of process (\d+)$")
THREAD_RE = re.compile(r"  Thread (\d+)( \(crashed\))?:$")
FRAME_RE = re.compile(r"    (?P<name>\S.*?)(?: \((?P<file>.+?)(?::(?P<line>\d+)|, def line (?P<def>\d+))\))?$")
NOTE_RE = re.compile(r"    \(.+\)$")  # e.g. "(no answer within 1000 ms: ...)"
NATIVE_RE = re.compile(r"    #(?P<n>\d+) (?P<ip>0x[0-9a-f]+)"
                       r"(?: (?P<sym>[^ ]+)\+(?P<off>0x[0-9a-f]+))?(?: in (?P<lib>.+))?$")


def frame_line(m):
    """The line of a FRAME_RE match: an int (the line being executed), "def
    N" (only where the function starts is known) or None (a built-in)."""
    if m.group("line"):
        return int(m.group("line"))
    return "def " + m.group("def") if m.group("def") else None


def native_frame(m):
    return {"n": int(m.group("n")), "ip": int(m.group("ip"), 16), "sym": m.group("sym"),
            "off": int(m.group("off"), 16) if m.group("off") else None,
            "lib": m.group("lib"), "line": m.group(0)}


class Report:
    """A parsed crash report (the text from its first line to its last
    native frame).  `problems` lists every line that breaks the format."""

    def __init__(self, text):
        self.text = text
        self.problems = []
        self.sig = self.addr = None
        self.tid = self.pid = None
        self.threads = []   # [{"tid", "crashed", "frames": [(name, file, line)]}]
        self.native = []    # [{"n", "ip", "sym", "off", "lib"}]
        self.native_note = None  # "(...)" instead of frames
        self.others = {}    # {tid: [native frames as above] or [note]}
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        else:
            self.problems.append("report does not end with a newline")
        if not lines:
            self.problems.append("empty report")
            return
        m = HEAD_RE.match(lines[0])
        if not m:
            self.problems.append("first line %r does not match %s" % (lines[0], HEAD_RE.pattern))
        else:
            self.sig, self.addr = m.group(1), m.group(2)
            self.tid, self.pid = int(m.group(3)), int(m.group(4))
        if len(lines) < 2 or lines[1] != "Python stacks (innermost first):":
            self.problems.append("second line is %r, want 'Python stacks (innermost first):'"
                                 % (lines[1] if len(lines) > 1 else None))
        i, part = 2, "python"
        for line in lines[2:]:
            if part == "python":
                m = THREAD_RE.match(line)
                if m:
                    self.threads.append({"tid": int(m.group(1)), "crashed": bool(m.group(2)),
                                         "frames": []})
                    continue
                if line == "Native stack of the crashing thread:":
                    part = "native"
                    continue
                m = FRAME_RE.match(line)
                if m and self.threads and not line.startswith("    #"):
                    self.threads[-1]["frames"].append((m.group("name"), m.group("file"),
                                                       frame_line(m)))
                    continue
                self.problems.append("unexpected line in the Python stacks: %r" % line)
            elif part == "others":
                m = THREAD_RE.match(line)
                if m and not m.group(2):
                    cur = self.others.setdefault(int(m.group(1)), [])
                    continue
                m = NATIVE_RE.match(line)
                if m and self.others:
                    cur.append(native_frame(m))
                    continue
                if NOTE_RE.match(line) and self.others:
                    cur.append(line.strip())
                    continue
                if line == "  (none)" and not self.others:
                    continue
                self.problems.append("unexpected line in the other threads' native stacks: %r"
                                     % line)
            else:
                if line == "Native stacks of the other threads:":
                    part = "others"
                    continue
                m = NATIVE_RE.match(line)
                if m:
                    self.native.append(native_frame(m))
                    continue
                if NOTE_RE.match(line) and not self.native:
                    self.native_note = line.strip()  # why there are no frames
                    continue
                self.problems.append("unexpected line in the native stack: %r" % line)
        if part == "python":
            self.problems.append("no 'Native stack of the crashing thread:' line")
        elif part != "others":
            self.problems.append("no 'Native stacks of the other threads:' line")
        nums = [f["n"] for f in self.native]
        if nums != list(range(len(nums))):
            self.problems.append("native frames numbered %s, want 0..%d" % (nums, len(nums) - 1))

    def crashed(self):
        c = [t for t in self.threads if t["crashed"]]
        return c[0] if len(c) == 1 else None

    def names(self, thread):
        return [f[0] for f in thread["frames"]]


def report_from_stderr(err):
    """The report block of stderr: from the 'pyprof: fatal signal' line to
    the last native frame line after it (None if there is no such line)."""
    text = err.decode(errors="replace")
    lines = text.split("\n")
    starts = [i for i, l in enumerate(lines) if l.startswith("pyprof: fatal signal")]
    if not starts:
        return None, len(starts)
    i = starts[0]
    j = i
    while j < len(lines) and not lines[j].startswith("Native stack of the crashing thread:"):
        j += 1
    j += 1
    while j < len(lines) and (NATIVE_RE.match(lines[j]) or NOTE_RE.match(lines[j])):
        j += 1
    if j < len(lines) and lines[j] == "Native stacks of the other threads:":
        j += 1
        while j < len(lines) and (THREAD_RE.match(lines[j]) or NATIVE_RE.match(lines[j])
                                  or NOTE_RE.match(lines[j]) or lines[j] == "  (none)"):
            j += 1
    return "\n".join(lines[i:j]) + "\n", len(starts)


def check_report(res, crash_path, sig, want_pid=None):
    """The report on stderr: exactly one, well formed, for `sig`, in process
    res.pid, identical to the .crash.txt file.  Returns the Report (or None)."""
    block, n = report_from_stderr(res.err)
    if not CHK.check(block is not None, "no 'pyprof: fatal signal' line on stderr\n" + res.describe()):
        return None
    CHK.equal(n, 1, "number of 'pyprof: fatal signal' lines on stderr")
    rep = Report(block)
    for p in rep.problems:
        CHK.fail("report format: %s" % p)
    if rep.problems:
        CHK.note("report was:\n" + block)
    CHK.equal(rep.sig, signal.Signals(sig).name, "signal named in the report")
    if sig == signal.SIGABRT:
        CHK.equal(rep.addr, None, "address (SIGABRT has none)")
    CHK.equal(rep.pid, want_pid or res.pid, "process id in the report")
    if CHK.check(os.path.exists(crash_path), "no %s; files: %s"
                 % (crash_path, sorted(os.listdir(os.path.dirname(crash_path))))):
        with open(crash_path, "rb") as f:
            txt = f.read().decode(errors="replace")
        CHK.equal(txt.split("\n", 1)[0], block.split("\n", 1)[0],
                  ".crash.txt's first line vs stderr's")
        CHK.check(txt == block, ".crash.txt differs from the report on stderr\n"
                  "--- stderr ---\n%s--- %s ---\n%s" % (block, os.path.basename(crash_path), txt))
    c = rep.crashed()
    if CHK.check(c is not None, "want exactly one thread marked (crashed), got %s"
                 % [t["tid"] for t in rep.threads if t["crashed"]]):
        CHK.equal(c["tid"], rep.tid, "tid of the (crashed) thread vs the first line's")
    return rep


def call_lines(path, snippets):
    """{name: line number} of the one line of `path` that starts (after
    indentation) with snippets[name]: where a stack report must place that
    frame (the line it is executing, a call)."""
    with open(path) as f:
        lines = f.read().split("\n")
    got = {}
    for name, snip in snippets.items():
        at = [i + 1 for i, l in enumerate(lines) if l.strip().startswith(snip.strip())]
        if len(at) != 1:
            raise Fatal("%r is on lines %s of %s, want exactly one" % (snip, at, path))
        got[name] = at[0]
    return got


def stdlib_call_line(py, expr, snippet):
    """(co_filename, line) of the line of stdlib function `expr` (e.g.
    ctypes.string_at) containing `snippet`, as the interpreter under test
    has it."""
    mod = expr.rsplit(".", 1)[0]
    out = R.python_query(
        py, "import inspect, %s; f = %s; src, first = inspect.getsourcelines(f); "
        "at = [first + i for i, l in enumerate(src) if %r in l]; "
        "print(f.__code__.co_filename); print(at[0] if len(at) == 1 else -1)"
        % (mod, expr, snippet))
    fname, line = out.splitlines()
    if int(line) < 0:
        raise Fatal("%r is not on exactly one line of %s" % (snippet, expr))
    return fname, int(line)


def expect_frames(thread, want, what):
    """The thread's frames equal `want`: (name, file or None, line or None)
    each, innermost first; file None means a built-in (no location)."""
    got = thread["frames"]
    CHK.check(got == want, "%s: Python stack (innermost first)\n  want %s\n  got  %s"
              % (what, want, got))


def check_prof(path, want, what="profile", res=None):
    """The .prof loads (run.load_prof's checks and pstats.Stats) and has
    exactly `want` = {name: nc} for rows of crash workloads (any file named
    crash_*.py) and {"~name": nc} for built-ins."""
    if not CHK.check(os.path.exists(path), "%s: no %s; files %s%s"
                     % (what, path, sorted(os.listdir(os.path.dirname(path))),
                        "\n" + res.describe() if res else "")):
        return None
    stats = load_prof(path)
    try:
        ps = pstats.Stats(path)
        CHK.check(ps.total_calls > 0, "%s: pstats.Stats reads no calls" % what)
    except Exception as e:  # noqa: BLE001 (any pstats failure is a failure)
        CHK.fail("%s: pstats.Stats(%s) failed: %r" % (what, path, e))
    for name, nc in want.items():
        if name.startswith("~"):
            v = stats.get(("~", 0, name[1:]))
            CHK.equal(v[1] if v else 0, nc, "%s: %s nc" % (what, name[1:]))
            continue
        rows = [(k, v) for k, v in stats.items()
                if k[2] == name and os.path.basename(k[0]).startswith("crash_")]
        if not CHK.check(len(rows) == 1, "%s: want one row %s in a crash_*.py file, got %s"
                         % (what, name, [R.func_str(k) for k, _ in rows])):
            continue
        CHK.equal(rows[0][1][1], nc, "%s: %s nc" % (what, name))
        CHK.equal(rows[0][1][0], nc, "%s: %s cc" % (what, name))
    return stats


def wrote_lines(res, path):
    return [l for l in pyprof_lines(res.err) if l.startswith("pyprof: wrote %s " % path)]


LEAF_CALLS = {"segv": "ctypes.string_at(0)", "abort": "ctypes.CDLL(None).abort()",
              "sleep": "time.sleep(30)"}


def nested_expect(py, mode):
    """Expected crashed-thread frames of crash_nested.py in `mode`, with
    the lines each frame is at: ([string_at,] leaf, middle, outer,
    <module>) for segv, without string_at for the others."""
    wf = W(NESTED)
    cl = call_lines(wf, {"leaf": LEAF_CALLS[mode], "middle": "    leaf(mode)",
                         "outer": "    middle(mode)", "<module>": "outer(MODE)"})
    tail = [(n, wf, cl[n]) for n in ("leaf", "middle", "outer", "<module>")]
    if mode != "segv":
        return tail
    sf, sl = stdlib_call_line(py, "ctypes.string_at", "_string_at(")
    return [("string_at", sf, sl)] + tail


def libname(path):
    return os.path.basename(path or "")


# ---------------------------------------------------------------------------
# 1. segv

def scenario_segv(py, lib, wd):
    """crash_nested.py segv, PYPROF_OUT=<out>/crash.prof.  Plain python dies
    -SIGSEGV (premise); with the library: status -SIGSEGV; one report on
    stderr, first line 'pyprof: fatal signal SIGSEGV at address 0x0 in
    thread <pid> of process <pid>'; one thread listed, (crashed), Python
    stack exactly string_at (ctypes/__init__.py:first line), leaf, middle,
    outer, <module> (crash_nested.py with each code object's first line);
    native stack >= 3 frames numbered from 0, >= 1 named, frames in libc,
    in _ctypes, ffi_call in libffi, and Py_RunMain or Py_BytesMain (the
    unwinder got from the alternate stack back to the program's start);
    crash.prof.crash.txt has the same bytes as the stderr report; one
    'pyprof: wrote <out>/crash.prof' line after the report; crash.prof
    loads with pstats, helper 3 calls, outer/middle/leaf/<module> 1; the
    directory holds exactly crash.prof and crash.prof.crash.txt;
    stdout empty (nothing ran after the crash)."""
    frames = nested_expect(py, "segv")
    CHK.section = "plain"
    plain = run([py, W(NESTED), "segv"], wd)
    CHK.equal(plain.status, -signal.SIGSEGV, "plain python's status (test premise)")
    CHK.section = "pyprof"
    out = fresh_dir(os.path.join(wd, "out"))
    prof = os.path.join(out, "crash.prof")
    res = run([py, W(NESTED), "segv"], wd, lib=lib, env={"PYPROF_OUT": prof})
    CHK.note("run took %.2f s" % res.seconds)
    CHK.equal(res.status, plain.status, "exit status (as without the library)")
    CHK.equal(res.out, b"", "stdout")
    rep = check_report(res, prof + ".crash.txt", signal.SIGSEGV)
    if rep:
        CHK.equal(rep.addr, "0x0", "fault address")
        CHK.equal(rep.tid, res.pid, "crashed thread (the main thread: tid == pid)")
        CHK.equal(len(rep.threads), 1, "threads listed")
        if rep.crashed():
            expect_frames(rep.crashed(), frames, "crashed thread")
        check_native_segv(rep)
        CHK.equal(rep.others, {}, "other threads' native stacks (only our dumper exists)")
    wl = wrote_lines(res, prof)
    CHK.equal(len(wl), 1, "'pyprof: wrote %s' lines" % prof)
    check_prof(prof, {"helper": 3, "outer": 1, "middle": 1, "leaf": 1, "<module>": 1}, res=res)
    CHK.equal(sorted(os.listdir(out)), ["crash.prof", "crash.prof.crash.txt"], "files written")


def check_native_segv(rep):
    nat = rep.native
    CHK.check(len(nat) >= 3, "native stack has %d frames, want >= 3" % len(nat))
    CHK.check(any(f["sym"] for f in nat), "no named native frame:\n" + rep.text)
    libs = [libname(f["lib"]) for f in nat]
    CHK.check(any(l.startswith("libc.so") for l in libs), "no native frame in libc: %s" % libs)
    CHK.check(any(l.startswith("_ctypes") for l in libs), "no native frame in _ctypes: %s" % libs)
    CHK.check(any(f["sym"] == "ffi_call" and libname(f["lib"]).startswith("libffi") for f in nat),
              "no ffi_call frame in libffi:\n" + rep.text)
    CHK.check(any(f["sym"] in ("Py_RunMain", "Py_BytesMain") for f in nat),
              "native stack does not reach Py_RunMain/Py_BytesMain (unwinding stopped early):\n"
              + rep.text)


# ---------------------------------------------------------------------------
# 2. abort

def scenario_abort(py, lib, wd):
    """crash_nested.py abort --chdir elsewhere, run in <out> with the
    relative PYPROF_OUT=abort.%p.prof.  Plain python dies -SIGABRT
    (premise).  With the library: -SIGABRT; report 'pyprof: fatal signal
    SIGABRT in thread <pid> of process <pid>' (no address), crashed thread
    exactly leaf, middle, outer, <module>; native stack reaches abort in
    libc; <out>/abort.<pid>.prof.crash.txt (the start directory, not the
    one chdir'ed to) equals the report; abort.<pid>.prof with helper 3,
    outer/middle/leaf 1; <out>/elsewhere stays empty."""
    frames = nested_expect(py, "abort")
    CHK.section = "plain"
    plain = run([py, W(NESTED), "abort"], wd)
    CHK.equal(plain.status, -signal.SIGABRT, "plain python's status (test premise)")
    CHK.section = "pyprof"
    out = fresh_dir(os.path.join(wd, "out"))
    other = fresh_dir(os.path.join(out, "elsewhere"))
    res = run([py, W(NESTED), "abort", "--chdir", other], out, lib=lib,
              env={"PYPROF_OUT": "abort.%p.prof"})
    CHK.note("run took %.2f s" % res.seconds)
    CHK.equal(res.status, -signal.SIGABRT, "exit status")
    prof = os.path.join(out, "abort.%d.prof" % res.pid)
    rep = check_report(res, prof + ".crash.txt", signal.SIGABRT)
    if rep:
        CHK.equal(rep.tid, res.pid, "crashed thread (main)")
        CHK.equal(len(rep.threads), 1, "threads listed")
        if rep.crashed():
            expect_frames(rep.crashed(), frames, "crashed thread")
        CHK.check(len(rep.native) >= 3, "native stack has %d frames, want >= 3" % len(rep.native))
        CHK.check(any(f["sym"] == "abort" and libname(f["lib"]).startswith("libc.so")
                      for f in rep.native), "no 'abort' frame in libc:\n" + rep.text)
    CHK.equal(len(wrote_lines(res, prof)), 1, "'pyprof: wrote %s' lines" % prof)
    check_prof(prof, {"helper": 3, "outer": 1, "middle": 1, "leaf": 1}, res=res)
    CHK.equal(sorted(os.listdir(out)), sorted([os.path.basename(prof), os.path.basename(prof) +
                                              ".crash.txt", "elsewhere"]), "files in the start directory")
    CHK.equal(os.listdir(other), [], "files in the directory chdir'ed to")


# ---------------------------------------------------------------------------
# 3. overflow

def scenario_overflow(py, lib, wd):
    """crash_rec.c compiled -O0 -shared -fPIC; crash_overflow.py calls its
    recurse() from go(), with an 8 MiB stack.  main: plain python -SIGSEGV
    (premise); with the library -SIGSEGV, a complete report (native part
    included, so the handler ran on the alternate stack), crashed thread
    exactly go, <module>; native frame #0 is recurse in crash_rec.so and
    >= 3 frames are recurse; the .prof has go 1.  thread: the same in a
    threading.Thread (main in join): crashed thread go, run,
    _bootstrap_inner, _bootstrap; two threads listed; go 1 in the .prof."""
    so = build_c("crash_rec.c", wd, "crash_rec.so")
    wf = W("crash_overflow.py")
    fl = call_lines(wf, {"go": "LIB.recurse(0)", "<module>": "    go()"})
    for mode in ("main", "thread"):
        CHK.section = mode + " plain"
        argv = [py, wf, so] + (["thread"] if mode == "thread" else [])
        plain = run(argv, wd, stack=True)
        CHK.equal(plain.status, -signal.SIGSEGV, "plain python's status (test premise)")
        CHK.section = mode
        out = fresh_dir(os.path.join(wd, "out-" + mode))
        prof = os.path.join(out, "ovf.prof")
        res = run(argv, wd, lib=lib, env={"PYPROF_OUT": prof}, stack=True)
        CHK.note("run took %.2f s" % res.seconds)
        CHK.equal(res.status, -signal.SIGSEGV, "exit status")
        rep = check_report(res, prof + ".crash.txt", signal.SIGSEGV)
        if rep:
            c = rep.crashed()
            if mode == "main":
                CHK.equal(len(rep.threads), 1, "threads listed")
                if c:
                    expect_frames(c, [("go", wf, fl["go"]), ("<module>", wf, fl["<module>"])],
                                  "crashed thread")
            else:
                CHK.equal(len(rep.threads), 2, "threads listed")
                CHK.check(rep.tid != res.pid, "crashed thread is the main thread (tid == pid)")
                if c:
                    CHK.equal(rep.names(c)[:4], ["go", "run", "_bootstrap_inner", "_bootstrap"],
                              "crashed thread's frames")
            nat = rep.native
            CHK.check(nat and nat[0]["sym"] == "recurse" and libname(nat[0]["lib"]) == "crash_rec.so",
                      "native frame #0 is not recurse in crash_rec.so:\n" + rep.text)
            CHK.check(sum(f["sym"] == "recurse" for f in nat) >= 3,
                      "fewer than 3 recurse frames:\n" + rep.text)
        CHK.equal(len(wrote_lines(res, prof)), 1, "'pyprof: wrote %s' lines" % prof)
        check_prof(prof, {"go": 1}, res=res)


# ---------------------------------------------------------------------------
# 4. thread

def scenario_thread(py, lib, wd):
    """crash_thread.py: a threading.Thread crashes in string_at(0) once main
    is inside join().  -SIGSEGV; the first line names the crashing thread
    (tid != pid), exactly two threads listed; the crashed one is that tid,
    with exactly string_at, crasher, thread_main, run, _bootstrap_inner,
    _bootstrap; the other is the main thread (tid == pid), not marked, its
    stack contains join and ends with <module>; the native stacks of the
    other threads list the main thread only (our dumper thread is left out)
    with >= 3 frames, some named, reaching Py_RunMain/main; the .prof has crasher,
    thread_main, main_in_join >= 1 (it polled)."""
    wf = W("crash_thread.py")
    fl = call_lines(wf, {"crasher": "ctypes.string_at(0)", "thread_main": "    crasher()",
                         "<module>": "t.join()"})
    sf, sl = stdlib_call_line(py, "ctypes.string_at", "_string_at(")
    out = fresh_dir(os.path.join(wd, "out"))
    prof = os.path.join(out, "thr.prof")
    res = run([py, wf], wd, lib=lib, env={"PYPROF_OUT": prof})
    CHK.note("run took %.2f s" % res.seconds)
    CHK.equal(res.status, -signal.SIGSEGV, "exit status")
    rep = check_report(res, prof + ".crash.txt", signal.SIGSEGV)
    if rep:
        CHK.check(rep.tid != res.pid, "the crashing thread is reported as the main thread")
        CHK.equal(len(rep.threads), 2, "threads listed")
        c = rep.crashed()
        if c:
            got = rep.names(c)
            CHK.equal(got, ["string_at", "crasher", "thread_main", "run", "_bootstrap_inner",
                            "_bootstrap"], "crashed thread's frames")
            CHK.equal(c["frames"][:3], [("string_at", sf, sl), ("crasher", wf, fl["crasher"]),
                                        ("thread_main", wf, fl["thread_main"])],
                      "crashed thread's innermost frames with locations")
        mains = [t for t in rep.threads if t["tid"] == res.pid]
        if CHK.check(len(mains) == 1, "main thread (tid %d) not listed: %s"
                     % (res.pid, [t["tid"] for t in rep.threads])):
            m = mains[0]
            CHK.check(not m["crashed"], "main thread marked (crashed)")
            names = rep.names(m)
            CHK.check("join" in names, "main thread's stack has no join: %s" % names)
            CHK.equal(m["frames"][-1:], [("<module>", wf, fl["<module>"])], "main's outermost frame")
        CHK.equal(sorted(rep.others), [res.pid], "threads in 'Native stacks of the other threads'")
        nat = [f for f in rep.others.get(res.pid, []) if isinstance(f, dict)]
        CHK.check(len(nat) >= 3 and any(f["sym"] for f in nat),
                  "main thread's native stack: want >= 3 frames, some named:\n" + rep.text)
        CHK.check(any(f["sym"] in ("Py_RunMain", "Py_BytesMain", "main", "__libc_start_main")
                      for f in nat),
                  "main thread's native stack does not reach the program's start:\n" + rep.text)
    CHK.equal(len(wrote_lines(res, prof)), 1, "'pyprof: wrote %s' lines" % prof)
    stats = check_prof(prof, {"crasher": 1, "thread_main": 1}, res=res)
    if stats is not None:
        n = [v[1] for k, v in stats.items() if k[2] == "main_in_join" and k[0] == wf]
        CHK.check(n and n[0] >= 1, "main_in_join nc: %s" % n)


# ---------------------------------------------------------------------------
# 5. faulthandler

FH_MASK = re.compile(rb"0x[0-9a-f]+")


def fh_masked(b):
    return FH_MASK.sub(b"0xN", b)


def scenario_faulthandler(py, lib, wd):
    """python -X faulthandler crash_nested.py segv.  Plain: -SIGSEGV and
    'Fatal Python error: Segmentation fault' (premise).  With the library:
    -SIGSEGV; our report (as in segv: address 0x0, crashed thread string_at,
    leaf, middle, outer, <module>) comes first, then faulthandler's output;
    stderr without our report and 'pyprof: wrote' line equals the plain
    run's (hex numbers masked: thread ids); .crash.txt equals the report;
    .prof with helper 3."""
    frames = nested_expect(py, "segv")
    argv = [py, "-X", "faulthandler", W(NESTED), "segv"]
    CHK.section = "plain"
    plain = run(argv, wd)
    CHK.equal(plain.status, -signal.SIGSEGV, "plain status (premise)")
    CHK.check(b"Fatal Python error: Segmentation fault" in plain.err,
              "plain run has no faulthandler output (premise):\n" + plain.describe())
    CHK.section = "pyprof"
    out = fresh_dir(os.path.join(wd, "out"))
    prof = os.path.join(out, "fh.prof")
    res = run(argv, wd, lib=lib, env={"PYPROF_OUT": prof})
    CHK.equal(res.status, -signal.SIGSEGV, "exit status")
    rep = check_report(res, prof + ".crash.txt", signal.SIGSEGV)
    err = res.err.decode(errors="replace")
    fh = err.find("Fatal Python error: Segmentation fault")
    CHK.check(fh >= 0, "faulthandler's 'Fatal Python error: Segmentation fault' missing:\n"
              + res.describe())
    if rep:
        CHK.equal(rep.addr, "0x0", "fault address")
        if rep.crashed():
            expect_frames(rep.crashed(), frames, "crashed thread")
        if fh >= 0:
            CHK.check(err.find(rep.text) < fh, "our report does not come before faulthandler's")
        rest = err.replace(rep.text, "", 1)
        rest = "".join(l for l in rest.splitlines(True) if not l.startswith("pyprof: wrote "))
        CHK.check(fh_masked(rest.encode()) == fh_masked(plain.err),
                  "stderr without our report differs from the plain run's\n--- plain ---\n%s"
                  "--- ours without the report ---\n%s" % (plain.err.decode(errors="replace"), rest))
    CHK.equal(len(wrote_lines(res, prof)), 1, "'pyprof: wrote %s' lines" % prof)
    check_prof(prof, {"helper": 3, "leaf": 1}, res=res)


def scenario_late_faulthandler(py, lib, wd):
    """crash_nested.py segv --faulthandler: the program enables faulthandler
    after profiling started, so faulthandler runs first, then re-raises the
    signal with raise() into our handler.  -SIGSEGV; faulthandler's 'Fatal
    Python error: Segmentation fault' comes before our report; our report
    is complete (crashed thread string_at, leaf, middle, outer, <module>);
    .crash.txt equals it; .prof with helper 3.  The re-raised signal
    carries no fault address (si_code <= 0: its si_addr bytes hold the
    sender's pid and uid): the report must not print the pid as the fault
    address — only the true one (0x0) or none.  The handler is entered on
    faulthandler's alternate stack with 5.3 kB left and moves to a stack
    of its own: the native stack is unwound in full, as for a plain segv
    (on faulthandler's stack the report once ran off its end into the
    heap: glibc aborted, or a libunwind load walked a zeroed link_map)."""
    frames = nested_expect(py, "segv")
    out = fresh_dir(os.path.join(wd, "out"))
    prof = os.path.join(out, "late.prof")
    res = run([py, W(NESTED), "segv", "--faulthandler"], wd, lib=lib, env={"PYPROF_OUT": prof})
    CHK.equal(res.status, -signal.SIGSEGV, "exit status")
    rep = check_report(res, prof + ".crash.txt", signal.SIGSEGV)
    err = res.err.decode(errors="replace")
    fh = err.find("Fatal Python error: Segmentation fault")
    CHK.check(fh >= 0, "faulthandler's output missing:\n" + res.describe())
    if rep:
        if fh >= 0:
            CHK.check(fh < err.find(rep.text), "faulthandler's output does not come first")
        if rep.crashed():
            expect_frames(rep.crashed(), frames, "crashed thread")
        CHK.check(rep.addr in (None, "0x0"),
                  "report says 'at address %s' for a signal re-raised by faulthandler "
                  "(pid %d = %#x): si_addr is not an address when si_code <= 0"
                  % (rep.addr, res.pid, res.pid))
        CHK.check(rep.native_note is None, "no native frames: %s" % rep.native_note)
        check_native_segv(rep)
    CHK.equal(len(wrote_lines(res, prof)), 1, "'pyprof: wrote %s' lines" % prof)
    check_prof(prof, {"helper": 3, "leaf": 1}, res=res)


# ---------------------------------------------------------------------------
# 6. sent signal

def scenario_sent(py, lib, wd):
    """crash_nested.py sleep: leaf prints ready and sleeps; the test sends
    SIGSEGV with kill(2).  Plain: -SIGSEGV (premise).  With the library:
    -SIGSEGV; report in process pid, crashed thread pid, exactly
    <built-in method time.sleep>, leaf, middle, outer, <module>; no fault
    address claimed from si_addr (for a sent signal it holds the sender's
    pid and uid): the address, if any, is not this test's pid; .prof with
    helper 3, leaf 1, time.sleep 1."""
    tail = nested_expect(py, "sleep")
    for what, use_lib in (("plain", False), ("pyprof", True)):
        CHK.section = what
        out = fresh_dir(os.path.join(wd, "out-" + what))
        prof = os.path.join(out, "sent.prof")
        p = Proc([py, W(NESTED), "sleep"], wd, lib=lib if use_lib else None,
                 env={"PYPROF_OUT": prof} if use_lib else None)
        p.expect("ready", 15)
        time.sleep(0.1)
        os.kill(p.pid, signal.SIGSEGV)
        res = p.finish(15)
        CHK.equal(res.status, -signal.SIGSEGV, "exit status")
        if not use_lib:
            continue
        rep = check_report(res, prof + ".crash.txt", signal.SIGSEGV)
        if rep:
            CHK.equal(rep.tid, res.pid, "crashed thread (main)")
            if rep.crashed():
                expect_frames(rep.crashed(), [("<built-in method time.sleep>", None, None)] + tail,
                              "crashed thread")
            me = os.getpid()
            CHK.check(rep.addr is None or int(rep.addr, 16) != me,
                      "report says 'at address %s' for a SIGSEGV sent by kill(2) from pid %d "
                      "(%#x): that is si_pid read as si_addr" % (rep.addr, me, me))
        CHK.equal(len(wrote_lines(res, prof)), 1, "'pyprof: wrote %s' lines" % prof)
        check_prof(prof, {"helper": 3, "leaf": 1, "~<built-in method time.sleep>": 1}, res=res)


def scenario_sigint_in_report(py, lib, wd):
    """crash_bigprof.py 60000: SIGSEGV in C after 60000 distinct functions,
    so that the handler waits a while for the crash profile.  The test
    sends SIGINT as soon as the report's native part is on stderr, while
    the handler waits: Python's SIGINT handler (SA_ONSTACK) must not run
    over the crash handler's frames.  -SIGSEGV as without the library; a
    complete report; .prof with fn0 and fn59999.  (When the report first
    moved to a stack of its own, without blocking other signals, the
    SIGINT landed at the top of the signal stack, over the handler's
    frame: the process exited with status 1 or spun for ever.)"""
    n = 60000
    out = fresh_dir(os.path.join(wd, "out"))
    prof = os.path.join(out, "int.prof")
    p = Proc([py, W("crash_bigprof.py"), str(n)], wd, lib=lib, env={"PYPROF_OUT": prof})
    p.expect("crashing", 60)
    deadline = time.time() + 20
    while (b"Native stacks of the other threads" not in b"".join(p.err)
           and time.time() < deadline):
        time.sleep(0.001)
    p.signal(signal.SIGINT)
    res = p.finish(30)
    CHK.equal(res.status, -signal.SIGSEGV, "exit status")
    check_report(res, prof + ".crash.txt", signal.SIGSEGV)
    check_prof(prof, {"fn0": 1, "fn%d" % (n - 1): 1}, res=res)


def scenario_early(py, lib, wd):
    """python -c 'import os; os.kill(os.getpid(), 11)', five times: the
    crash comes before the dumper thread has loaded libunwind.  Each run:
    -SIGSEGV, a well-formed report whose crashing thread has native frames
    (the handler waits for the load; before, about one run in three said
    'libunwind not available'), and the .prof written."""
    for k in range(5):
        CHK.section = "run %d" % k
        out = fresh_dir(os.path.join(wd, "out%d" % k))
        prof = os.path.join(out, "early.prof")
        res = run([py, "-c", "import os; os.kill(os.getpid(), 11)"], wd, lib=lib,
                  env={"PYPROF_OUT": prof})
        CHK.equal(res.status, -signal.SIGSEGV, "exit status")
        rep = check_report(res, prof + ".crash.txt", signal.SIGSEGV)
        if rep:
            CHK.check(rep.native and any(f["sym"] for f in rep.native),
                      "no named native frame in the crashing thread's stack:\n" + rep.text)
        CHK.check(os.path.exists(prof), "no %s" % prof)


# ---------------------------------------------------------------------------
# 7. off

def scenario_off(py, lib, wd):
    """PYPROF_CRASH=0, crash_nested.py segv: status equals the plain run's
    (-SIGSEGV); no 'pyprof: fatal signal' line, no report lines, no
    *.crash.txt; stderr and stdout equal the plain run's."""
    plain = run([py, W(NESTED), "segv"], wd)
    CHK.equal(plain.status, -signal.SIGSEGV, "plain python's status (premise)")
    out = fresh_dir(os.path.join(wd, "out"))
    prof = os.path.join(out, "off.prof")
    res = run([py, W(NESTED), "segv"], wd, lib=lib, env={"PYPROF_OUT": prof, "PYPROF_CRASH": "0"})
    CHK.equal(res.status, plain.status, "exit status (as the plain run)")
    CHK.check(b"pyprof: fatal signal" not in res.err, "crash report with PYPROF_CRASH=0:\n"
              + res.describe())
    CHK.check(b"Python stacks (innermost first)" not in res.err, "report lines on stderr")
    crash = [n for n in os.listdir(out) if n.endswith(".crash.txt")]
    CHK.equal(crash, [], ".crash.txt files")
    CHK.equal(res.err, plain.err, "stderr (as the plain run)")
    CHK.equal(res.out, plain.out, "stdout (as the plain run)")
    CHK.note("files after the crash: %s" % sorted(os.listdir(out)))


# ---------------------------------------------------------------------------
# 8. symbols

def elf_symbols(path, dynamic, cache={}):
    """{name: {(value, size)}} from `nm -D -S` (dynamic) or `nm -S` (the full
    symbol table), version suffixes removed; {} if nm cannot read it."""
    key = (path, dynamic)
    if key not in cache:
        syms = {}
        args = ["-D", "-S", "--defined-only"] if dynamic else ["-S", "--defined-only"]
        try:
            p = subprocess.run(["nm"] + args + [path], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, timeout=30)
            text = p.stdout.decode(errors="replace")
        except (OSError, subprocess.TimeoutExpired):
            text = ""
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 4:
                syms.setdefault(parts[3].split("@")[0], set()).add(
                    (int(parts[0], 16), int(parts[1], 16)))
        cache[key] = syms
    return cache[key]


def symbol_sizes(path, name):
    """Sizes (> 0) nm gives for `name` in the file: the dynamic table first,
    the full table (slower) only when the name is not exported."""
    for dynamic in (True, False):
        sizes = sorted({s for _, s in elf_symbols(path, dynamic).get(name, ()) if s > 0})
        if sizes:
            return sizes
    return []


def scenario_symbols(py, lib, wd):
    """The reports of crash_nested.py segv and abort: for every native frame
    printed as `name+0xOFF in LIB` where nm -S / nm -D -S of LIB knows
    `name` with a size, OFF <= size (a return address may sit just past the
    end): otherwise the frame is attributed to an unrelated symbol that
    merely precedes it.  At least 3 frames are checkable."""
    if not shutil.which("nm"):
        raise Skip("no nm (binutils) to read symbol sizes")
    checked = 0
    for mode in ("segv", "abort"):
        CHK.section = mode
        out = fresh_dir(os.path.join(wd, "out-" + mode))
        prof = os.path.join(out, "sym.prof")
        res = run([py, W(NESTED), mode], wd, lib=lib, env={"PYPROF_OUT": prof})
        sig = signal.SIGSEGV if mode == "segv" else signal.SIGABRT
        CHK.equal(res.status, -sig, "exit status")
        rep = check_report(res, prof + ".crash.txt", sig)
        if not rep:
            continue
        for f in rep.native:
            if not (f["sym"] and f["lib"] and os.path.isfile(f["lib"])):
                continue
            sizes = symbol_sizes(f["lib"], f["sym"])
            if not sizes:
                continue
            checked += 1
            CHK.check(f["off"] <= max(sizes),
                      "frame #%d '%s+%#x' in %s: %s is only %s bytes long, so the address is "
                      "not in it (nearest preceding symbol used as the name?)"
                      % (f["n"], f["sym"], f["off"], f["lib"], f["sym"],
                         "/".join("%#x" % s for s in sizes)))
    CHK.section = ""
    CHK.check(checked >= 3, "only %d native frames could be checked against nm" % checked)


# ---------------------------------------------------------------------------
# 8b. alternate signal stacks of finished threads

def scenario_altstack(py, lib, wd):
    """crash_threads_churn.py 2000: 2000 short threads, one after another,
    then the size of the process's anonymous read-write mappings.  Each
    profiled thread gets a 64 KiB alternate signal stack; once the threads
    are gone their stacks must be too: that size with PYPROF_CRASH=1
    exceeds the PYPROF_CRASH=0 run's by less than 32 MiB (2000 leaked
    stacks would be 125 MiB; a cached 8 MiB thread stack more or less is
    noise).  Both exit 0 and write the .prof with work 2000 calls."""
    n = 2000
    vm = {}
    for crash in ("1", "0"):
        CHK.section = "PYPROF_CRASH=" + crash
        out = fresh_dir(os.path.join(wd, "out" + crash))
        prof = os.path.join(out, "churn.prof")
        res = run([py, W("crash_threads_churn.py"), str(n)], wd, lib=lib,
                  env={"PYPROF_OUT": prof, "PYPROF_CRASH": crash, "PYPROF_QUIET": "1"})
        CHK.note("run took %.2f s" % res.seconds)
        CHK.equal(res.status, 0, "exit status")
        CHK.equal(res.err, b"", "stderr")
        m = re.search(rb"anon_rw (\d+)", res.out)
        if CHK.check(m, "no anon_rw line: " + res.describe()):
            vm[crash] = int(m.group(1))
        check_prof(prof, {"work": n}, res=res)
    CHK.section = ""
    if len(vm) == 2:
        extra = vm["1"] - vm["0"]
        CHK.note("anonymous rw mappings: %d kB with crash handling, %d kB without: "
                 "%+d kB (%.1f kB per thread)"
                 % (vm["1"], vm["0"], extra, extra / float(n)))
        CHK.check(extra < 32 * 1024,
                  "%d finished threads left %d kB more anonymous memory mapped with PYPROF_CRASH=1 "
                  "(%.1f kB each: their alternate signal stacks are never unmapped)"
                  % (n, extra, extra / float(n)))


# ---------------------------------------------------------------------------
# 9. live stacks

def parse_stacks(text):
    """{tid: [frames (name, file, line)]}, {tid: [native frames or notes]}
    and problems of a .stacks.txt file (the native part only with
    --native)."""
    problems, threads, native, cur = [], {}, {}, None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    else:
        problems.append("does not end with a newline")
    if not lines or not re.match(r"Python stacks of process \d+ \(innermost first\):$", lines[0]):
        problems.append("first line %r" % (lines[0] if lines else None))
    part = threads
    for line in lines[1:]:
        if line == "Native stacks (innermost first):" and part is threads:
            part, cur = native, None
            continue
        m = THREAD_RE.match(line)
        if m:
            if m.group(2):
                problems.append("thread marked (crashed) in live stacks: %r" % line)
            cur = part.setdefault(int(m.group(1)), [])
            continue
        if part is native and re.match(r"  \(.+\)$", line):
            native.setdefault("note", []).append(line.strip())  # about all threads
            continue
        if part is native and cur is not None:
            m = NATIVE_RE.match(line)
            if m or NOTE_RE.match(line):
                cur.append(native_frame(m) if m else line.strip())
                continue
        m = FRAME_RE.match(line)
        if part is threads and m and cur is not None:
            cur.append((m.group("name"), m.group("file"), frame_line(m)))
            continue
        problems.append("unexpected line %r" % line)
    return threads, native, problems


def scenario_stacks(py, lib, wd):
    """crash_stacks.py, PYPROF_OUT=<out>/st.prof, main holding the GIL in C
    for 3 s.  When it prints 'holding' (+0.1 s) the test sigqueue()s
    SIGUSR2 with 0x70797374: <out>/st.prof.stacks.txt appears within 1.5 s
    and before the C call holding the GIL ends (it writes 'spun' from C
    just before returning); at that moment the
    directory holds only that file (no snapshot .prof, no .part).  It lists
    exactly 4 Python threads: main = holder, main, <module>; one thread =
    <built-in method time.sleep>, sleeper, run, _bootstrap_inner,
    _bootstrap; one = spinner, ...; one = blocker, ... (each ending run,
    _bootstrap_inner, _bootstrap); no (crashed) mark.  If `scripts/pyprof stacks` exists: with the
    file removed, `pyprof stacks PID` exits 0 and the file is back within
    1.5 s, listing holder again; `pyprof stacks --native PID` prints the
    file it makes, which also has a native stack for each of the 4 threads
    (main's in spin_hold of crash_spin.so while it holds the GIL, blocker's
    in libc's sleep); main's Python frames carry the lines being executed.
    The program then exits 0, prints 'done',
    stderr is 'pyprof: wrote <stacks file>' (once per request) and
    'pyprof: wrote <out>/st.prof (N functions)', and st.prof has sleeper,
    spinner, blocker, holder, main 1 each."""
    so = build_c("crash_spin.c", wd, "crash_spin.so")
    out = fresh_dir(os.path.join(wd, "out"))
    prof = os.path.join(out, "st.prof")
    spath = prof + ".stacks.txt"
    has_cli = False
    if os.path.isfile(PYPROF_CLI):
        h = subprocess.run([sys.executable, PYPROF_CLI, "stacks", "--help"], env=R.base_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        has_cli = h.returncode == 0
    p = Proc([py, W("crash_stacks.py"), so, "3000"], wd, lib=lib, env={"PYPROF_OUT": prof})
    p.expect("holding", 15)
    time.sleep(0.1)
    t0 = time.time()
    sigqueue(p.pid, signal.SIGUSR2, STACKS_REQUEST)
    t1 = wait_file(spath, 5)
    files_then = sorted(os.listdir(out))
    requests = 1
    if t1 is None:
        CHK.fail("no %s within 5 s of the request; files %s" % (spath, files_then))
    else:
        CHK.note("stacks file %.3f s after the request" % (t1 - t0))
        CHK.check(t1 - t0 < 1.5, "stacks file took %.3f s (want < 1.5 s)" % (t1 - t0))
        CHK.equal(files_then, ["st.prof.stacks.txt"], "files right after the request")
        with open(spath) as f:
            text = f.read()
        check_live_stacks(text, p.pid)

    CHK.section = "pyprof stacks"
    if not has_cli:
        CHK.note("SKIPPED: %s has no 'stacks' subcommand ('pyprof stacks --help' fails)" % PYPROF_CLI)
    elif t1 is not None:
        os.unlink(spath)
        t2 = time.time()
        cli = subprocess.run([sys.executable, PYPROF_CLI, "stacks", str(p.pid)], env=R.base_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        requests += 1
        t3 = wait_file(spath, 1.5)
        CHK.equal(cli.returncode, 0, "pyprof stacks exit status (stderr %r)" % cli.stderr)
        CHK.note("pyprof stacks printed: %r" % cli.stdout[:300])
        if CHK.check(t3 is not None, "no %s within 1.5 s of 'pyprof stacks' ending" % spath):
            CHK.note("file %.3f s after starting the command" % (t3 - t2))
            with open(spath) as f:
                check_live_stacks(f.read(), p.pid)
        CHK.section = "pyprof stacks --native"
        os.unlink(spath)
        cli = subprocess.run([sys.executable, PYPROF_CLI, "stacks", "--native", str(p.pid)],
                             env=R.base_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             timeout=30)
        requests += 1
        CHK.equal(cli.returncode, 0, "pyprof stacks --native exit status (stderr %r)" % cli.stderr)
        if CHK.check(os.path.exists(spath), "no %s after 'pyprof stacks --native'" % spath):
            with open(spath) as f:
                text = f.read()
            CHK.equal(cli.stdout.decode(errors="replace"), text, "printed vs the file")
            check_live_stacks(text, p.pid, native=True, symtab=has_symtab(py))

    CHK.section = "end"
    released, _ = p.expect_timed("spun", 10)
    if t1 is not None:
        CHK.check(t1 < released, "stacks file appeared %.3f s after the C call holding the "
                  "GIL ended: it waited for the GIL" % (t1 - released))
    res = p.finish(20)
    CHK.equal(res.status, 0, "exit status")
    CHK.check(res.out.endswith(b"done\n"), "program did not finish: " + res.describe())
    lines = pyprof_lines(res.err)
    want = ["pyprof: wrote %s" % spath] * requests
    CHK.equal([l for l in lines if l.startswith("pyprof: wrote %s" % spath)], want,
              "stacks lines on stderr")
    CHK.equal(len(wrote_lines(res, prof)), 1, "'pyprof: wrote %s (N functions)' lines" % prof)
    CHK.equal(len(lines), requests + 1, "pyprof: lines: %s" % lines)
    CHK.equal(R.non_pyprof_lines(res.err), [], "other stderr lines")
    CHK.equal(sorted(os.listdir(out)), ["st.prof", "st.prof.stacks.txt"], "files at the end")
    check_prof(prof, {"sleeper": 1, "spinner": 1, "blocker": 1, "holder": 1, "main": 1}, res=res)


def has_symtab(py):
    """Whether the interpreter's time.sleep is in an object file with a full
    symbol table (the pyenv builds' libpython; Debian's binary is stripped),
    so that a report can name static functions such as time_sleep."""
    lib = R.python_query(py, "import sysconfig, os; d = sysconfig.get_config_var('LIBDIR'); "
                         "n = sysconfig.get_config_var('INSTSONAME') or ''; "
                         "p = os.path.join(d or '', n); print(p if n and os.path.exists(p) else '')")
    if not lib:
        return False
    p = subprocess.run(["readelf", "-S", "-W", lib], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL)
    return p.returncode == 0 and b" .symtab " in p.stdout


def check_live_stacks(text, pid, native=False, symtab=False):
    """The stacks file of crash_stacks.py while main holds the GIL in C:
    exactly the 4 Python threads with their frames, main's frames at the
    lines they are executing; with `native`, a native stack for each of
    them: main in spin_hold (crash_spin.so), blocker in usleep's
    nanosleep, and, where libpython has a full symbol table, sleeper in
    time_sleep (a static function: named from the file's .symtab)."""
    threads, nat, problems = parse_stacks(text)
    for pr in problems:
        CHK.fail("stacks file: %s" % pr)
    CHK.check(text.startswith("Python stacks of process %d " % pid),
              "stacks file names another process: %r" % text[:60])
    CHK.equal(len(threads), 4, "threads listed (%s)" % sorted(threads))
    wf = W("crash_stacks.py")
    cl = call_lines(wf, {"holder": "spin_hold(HOLD_MS)", "main": "holder()",
                         "<module>": "main()"})
    CHK.equal(threads.get(pid), [(n, wf, cl[n]) for n in ("holder", "main", "<module>")],
              "main thread's stack, with the lines being executed")
    boot = ["run", "_bootstrap_inner", "_bootstrap"]
    want = {"sleeper": ["<built-in method time.sleep>", "sleeper"] + boot,
            "spinner": ["spinner"] + boot, "blocker": ["blocker"] + boot}
    others = [(k, [f[0] for f in v]) for k, v in threads.items() if k != pid]
    role = {pid: "main"}
    for fn, frames in want.items():
        has = [(k, v) for k, v in others if fn in v]
        if CHK.check(len(has) == 1, "want one thread running %s, got %s\n%s" % (fn, has, text)):
            CHK.equal(has[0][1], frames, "%s thread's stack" % fn)
            role[has[0][0]] = fn
    if not native:
        CHK.check("Native stacks" not in text, "native stacks without --native")
        return
    CHK.equal(sorted(k for k in nat if k != "note"), sorted(threads),
              "threads with native stacks vs Python threads")
    syms = {k: [f["sym"] for f in v if isinstance(f, dict)] for k, v in nat.items()}
    for tid, frames in nat.items():
        CHK.check(len(syms[tid]) >= 2, "thread %s (%s): fewer than 2 native frames: %s"
                  % (tid, role.get(tid), frames))
    libs = {k: [libname(f["lib"]) for f in v if isinstance(f, dict)] for k, v in nat.items()}
    CHK.check("spin_hold" in syms.get(pid, []) and "crash_spin.so" in libs.get(pid, []),
              "main thread's native stack has no spin_hold in crash_spin.so: %s" % nat.get(pid))
    for tid, r in role.items():
        if r == "sleeper" and symtab:  # a static function of libpython
            CHK.check("time_sleep" in syms[tid],
                      "sleeper's native stack does not name time_sleep: %s" % nat[tid])
        if r == "blocker":
            CHK.check(any(s in ("usleep", "nanosleep", "clock_nanosleep", "__GI___clock_nanosleep")
                          for s in syms[tid]) or not any(syms[tid]),
                      "blocker's native stack is not in usleep/nanosleep: %s" % nat[tid])
            CHK.check(any("libc" in l for l in libs[tid]),
                      "blocker's native stack has no libc frame: %s" % nat[tid])


# ---------------------------------------------------------------------------

def scenario_native_edge(py, lib, wd):
    """crash_native_edge.py, `pyprof stacks --native PID` once it is ready.
    blocked: a thread blocks every signal; the stacks file comes within
    2.5 s of the request, lists that thread (the tid it printed) in the
    native part with a '(no answer within 1000 ms: ...)' note and no frames,
    and the main thread with >= 2 native frames.  taken: the program handles
    SIGRTMAX-2 itself; the native part says the signal has a handler of the
    program's and lists no thread, the Python stacks are there as usual,
    and the program's handler ran 0 times.  Both: exit 0, 'done', stderr
    only 'pyprof: wrote' lines."""
    for mode in ("blocked", "taken"):
        CHK.section = mode
        out = fresh_dir(os.path.join(wd, "out-" + mode))
        prof = os.path.join(out, "edge.prof")
        spath = prof + ".stacks.txt"
        p = Proc([py, W("crash_native_edge.py"), mode], wd, lib=lib, env={"PYPROF_OUT": prof})
        line = p.expect("ready", 15)
        blocked_tid = int(line.split()[1])
        t0 = time.time()
        sigqueue(p.pid, signal.SIGUSR2, STACKS_NATIVE)
        t1 = wait_file(spath, 5)
        if CHK.check(t1 is not None, "no %s within 5 s" % spath):
            CHK.check(t1 - t0 < 2.5, "stacks file took %.2f s (want < 2.5 s)" % (t1 - t0))
            with open(spath) as f:
                text = f.read()
            threads, nat, problems = parse_stacks(text)
            for pr in problems:
                CHK.fail("stacks file: %s" % pr)
            CHK.check(threads.get(p.pid, [])[-1:] and threads[p.pid][-1][0] == "<module>",
                      "main thread's Python stack: %s" % threads.get(p.pid))
            if mode == "blocked":
                entry = nat.get(blocked_tid) or [None]
                CHK.check(isinstance(entry[0], str) and entry[0].startswith("(no answer within 1000 ms"),
                          "blocking thread's native entry: %s" % entry)
                CHK.equal(len(nat.get(blocked_tid, [])), 1, "lines for the blocking thread")
                main = [f for f in nat.get(p.pid, []) if isinstance(f, dict)]
                CHK.check(len(main) >= 2, "main thread's native stack: %s" % nat.get(p.pid))
            else:
                CHK.equal(sorted(k for k in nat if k != "note"), [], "threads in the native part")
                CHK.check(any("has a handler of the program's: not used" in n
                              for n in nat.get("note", [])),
                          "no note that the signal is the program's:\n" + text)
        res = p.finish(20)
        CHK.equal(res.status, 0, "exit status")
        CHK.check(res.out.endswith(b"handler calls 0\ndone\n"), "program output: " + res.describe())
        CHK.equal(R.non_pyprof_lines(res.err), [], "other stderr lines")


SCENARIOS = {
    "segv": scenario_segv,
    "abort": scenario_abort,
    "overflow": scenario_overflow,
    "thread": scenario_thread,
    "faulthandler": scenario_faulthandler,
    "late_faulthandler": scenario_late_faulthandler,
    "sent": scenario_sent,
    "early": scenario_early,
    "sigint_in_report": scenario_sigint_in_report,
    "off": scenario_off,
    "symbols": scenario_symbols,
    "altstack": scenario_altstack,
    "stacks": scenario_stacks,
    "native_edge": scenario_native_edge,
}


if __name__ == "__main__":
    sys.exit(R.drive(__doc__, SCENARIOS, LABELS))
