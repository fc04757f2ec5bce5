#!/usr/bin/env python3
"""Integration tests for libpyprof: real interpreters with the library preloaded.

    run.py --lib build/libpyprof.so --scenario parity --python 3.12 --workdir DIR

Runs one scenario against one interpreter and exits 0 (pass), 1 (fail) or 77
(skip: the interpreter or a tool it needs is absent; the reason is printed).
Stdlib only; the driver itself runs on Python 3.8+ and is independent of the
interpreter under test, which is only ever run as a child process.

Scenarios (see each function's docstring for the exact numbers expected):
  parity     call counts of a varied workload equal cProfile's, edge by edge
  pstats     `python -m pstats` and pstats.Stats read our file
  threads    every kind of thread is profiled
  exits      a file is written at every normal ending, status unchanged
  quietout   default file name, PYPROF_QUIET, PYPROF_OUT with %p
  badconfig  bad settings give one `pyprof:` line and change nothing else
  nonpython  a non-Python process is unaffected (interpreter-independent)
  embed      a C program embedding CPython is profiled
"""
import argparse
import glob
import io
import marshal
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOADS = os.path.join(HERE, "workloads")
SKIP = 77
CHILD_TIMEOUT = 60

# label -> glob of the interpreter; patch versions may vary.
INTERPRETERS = {
    "deb3.11": "/usr/bin/python3.11",
    "3.8": "/root/.pyenv/versions/3.8.*/bin/python3",
    "3.9": "/root/.pyenv/versions/3.9.*/bin/python3",
    "3.10": "/root/.pyenv/versions/3.10.*/bin/python3",
    "3.11": "/root/.pyenv/versions/3.11.*/bin/python3",
    "3.12": "/root/.pyenv/versions/3.12.*/bin/python3",
    "3.13": "/root/.pyenv/versions/3.13.*/bin/python3",
}


class Skip(Exception):
    """The scenario cannot run here; the message says why."""


class Fatal(Exception):
    """The scenario cannot go on (e.g. no output file to inspect)."""


# ---------------------------------------------------------------------------
# Failure bookkeeping: a scenario records every failed expectation and goes on
# as far as it can, so one run shows all that is wrong.

class Checker:
    def __init__(self):
        self.failures = []
        self.section = ""

    def fail(self, msg):
        text = "[%s] %s" % (self.section, msg) if self.section else msg
        self.failures.append(text)
        print("FAIL " + text, flush=True)

    def check(self, cond, msg):
        if not cond:
            self.fail(msg)
        return bool(cond)

    def equal(self, got, want, what):
        return self.check(got == want, "%s: expected %r, got %r" % (what, want, got))

    def note(self, msg):
        print(("[%s] " % self.section if self.section else "") + msg, flush=True)


CHK = Checker()


# ---------------------------------------------------------------------------
# Running programs

class Result:
    def __init__(self, argv, pid, status, out, err, env_extra):
        self.argv = argv
        self.pid = pid
        self.status = status        # negative: killed by that signal
        self.out = out              # bytes
        self.err = err              # bytes
        self.env_extra = env_extra

    def describe(self):
        env = " ".join("%s=%s" % kv for kv in sorted(self.env_extra.items()))
        return "%s %s -> status %s\n--- stdout ---\n%s--- stderr ---\n%s--------------" % (
            env, " ".join(shlex.quote(a) for a in self.argv), self.status,
            self.out.decode(errors="replace"), self.err.decode(errors="replace"))


def base_env():
    """The environment of every child: ours without anything that changes
    what an interpreter or the profiler does."""
    env = {}
    for k, v in os.environ.items():
        if k == "LD_PRELOAD" or k.startswith("PYPROF_") or k.startswith("PYTHON"):
            continue
        env[k] = v
    env.setdefault("PATH", "/usr/bin:/bin")
    return env


# --hook: the PYPROF_HOOK every profiled run gets (None: the default).
HOOK = None


def env_for(lib, env):
    """(full environment, what was added to the clean one): `env`, and with
    `lib` also LD_PRELOAD and the --hook in use."""
    full = base_env()
    extra = dict(env or {})
    if lib:
        extra["LD_PRELOAD"] = lib
        if HOOK:
            extra.setdefault("PYPROF_HOOK", HOOK)
    full.update(extra)
    return full, extra


def run(argv, cwd, lib=None, env=None, stdin=b"", timeout=CHILD_TIMEOUT):
    """Run argv in cwd, with `lib` preloaded if given, `env` added."""
    full, extra = env_for(lib, env)
    proc = subprocess.Popen(argv, cwd=cwd, env=full, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        res = Result(argv, proc.pid, "timeout", out, err, extra)
        raise Fatal("timed out after %ss: %s" % (timeout, res.describe()))
    return Result(argv, proc.pid, proc.returncode, out, err, extra)


# Processes the test talks to while they run (production.py, crash.py)

PROCS = []  # every Proc started, killed at the end if still alive


class Proc:
    """A child with its stdout read line by line (for "ready" markers) and
    its stderr collected, so the test can signal it while it runs."""

    def __init__(self, argv, cwd, lib=None, env=None, preexec_fn=None):
        full, self.extra = env_for(lib, env)
        self.argv = argv
        self.p = subprocess.Popen(argv, cwd=cwd, env=full, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  preexec_fn=preexec_fn)
        self.pid = self.p.pid
        PROCS.append(self)
        self.lines = queue.Queue()  # (time read, line); (time, None) at the end
        self.out = []
        self.err = []
        self.t_out = threading.Thread(target=self._read_out, daemon=True)
        self.t_err = threading.Thread(target=self._read_err, daemon=True)
        self.t_out.start()
        self.t_err.start()

    def _read_out(self):
        for line in iter(self.p.stdout.readline, b""):
            self.out.append(line)
            self.lines.put((time.time(), line.decode(errors="replace").rstrip("\n")))
        self.lines.put((time.time(), None))

    def _read_err(self):
        for chunk in iter(lambda: self.p.stderr.read1(65536), b""):
            self.err.append(chunk)

    def expect_timed(self, prefix, timeout=10):
        """(time read, line) of the next stdout line starting with prefix
        (earlier lines skipped)."""
        deadline = time.time() + timeout
        while True:
            try:
                t, line = self.lines.get(timeout=max(deadline - time.time(), 0.001))
            except queue.Empty:
                raise Fatal("waited %.0fs for a line starting %r from %s; it is still running"
                            % (timeout, prefix, " ".join(self.argv)))
            if line is None:
                self.p.wait()
                self.t_err.join(5)
                raise Fatal("waited %.0fs for a line starting %r from %s; %s"
                            % (timeout, prefix, " ".join(self.argv), self.result().describe()))
            if line.startswith(prefix):
                return t, line

    def expect(self, prefix, timeout=10):
        """The next stdout line starting with prefix (earlier lines skipped)."""
        return self.expect_timed(prefix, timeout)[1]

    def signal(self, sig):
        os.kill(self.pid, sig)

    def finish(self, timeout=20):
        try:
            self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            self.t_out.join(5)
            self.t_err.join(5)
            raise Fatal("still running after %ss: %s" % (timeout, self.result().describe()))
        self.t_out.join(10)
        self.t_err.join(10)
        return self.result()

    def result(self):
        return Result(self.argv, self.pid, self.p.returncode, b"".join(self.out),
                      b"".join(self.err), self.extra)


def kill_leftovers():
    for p in PROCS:
        if p.p.poll() is None:
            try:
                p.p.kill()
                p.p.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass


def wait_file(path, timeout):
    """Time at which path exists (polled every 2 ms), or None."""
    deadline = time.time() + timeout
    while True:
        if os.path.exists(path):
            return time.time()
        if time.time() > deadline:
            return None
        time.sleep(0.002)


def pyprof_lines(err):
    return [l for l in err.decode(errors="replace").splitlines() if l.startswith("pyprof:")]


def non_pyprof_lines(err):
    return [l for l in err.decode(errors="replace").splitlines() if not l.startswith("pyprof:")]


def fresh_dir(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.makedirs(path)
    return path


def compiler():
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return path
    return None


def compile_c(argv, what):
    """Run a compiler command; Fatal with its output when it fails."""
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        raise Fatal("compiling %s failed: %s\n%s" % (what, " ".join(argv),
                                                     p.stdout.decode(errors="replace")))


# ---------------------------------------------------------------------------
# Reading .prof files

def func_str(key):
    """pstats' way of printing a function key, with the file's base name."""
    fname, line, name = key
    if fname == "~" and line == 0:
        return name
    return "%s:%d(%s)" % (os.path.basename(fname), line, name)


def schema_problems(stats):
    """Type-check a pstats dict the way pstats and snakeviz will use it."""
    problems = []

    def key_ok(k):
        return (isinstance(k, tuple) and len(k) == 3 and isinstance(k[0], str)
                and type(k[1]) is int and isinstance(k[2], str))

    if not isinstance(stats, dict):
        return ["first marshal object is %s, not dict" % type(stats).__name__]
    for k, v in stats.items():
        if not key_ok(k):
            problems.append("bad key %r (want (str, int, str))" % (k,))
            continue
        if not (isinstance(v, tuple) and len(v) == 5):
            problems.append("%s: value %r is not a 5-tuple" % (func_str(k), v))
            continue
        cc, nc, tt, ct, callers = v
        if not (type(cc) is int and type(nc) is int and type(tt) is float
                and type(ct) is float and isinstance(callers, dict)):
            problems.append("%s: value types %s, want (int, int, float, float, dict)"
                            % (func_str(k), tuple(type(x).__name__ for x in v)))
            continue
        for ck, cv in callers.items():
            if not key_ok(ck):
                problems.append("%s: bad caller key %r" % (func_str(k), ck))
            elif not (isinstance(cv, tuple) and len(cv) == 4 and type(cv[0]) is int
                      and type(cv[1]) is int and type(cv[2]) is float
                      and type(cv[3]) is float):
                problems.append("%s: caller %s edge %r, want (int nc, int cc, float tt, float ct)"
                                % (func_str(k), func_str(ck), cv))
    return problems


def tree_problems(buf, stats):
    """Checks the optional third object, the calling-context tree: its
    shape, parents before children, labels known to the stats dict, and
    calls per label adding up to the stats' ncalls (every activation has
    exactly one node, unless truncated)."""
    try:
        tree = marshal.load(buf)
    except (EOFError, ValueError, TypeError) as e:
        return ["bytes after the metadata are not a marshal object: %s" % e]
    if not (isinstance(tree, dict) and tree.get("version") == 1):
        return ["third marshal object is not a call-path tree: %r" % (type(tree),)]
    labels, nodes = tree.get("labels"), tree.get("nodes")
    if not isinstance(labels, list) or not isinstance(nodes, list):
        return ["call-path tree without labels/nodes lists"]
    out = []
    calls = {}
    for i, n in enumerate(nodes):
        if not (isinstance(n, tuple) and len(n) == 5 and -1 <= n[0] < i
                and 0 <= n[1] < len(labels)):
            out.append("call-path node %d malformed or before its parent: %r" % (i, n))
            break
        if not (n[4] >= n[3] >= 0):
            out.append("call-path node %d: total %r < own %r" % (i, n[4], n[3]))
        calls[labels[n[1]]] = calls.get(labels[n[1]], 0) + n[2]
    if not out and tree.get("truncated") == 0 and tree.get("max_depth", 0) >= 64:
        for label, nc in calls.items():
            if nc and (label not in stats or stats[label][1] != nc):
                out.append("call paths give %s %d calls, stats %r"
                           % (label, nc, stats.get(label, (None, None))[1]))
                break
    return out


def load_prof(path):
    """First marshal object of a .prof file, after checking its shape and the
    optional trailing metadata object.  Fatal when unreadable."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise Fatal("cannot read %s: %s" % (path, e))
    buf = io.BytesIO(data)
    try:
        stats = marshal.load(buf)
    except (EOFError, ValueError, TypeError) as e:
        raise Fatal("%s (%d bytes) is not marshal data: %s" % (path, len(data), e))
    problems = schema_problems(stats)
    if buf.tell() < len(data):
        try:
            meta = marshal.load(buf)
        except (EOFError, ValueError, TypeError) as e:
            problems.append("bytes after the stats dict are not a marshal object: %s" % e)
        else:
            if not (isinstance(meta, dict) and all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in meta.items())):
                problems.append("second marshal object is not a dict of str->str: %r" % (meta,))
            if buf.tell() < len(data):
                problems.extend(tree_problems(buf, stats))
            if buf.tell() != len(data):
                problems.append("%d stray bytes after the call-path object"
                                % (len(data) - buf.tell()))
    if problems:
        for p in problems[:30]:
            CHK.fail("%s: %s" % (os.path.basename(path), p))
        if not isinstance(stats, dict):
            raise Fatal("%s is unusable" % path)
    return stats


def rows_named(stats, filename_suffix, name):
    """Rows whose file ends with filename_suffix and whose function is name."""
    return [(k, v) for k, v in stats.items()
            if k[2] == name and k[0].endswith(filename_suffix)]


def expect_calls(stats, filename_suffix, name, nc, cc=None, what=""):
    """Exactly one row for name in that file, with nc (and cc) calls."""
    rows = rows_named(stats, filename_suffix, name)
    label = "%s%s calls" % (what + ": " if what else "", name)
    if len(rows) != 1:
        CHK.fail("%s: expected one row for %s in %s, found %d %s"
                 % (label, name, filename_suffix, len(rows), [func_str(k) for k, _ in rows]))
        return None
    key, (rcc, rnc, _, _, _) = rows[0]
    CHK.equal(rnc, nc, label + " (nc)")
    if cc is not None:
        CHK.equal(rcc, cc, label + " (cc)")
    return key


def find_interpreter(label):
    pattern = INTERPRETERS.get(label)
    if pattern is None:
        raise SystemExit("unknown --python label %r (known: %s)" % (label, ", ".join(INTERPRETERS)))
    found = sorted(p for p in glob.glob(pattern) if os.access(p, os.X_OK))
    if not found:
        raise Skip("interpreter %s (%s) is not installed" % (label, pattern))
    return found[-1]


def python_query(py, code):
    p = subprocess.run([py, "-c", code], env=base_env(), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=CHILD_TIMEOUT)
    if p.returncode != 0:
        raise Fatal("%s -c %r failed: %s" % (py, code, p.stderr.decode(errors="replace")))
    return p.stdout.decode().strip()


def check_same_output(plain, ours, what, compare_stderr=True):
    """stdout and status equal; stderr equal apart from `pyprof:` lines."""
    CHK.check(ours.out == plain.out, "%s: stdout differs from the plain run\n  plain: %r\n  ours:  %r"
              % (what, plain.out, ours.out))
    CHK.check(ours.status == plain.status, "%s: exit status %s, plain run gave %s\n%s"
              % (what, ours.status, plain.status, ours.describe()))
    if compare_stderr:
        CHK.check(non_pyprof_lines(ours.err) == non_pyprof_lines(plain.err),
                  "%s: stderr (without pyprof: lines) differs from the plain run\n"
                  "--- plain ---\n%s\n--- ours ---\n%s"
                  % (what, plain.err.decode(errors="replace"), ours.err.decode(errors="replace")))


# ---------------------------------------------------------------------------
# a. parity

PARITY = os.path.join(WORKLOADS, "parity_workload.py")

# Counts that hold on every version (the workload is written for them); the
# rest of the comparison takes cProfile of the same interpreter as the truth.
PARITY_FIXED = [
    # name, nc, cc
    ("leaf", 110, 110), ("middle", 50, 50), ("plain_calls", 1, 1),
    ("fib", 1973, 1), ("run_fib", 1, 1),
    ("is_even", 11, 1), ("is_odd", 10, 1),
    ("async_leaf", 16, 16), ("async_pair", 16, 16), ("run_asyncio", 1, 1),
    ("raise_deep", 20, 5), ("catch_higher", 1, 1),
    ("__getattr__", 3, 3), ("fahrenheit", 4, 4), ("wrapper", 6, 6),
    ("decorated_add", 6, 6), ("describe", 3, 3), ("helper", 3, 3),
    ("triangle", 1, 1), ("unit", 3, 3), ("objects", 1, 1), ("functional", 1, 1),
    ("main", 1, 1), ("<module>", 1, 1),
]


def parity_diff(ref, ours, wfile, python_only=False):
    """Lines describing every difference in counts for the workload file.
    python_only (PYPROF_HOOK=eval, which sees no built-ins): rows must
    still be equal; an edge between two workload functions must be in ours
    with at least cProfile's counts (a call made through a built-in, e.g.
    map(f, ...) in g, is g -> f for us, g -> map -> f for cProfile), and
    edges to built-ins are not compared."""
    lines = []
    rows = sorted({k for k in list(ref) + list(ours) if k[0] == wfile}, key=lambda k: (k[1], k[2]))
    for k in rows:
        r, o = ref.get(k), ours.get(k)
        rv = "cc=%d nc=%d" % (r[0], r[1]) if r else "missing"
        ov = "cc=%d nc=%d" % (o[0], o[1]) if o else "missing"
        if rv != ov:
            lines.append("  row  %-45s cProfile %-18s pyprof %s" % (func_str(k), rv, ov))
    # Edges into the workload's <module> come from cProfile's exec: they are
    # never compared (their caller is not in the workload file).
    edges = {}
    for side, stats in (("ref", ref), ("ours", ours)):
        for callee, v in stats.items():
            for caller, e in v[4].items():
                if caller[0] == wfile:
                    edges.setdefault((caller, callee), {})[side] = e
    for (caller, callee), sides in sorted(edges.items(),
                                          key=lambda it: (it[0][0][1], it[0][1][1], it[0][1][2])):
        r, o = sides.get("ref"), sides.get("ours")
        rv = "nc=%d cc=%d" % (r[0], r[1]) if r else "missing"
        ov = "nc=%d cc=%d" % (o[0], o[1]) if o else "missing"
        if python_only:
            if callee[0] == "~" or not r:
                continue
            if o and o[0] >= r[0] and o[1] >= r[1]:
                continue
            lines.append("  edge %-28s -> %-45s cProfile %-18s pyprof %s (want at least cProfile's)"
                         % (func_str(caller), func_str(callee), rv, ov))
            continue
        if rv != ov:
            lines.append("  edge %-28s -> %-45s cProfile %-18s pyprof %s"
                         % (func_str(caller), func_str(callee), rv, ov))
    return lines


def scenario_parity(py, lib, wd):
    """Counts of every workload function and every edge leaving one equal
    cProfile's on the same interpreter; fixed counts in PARITY_FIXED; ct >= tt
    >= 0 everywhere; fib recursive (nc > cc) and its ct counted once."""
    CHK.section = "cProfile reference"
    ref_path = os.path.join(wd, "ref.prof")
    ref_run = run([py, "-m", "cProfile", "-o", ref_path, PARITY], wd)
    if ref_run.status != 0:
        raise Fatal("cProfile run failed: " + ref_run.describe())
    ref = load_prof(ref_path)
    for name, nc, cc in PARITY_FIXED:  # guards the workload itself
        expect_calls(ref, PARITY, name, nc, cc, what="cProfile")

    CHK.section = "pyprof run"
    ours_path = os.path.join(wd, "ours.prof")
    plain = run([py, PARITY], wd)
    res = run([py, PARITY], wd, lib=lib, env={"PYPROF_OUT": ours_path})
    check_same_output(plain, res, "parity workload")
    CHK.equal(len(pyprof_lines(res.err)), 1, "number of pyprof: lines on stderr")
    if not os.path.exists(ours_path):
        raise Fatal("no profile written at %s\n%s" % (ours_path, res.describe()))
    ours = load_prof(ours_path)

    CHK.section = "fixed counts"
    for name, nc, cc in PARITY_FIXED:
        expect_calls(ours, PARITY, name, nc, cc)

    CHK.section = "parity with cProfile"
    if HOOK == "eval":
        builtins = [func_str(k) for k in ours if k[0] == "~"]
        CHK.equal(builtins, [], "built-in rows under PYPROF_HOOK=eval")
    diff = parity_diff(ref, ours, PARITY, python_only=HOOK == "eval")
    if diff:
        CHK.fail("%d differences in call counts (cProfile vs pyprof) for %s:\n%s"
                 % (len(diff), os.path.basename(PARITY), "\n".join(diff)))
    else:
        CHK.note("%d workload rows and their outgoing edges match cProfile"
                 % len([k for k in ref if k[0] == PARITY]))

    CHK.section = "times"
    bad = []
    for k, (cc, nc, tt, ct, _) in ours.items():
        if not (ct >= tt >= 0.0):
            bad.append("  %s tt=%r ct=%r" % (func_str(k), tt, ct))
        if not (nc >= 1 and 0 <= cc <= nc):
            bad.append("  %s cc=%d nc=%d (want 0 <= cc <= nc, nc >= 1)" % (func_str(k), cc, nc))
    CHK.check(not bad, "%d rows break ct >= tt >= 0 or cc <= nc:\n%s" % (len(bad), "\n".join(bad[:40])))
    fib = rows_named(ours, PARITY, "fib")
    run_fib = rows_named(ours, PARITY, "run_fib")
    if len(fib) == 1 and len(run_fib) == 1:
        fk, (fcc, fnc, ftt, fct, fcallers) = fib[0]
        rk, (_, _, rtt, rct, _) = run_fib[0]
        CHK.check(fnc > fcc, "fib: nc=%d should exceed cc=%d (recursive calls)" % (fnc, fcc))
        CHK.check(fct <= rct, "fib: ct=%r exceeds ct=%r of its only top-level caller run_fib "
                  "(recursive time counted more than once?)" % (fct, rct))
        CHK.check(ftt <= fct, "fib: tt=%r > ct=%r" % (ftt, fct))
        edge = fcallers.get(rk)
        if CHK.check(edge is not None, "fib has no caller edge from run_fib"):
            CHK.check(edge[3] <= rct and edge[3] <= fct + 1e-12,
                      "edge run_fib->fib ct=%r, exceeds fib ct=%r or run_fib ct=%r"
                      % (edge[3], fct, rct))


# ---------------------------------------------------------------------------
# b. pstats

def scenario_pstats(py, lib, wd):
    """`python -m pstats ours.prof` exits 0 and lists the workload's functions;
    pstats.Stats in the interpreter under test loads the file, and its
    total_calls / prim_calls equal the sums of nc / cc in the file."""
    ours_path = os.path.join(wd, "ours.prof")
    res = run([py, PARITY], wd, lib=lib, env={"PYPROF_OUT": ours_path, "PYPROF_QUIET": "1"})
    CHK.equal(res.status, 0, "workload exit status")
    if not os.path.exists(ours_path):
        raise Fatal("no profile written at %s\n%s" % (ours_path, res.describe()))
    stats = load_prof(ours_path)
    total_nc = sum(v[1] for v in stats.values())
    total_cc = sum(v[0] for v in stats.values())

    CHK.section = "python -m pstats"
    browse = run([py, "-m", "pstats", ours_path], wd,
                 stdin=b"stats 5\nsort cumulative\nstats 5\nstats parity_workload\nquit\n")
    out = browse.out.decode(errors="replace")
    CHK.equal(browse.status, 0, "python -m pstats exit status")
    CHK.check(b"Traceback" not in browse.out + browse.err,
              "python -m pstats raised:\n" + browse.describe())
    CHK.check("%d function calls" % total_nc in out,
              "pstats header does not say '%d function calls':\n%s" % (total_nc, out[:2000]))
    for name in ("(fib)", "(is_even)", "(is_odd)", "(plain_calls)", "(async_pair)", "(main)",
                 "(<module>)", "(__getattr__)", "(fahrenheit)"):
        CHK.check(name in out, "pstats listing lacks %s:\n%s" % (name, out[:3000]))

    CHK.section = "pstats.Stats"
    code = ("import pstats, io, sys\n"
            "s = pstats.Stats(sys.argv[1], stream=io.StringIO())\n"
            "counts = (s.total_calls, s.prim_calls, len(s.stats))\n"
            "s.sort_stats('cumulative', 'name').print_stats(10)\n"
            "s.print_callers('fib'); s.print_callees('main')\n"
            "s.strip_dirs().sort_stats('tottime').print_stats(5)\n"
            "print(*counts)\n")
    q = run([py, "-c", code, ours_path], wd)
    if CHK.equal(q.status, 0, "pstats.Stats script exit status") and q.status == 0:
        got = q.out.decode().split()
        CHK.equal([int(x) for x in got[-3:]], [total_nc, total_cc, len(stats)],
                  "pstats.Stats total_calls, prim_calls, rows")
    else:
        CHK.fail(q.describe())


# ---------------------------------------------------------------------------
# c. threads

THREADS = os.path.join(WORKLOADS, "threads_workload.py")


def scenario_threads(py, lib, wd):
    """work 4000 (4 threading.Thread x 1000), work2 1000 (2 _thread x 500),
    early_handle 300 (thread started early in the script), pre_handle 200
    (thread started by sitecustomize before profiling), c_callback 250 (two
    pthreads created in C calling in with PyGILState_Ensure)."""
    site = fresh_dir(os.path.join(wd, "site"))
    shutil.copy(os.path.join(WORKLOADS, "threads_sitecustomize.py"), os.path.join(site, "sitecustomize.py"))
    env = {"PYTHONPATH": site, "PYTHONDONTWRITEBYTECODE": "1"}

    cthread = "-"
    cc = compiler()
    include = python_query(py, "import sysconfig; print(sysconfig.get_paths()['include'])")
    if cc is None:
        CHK.note("no C compiler: the C-created thread part is skipped")
    elif not os.path.exists(os.path.join(include, "Python.h")):
        CHK.note("no Python.h in %s: the C-created thread part is skipped" % include)
    else:
        cthread = os.path.join(wd, "cthread.so")
        compile_c([cc, "-shared", "-fPIC", "-O1", "-I" + include,
                   os.path.join(WORKLOADS, "cthread.c"), "-o", cthread, "-lpthread"], "cthread.c")

    plain = run([py, THREADS, cthread], wd, env=env)
    if plain.status != 0 or b"pre-profiling thread ran" not in plain.out:
        raise Fatal("the workload fails without the library: " + plain.describe())
    out_path = os.path.join(wd, "threads.prof")
    env_ours = dict(env, PYPROF_OUT=out_path)
    res = run([py, THREADS, cthread], wd, lib=lib, env=env_ours)
    check_same_output(plain, res, "threads workload")
    if not os.path.exists(out_path):
        raise Fatal("no profile written at %s\n%s" % (out_path, res.describe()))
    stats = load_prof(out_path)
    f = os.path.basename(THREADS)

    CHK.section = "threading.Thread"
    expect_calls(stats, f, "work", 4000, 4000)
    expect_calls(stats, f, "worker", 4, 4)
    CHK.section = "_thread.start_new_thread"
    expect_calls(stats, f, "work2", 1000, 1000)
    expect_calls(stats, f, "worker2", 2, 2)
    CHK.section = "early long-lived thread"
    expect_calls(stats, f, "early_handle", 300, 300)
    expect_calls(stats, f, "early_loop", 1, 1)
    CHK.section = "thread started before profiling"
    expect_calls(stats, "sitecustomize.py", "pre_handle", 200, 200)
    CHK.section = "edges"
    for caller, callee, nc in (("worker", "work", 4000), ("worker2", "work2", 1000),
                               ("early_loop", "early_handle", 300)):
        rows = rows_named(stats, f, callee)
        callers = rows_named(stats, f, caller)
        if len(rows) == 1 and len(callers) == 1:
            edge = rows[0][1][4].get(callers[0][0])
            CHK.equal(edge[0] if edge else None, nc, "edge %s -> %s nc" % (caller, callee))
    if cthread != "-":
        CHK.section = "threads created in C (PyGILState_Ensure)"
        expect_calls(stats, f, "c_callback", 250, 250)


# ---------------------------------------------------------------------------
# d. exits

EXITS = os.path.join(WORKLOADS, "exits_workload.py")


def scenario_exits(py, lib, wd):
    """For each ending (end 0, exit3 3, raise 1 with traceback, kbint as plain
    python: -SIGINT, delexit: os._exit(5) in a __del__ during finalization),
    and end and delexit again after calling 20000 more functions (a final
    profile that takes a while to write, and must be whole however the
    process ends): file written with marker 7 calls and
    main 1 (and the 20000 fn* rows); stdout, status and stderr (apart
    from the pyprof: line) as without the library."""
    expected_status = {"end": 0, "exit3": 3, "raise": 1, "kbint": -signal.SIGINT,
                       "delexit": 5, "end+20000": 0, "delexit+20000": 5}
    for mode, want in expected_status.items():
        CHK.section = mode
        args = mode.split("+")
        plain = run([py, EXITS] + args, wd)
        CHK.equal(plain.status, want, "plain python status for %s" % mode)
        out_path = os.path.join(wd, "exits-%s.prof" % mode)
        res = run([py, EXITS] + args, wd, lib=lib, env={"PYPROF_OUT": out_path})
        check_same_output(plain, res, mode)
        if mode in ("raise", "kbint"):
            CHK.check(b"Traceback (most recent call last)" in res.err,
                      "%s: no traceback on stderr:\n%s" % (mode, res.describe()))
        CHK.equal(len(pyprof_lines(res.err)), 1, "%s: number of pyprof: lines" % mode)
        if not CHK.check(os.path.exists(out_path), "%s: no profile written at %s\n%s"
                         % (mode, out_path, res.describe())):
            continue
        try:
            stats = load_prof(out_path)
        except Fatal as e:
            CHK.fail(str(e))
            continue
        expect_calls(stats, "exits_workload.py", "marker", 7, 7, what=mode)
        expect_calls(stats, "exits_workload.py", "main", 1, 1, what=mode)
        if len(args) > 1:
            fns = sum(1 for k in stats if re.match(r"fn\d+$", k[2]))
            CHK.equal(fns, int(args[1]), "%s: fn* rows" % mode)
        if mode in ("raise", "kbint"):
            expect_calls(stats, "exits_workload.py", "fail", 1, 1, what=mode)


# ---------------------------------------------------------------------------
# e. quiet / out

SMALL = os.path.join(WORKLOADS, "small_workload.py")


def check_small_profile(path, what):
    if not CHK.check(os.path.exists(path), "%s: no profile at %s" % (what, path)):
        return
    try:
        stats = load_prof(path)
    except Fatal as e:
        CHK.fail("%s: %s" % (what, e))
        return
    expect_calls(stats, "small_workload.py", "tick", 5, 5, what=what)


def scenario_quietout(py, lib, wd):
    """default: ./pyprof.<pid>.prof and one stderr line naming it; after a
    chdir still in the starting directory; PYPROF_QUIET=1: empty stderr;
    PYPROF_OUT=out-%p.prof and an absolute PYPROF_OUT with %p in the name."""
    plain = run([py, SMALL], wd)

    CHK.section = "default name"
    d = fresh_dir(os.path.join(wd, "default"))
    res = run([py, SMALL], d, lib=lib)
    check_same_output(plain, res, "default")
    name = "pyprof.%d.prof" % res.pid
    lines = pyprof_lines(res.err)
    CHK.check(len(lines) == 1 and lines[0].startswith("pyprof: ") and name in lines[0],
              "expected one stderr line 'pyprof: ...%s...', got %r" % (name, res.err))
    CHK.equal(sorted(os.listdir(d)), [name], "files in the working directory")
    check_small_profile(os.path.join(d, name), "default")

    CHK.section = "chdir before exit"
    d = fresh_dir(os.path.join(wd, "chdir"))
    res = run([py, SMALL, "chdir"], d, lib=lib)
    CHK.equal(res.status, 0, "exit status")
    name = "pyprof.%d.prof" % res.pid
    CHK.check(os.path.exists(os.path.join(d, name)),
              "no %s in the starting directory; files: %s, in elsewhere/: %s"
              % (name, os.listdir(d), os.listdir(os.path.join(d, "elsewhere"))
                 if os.path.isdir(os.path.join(d, "elsewhere")) else "-"))
    CHK.check(not os.path.exists(os.path.join(d, "elsewhere", name)),
              "%s written in the directory the script moved to" % name)
    check_small_profile(os.path.join(d, name), "chdir")

    CHK.section = "PYPROF_QUIET=1"
    d = fresh_dir(os.path.join(wd, "quiet"))
    res = run([py, SMALL], d, lib=lib, env={"PYPROF_QUIET": "1"})
    CHK.equal(res.out, plain.out, "stdout")
    CHK.equal(res.status, 0, "exit status")
    CHK.equal(res.err, b"", "stderr with PYPROF_QUIET=1")
    check_small_profile(os.path.join(d, "pyprof.%d.prof" % res.pid), "quiet")

    CHK.section = "PYPROF_OUT=out-%p.prof"
    d = fresh_dir(os.path.join(wd, "out"))
    res = run([py, SMALL], d, lib=lib, env={"PYPROF_OUT": "out-%p.prof"})
    check_same_output(plain, res, "PYPROF_OUT relative")
    name = "out-%d.prof" % res.pid
    lines = pyprof_lines(res.err)
    CHK.check(len(lines) == 1 and name in lines[0],
              "expected one stderr line naming %s, got %r" % (name, res.err))
    CHK.equal(sorted(os.listdir(d)), [name], "files in the working directory")
    check_small_profile(os.path.join(d, name), "PYPROF_OUT relative")

    CHK.section = "PYPROF_OUT absolute"
    d = fresh_dir(os.path.join(wd, "outabs"))
    target = fresh_dir(os.path.join(wd, "outabs-target"))
    res = run([py, SMALL], d, lib=lib, env={"PYPROF_OUT": os.path.join(target, "p-%p-x.prof"),
                                            "PYPROF_QUIET": "1"})
    CHK.equal(res.err, b"", "stderr with PYPROF_QUIET=1")
    CHK.equal(os.listdir(d), [], "files in the working directory")
    check_small_profile(os.path.join(target, "p-%d-x.prof" % res.pid), "PYPROF_OUT absolute")


# ---------------------------------------------------------------------------
# f. badconfig

def scenario_badconfig(py, lib, wd):
    """Each bad setting: stdout and status as the plain run, stderr = plain
    stderr + exactly one `pyprof:` line; bad values write no file; an
    unwritable PYPROF_OUT says it could not write."""
    plain = run([py, SMALL], wd)
    cases = [
        ("PYPROF_TIMER=bogus", {"PYPROF_TIMER": "bogus"}, "bad value"),
        ("PYPROF_QUIET=maybe", {"PYPROF_QUIET": "maybe"}, "bad value"),
        # QUIET=1 so that a profile written anyway (unknown variables may be
        # ignored after the warning) adds no second line.
        ("PYPROF_FOO=1", {"PYPROF_FOO": "1", "PYPROF_QUIET": "1"}, "unknown"),
        ("PYPROF_OUT=/nonexistent/dir/x.prof", {"PYPROF_OUT": "/nonexistent/dir/x.prof"}, "unwritable"),
    ]
    for i, (what, env, kind) in enumerate(cases):
        CHK.section = what
        d = fresh_dir(os.path.join(wd, "case%d" % i))
        res = run([py, SMALL], d, lib=lib, env=env)
        CHK.equal(res.out, plain.out, "stdout")
        CHK.equal(res.status, plain.status, "exit status")
        got = res.err.decode(errors="replace").splitlines()
        want = plain.err.decode(errors="replace").splitlines()
        extra = [l for l in got if l.startswith("pyprof:")]
        CHK.check(len(extra) == 1 and [l for l in got if not l.startswith("pyprof:")] == want,
                  "stderr should be the plain run's plus exactly one 'pyprof:' line; got %r" % res.err)
        if kind == "bad value":
            CHK.equal(sorted(os.listdir(d)), [], "files written (the program must run unprofiled)")
            if extra:
                key, _, val = what.partition("=")
                CHK.check(key in extra[0] and val in extra[0],
                          "the line should name %s and the value %r: %r" % (key, val, extra[0]))
        if kind == "unwritable" and extra:
            CHK.check(re.search(r"(could ?n[o']t|cannot|can't|unable to|failed to) (write|create|open)",
                                extra[0], re.I),
                      "the line should say it could not write: %r" % extra[0])
            CHK.check("/nonexistent/dir" in extra[0], "the line should name the path: %r" % extra[0])
        if kind == "unknown" and extra:
            CHK.check("PYPROF_FOO" in extra[0], "the line should name PYPROF_FOO: %r" % extra[0])


# ---------------------------------------------------------------------------
# g. nonpython

def proc_snapshot(pid):
    """Threads, open fds, caught signals and mapped libpyprof of a process."""
    def read(p):
        with open("/proc/%d/%s" % (pid, p)) as f:
            return f.read()
    status = read("status")
    sigcgt = re.search(r"^SigCgt:\s*(\S+)", status, re.M).group(1)
    return {
        "comm": read("comm").strip(),
        "threads": len(os.listdir("/proc/%d/task" % pid)),
        "fds": sorted(int(x) for x in os.listdir("/proc/%d/fd" % pid)),
        "sigcgt": sigcgt,
        "maps": read("maps"),
    }


def sleeper_snapshot(lib, wd):
    env = base_env()
    if lib:
        env["LD_PRELOAD"] = lib
    proc = subprocess.Popen(["sleep", "1.5"], cwd=wd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)
    try:
        deadline = time.time() + 5
        while time.time() < deadline:
            try:
                with open("/proc/%d/comm" % proc.pid) as f:
                    if f.read().strip() == "sleep":
                        break
            except OSError:
                pass
            time.sleep(0.01)
        time.sleep(0.4)  # let any thread a constructor might start appear
        return proc_snapshot(proc.pid)
    finally:
        proc.wait(timeout=CHILD_TIMEOUT)


def scenario_nonpython(py, lib, wd):
    """ls /, sh -c 'echo hi; exit 4', make --version: identical stdout, stderr,
    status, no file in the cwd; `sleep` with the library: one thread, same
    open fds and caught signals as without it, and libpyprof mapped."""
    cmds = [["ls", "/"], ["sh", "-c", "echo hi; echo err >&2; exit 4"], ["make", "--version"],
            ["sh", "-c", "ls / | wc -l"]]
    for argv in cmds:
        CHK.section = " ".join(argv)
        if shutil.which(argv[0]) is None:
            CHK.note("%s not installed: skipped" % argv[0])
            continue
        d = fresh_dir(os.path.join(wd, "cwd-" + re.sub(r"\W+", "_", " ".join(argv))[:40]))
        plain = run(argv, d)
        res = run(argv, d, lib=lib)
        CHK.equal(res.out, plain.out, "stdout")
        CHK.equal(res.err, plain.err, "stderr")
        CHK.equal(res.status, plain.status, "exit status")
        CHK.equal(os.listdir(d), [], "files created in the working directory")

    CHK.section = "sleep (process state)"
    d = fresh_dir(os.path.join(wd, "cwd-sleep"))
    plain = sleeper_snapshot(None, d)
    ours = sleeper_snapshot(lib, d)
    CHK.check(os.path.realpath(lib) in ours["maps"] or os.path.basename(lib) in ours["maps"],
              "libpyprof is not mapped into the preloaded sleep: the test proves nothing")
    CHK.equal(ours["comm"], "sleep", "process name")
    CHK.equal(ours["threads"], 1, "threads in the preloaded sleep")
    CHK.equal(ours["fds"], plain["fds"], "open file descriptors (plain vs preloaded)")
    CHK.equal(ours["sigcgt"], plain["sigcgt"], "caught signals mask SigCgt (plain vs preloaded)")
    CHK.equal(os.listdir(d), [], "files created in the working directory")


# ---------------------------------------------------------------------------
# h. embed

def python_config(py, label):
    bindir = os.path.dirname(py)
    ver = python_query(py, "import sys; print('%d.%d' % sys.version_info[:2])")
    candidates = [os.path.join(bindir, "python%s-config" % ver)]
    if label.startswith("deb"):
        candidates = ["/usr/bin/python%s-config" % ver]
    for c in candidates:
        if os.access(c, os.X_OK):
            return c
    raise Skip("no python%s-config next to %s" % (ver, py))


def scenario_embed(py, lib, wd):
    """embed.c (Py_Initialize, PyRun_SimpleString calling f 100 times,
    Py_FinalizeEx) preloaded: exit 0, same stdout, a profile with
    ('<string>', 1, 'f') called 100 times."""
    cc = compiler()
    if cc is None:
        raise Skip("no C compiler")
    config = python_config(py, CHK_LABEL)

    def cfg(*args):
        p = subprocess.run([config] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=base_env())
        if p.returncode != 0:
            raise Skip("%s %s failed: %s" % (config, " ".join(args), p.stderr.decode(errors="replace")))
        return shlex.split(p.stdout.decode())

    cflags = cfg("--cflags")
    ldflags = cfg("--ldflags", "--embed")
    libdirs = [f[2:] for f in ldflags if f.startswith("-L")]
    libs = [f[2:] for f in ldflags if f.startswith("-lpython")]
    if not libs:
        raise Skip("%s --ldflags --embed names no libpython" % config)
    shared = [os.path.join(dd, "lib%s.so" % libs[0]) for dd in libdirs + ["/usr/lib/x86_64-linux-gnu", "/usr/lib"]]
    if not any(os.path.exists(s) for s in shared):
        raise Skip("no shared lib%s.so (looked in %s)" % (libs[0], ", ".join(libdirs)))
    exe = os.path.join(wd, "embed")
    compile_c([cc, os.path.join(HERE, "embed.c"), "-o", exe] + cflags + ldflags, "embed.c")

    plain = run([exe], wd)
    if plain.status != 0 or b"embed total 5050" not in plain.out:
        raise Fatal("embed does not work without the library: " + plain.describe())
    out_path = os.path.join(wd, "embed-%p.prof")
    res = run([exe], wd, lib=lib, env={"PYPROF_OUT": out_path})
    check_same_output(plain, res, "embed")
    CHK.equal(len(pyprof_lines(res.err)), 1, "number of pyprof: lines")
    path = out_path.replace("%p", str(res.pid))
    if not os.path.exists(path):
        raise Fatal("no profile written at %s\n%s" % (path, res.describe()))
    stats = load_prof(path)
    key = ("<string>", 1, "f")
    if CHK.check(key in stats, "no row %r; rows from <string>: %s"
                 % (key, [k for k in stats if k[0] == "<string>"])):
        CHK.equal(stats[key][:2], (100, 100), "f (cc, nc)")


# ---------------------------------------------------------------------------

def scenario_evalhook(py, lib, wd):
    """PYPROF_HOOK=eval on the parity workload.  3.11+: exactly one pyprof:
    line (the 'wrote' one), metadata hook 'eval (PEP 523; no built-ins)', no
    built-in rows, fib nc 1973 cc 1.  3.8-3.10: one more line saying it
    needs 3.11+, metadata hook PyEval_SetProfile, built-in rows present;
    the program's output as
    without the library in every case.  (3.11+) eval_replaced.py, which puts
    the default evaluator back after before() x3: a line saying ours was
    replaced, before 3/3, no after().  Then (3.11+) eval_deep.py 60000 (recursion
    with a raised limit, far past the C stack or C recursion budget that
    non-inlined calls would need): same stdout and exit status as
    unprofiled; where the hook is in use, one line saying it stopped
    because of the recursion depth, and the file is written."""
    path = os.path.join(wd, "ev.prof")
    plain = run([py, PARITY], wd)
    res = run([py, PARITY], wd, lib=lib, env={"PYPROF_OUT": path, "PYPROF_HOOK": "eval"})
    check_same_output(plain, res, "parity workload")
    stats = load_prof(path)
    with open(path, "rb") as f:
        buf = io.BytesIO(f.read())
    marshal.load(buf)
    meta = marshal.load(buf)
    lines = pyprof_lines(res.err)
    minor = int(python_query(py, "import sys; print(sys.version_info[1])"))
    builtins = [k for k in stats if k[0] == "~"]
    used = minor >= 11
    if used:
        CHK.equal(len(lines), 1, "pyprof: lines %s" % lines)
        CHK.equal(meta.get("hook"), "eval (PEP 523; no built-ins)", "metadata hook")
        CHK.equal(builtins, [], "built-in rows")
        expect_calls(stats, PARITY, "fib", 1973, 1)
    else:
        want = ("PYPROF_HOOK=eval needs Python 3.11+", "PyEval_SetProfile")
        CHK.equal(len(lines), 2, "pyprof: lines %s" % lines)
        CHK.check(lines and want[0] in lines[0], "fallback line: %r" % lines[:1])
        CHK.equal(meta.get("hook"), want[1], "metadata hook")
        CHK.check(len(builtins) > 0, "no built-in rows with the default hook")

    if used:
        CHK.section = "evaluator replaced"
        repl = os.path.join(WORKLOADS, "eval_replaced.py")
        path = os.path.join(wd, "repl.prof")
        plain = run([py, repl], wd)
        res = run([py, repl], wd, lib=lib, env={"PYPROF_OUT": path, "PYPROF_HOOK": "eval"})
        check_same_output(plain, res, "evaluator replaced", compare_stderr=False)
        lines = pyprof_lines(res.err)
        CHK.check(len(lines) == 2 and "replaced ours" in lines[0],
                  "want a line saying our evaluator was replaced, then 'wrote': %s" % lines)
        stats = load_prof(path)
        expect_calls(stats, repl, "before", 3, 3)
        CHK.check(not [k for k in stats if k[2] == "after"],
                  "after() is in the profile, though it ran after the evaluator was replaced")

    CHK.section = "deep recursion"
    if minor < 11:  # no inlined calls there: the plain run itself overflows
        CHK.note("deep recursion: not applicable before 3.11")
        return
    deep = os.path.join(WORKLOADS, "eval_deep.py")
    plain = run([py, deep, "60000"], wd)
    CHK.equal(plain.out.strip(), b"60000", "plain run (premise)")
    path = os.path.join(wd, "deep.prof")
    res = run([py, deep, "60000"], wd, lib=lib,
              env={"PYPROF_OUT": path, "PYPROF_HOOK": "eval", "PYPROF_QUIET": "1"})
    check_same_output(plain, res, "deep recursion", compare_stderr=False)
    lines = pyprof_lines(res.err)
    if used:
        CHK.check(len(lines) == 1 and "so deep in recursion" in lines[0],
                  "want one line saying the hook stopped: %s" % lines)
    CHK.check(os.path.exists(path), "no %s" % path)


SCENARIOS = {
    "parity": scenario_parity,
    "pstats": scenario_pstats,
    "threads": scenario_threads,
    "exits": scenario_exits,
    "quietout": scenario_quietout,
    "badconfig": scenario_badconfig,
    "nonpython": scenario_nonpython,
    "embed": scenario_embed,
    "evalhook": scenario_evalhook,
}
CHK_LABEL = ""


def drive(doc, scenarios, labels, no_python=()):
    """The command line of the test drivers (this file, production.py,
    crash.py): runs one scenario on one interpreter and returns the exit
    status (0, 1 with the failures listed, SKIP). Scenarios in `no_python`
    run without an interpreter."""
    global CHK_LABEL, HOOK
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--lib", required=True, help="path of libpyprof.so")
    ap.add_argument("--scenario", required=True, choices=sorted(scenarios))
    ap.add_argument("--python", required=not no_python, default="none",
                    help="interpreter label (%s)%s" % (
                        ", ".join(labels),
                        ", or none for " + ", ".join(no_python) if no_python else ""))
    ap.add_argument("--workdir", required=True, help="scratch directory (emptied first)")
    ap.add_argument("--hook", choices=["legacy", "monitoring", "eval"],
                    help="PYPROF_HOOK for every profiled run (default: the library's)")
    args = ap.parse_args()
    HOOK = args.hook

    lib = os.path.abspath(args.lib)
    if not os.path.isfile(lib):
        print("FAIL library %s does not exist (build the pyprof target)" % lib)
        return 1
    wd = fresh_dir(os.path.abspath(args.workdir))
    CHK_LABEL = args.python
    start = time.time()
    try:
        py = None
        if args.scenario not in no_python:
            py = find_interpreter(args.python)
            print("interpreter %s: %s%s" % (args.python, py,
                                            " (PYPROF_HOOK=%s)" % HOOK if HOOK else ""),
                  flush=True)
        scenarios[args.scenario](py, lib, wd)
    except Skip as e:
        print("SKIP %s: %s" % (args.scenario, e))
        return SKIP
    except Fatal as e:
        CHK.fail(str(e))
    finally:
        kill_leftovers()
    elapsed = time.time() - start
    if CHK.failures:
        print("\n%s.%s: %d failure(s) in %.1fs" % (args.scenario, args.python,
                                                   len(CHK.failures), elapsed))
        return 1
    print("%s.%s: ok (%.1fs)" % (args.scenario, args.python, elapsed))
    return 0


if __name__ == "__main__":
    sys.exit(drive(__doc__, SCENARIOS, INTERPRETERS, no_python=("nonpython",)))
