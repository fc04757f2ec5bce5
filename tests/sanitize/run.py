#!/usr/bin/env python3
"""Sanitizer and valgrind runs of libpyprof (CTest label `sanitize`).

    run.py build    --src SRC --build DIR --sanitize address,undefined [--target T ...]
    run.py unit     --src SRC --build DIR --kind asan|tsan [--suppressions FILE]
    run.py preload  --src SRC --lib DIR/libpyprof.so --kind asan|tsan --python LABEL --workdir W
    run.py valgrind --src SRC --lib build/libpyprof.so --python LABEL --workdir W

build     configures (only when needed) and builds a separate tree of the
          same source with -DPYPROF_SANITIZE=... -DPYPROF_NO_SANITIZE_TESTS=ON
          (the nested tree registers no sanitize tests of its own). A second
          run reconfigures nothing and rebuilds nothing unless sources changed.
unit      runs every unit test binary (tests/unit/test-*) of a sanitizer tree;
          fails on a failing test or on any sanitizer report.
preload   runs real interpreters with the sanitizer runtime and the
          instrumented libpyprof.so preloaded, on the integration workloads
          (parity, threads, exits) and on storm_workload.py (snapshots by
          signal while threads run and come and go); checks exit status and
          stdout against a plain run, the profile's counts, and that stderr
          holds no sanitizer report.
valgrind  memcheck on small_workload.py and storm_workload.py with the
          normal libpyprof.so preloaded; fails on any memcheck error (those
          whose stack goes through libpyprof are pointed out) and on a
          definite leak of a block that libpyprof itself allocated.

Sanitizer output: ASan/UBSan/LSan/TSan are told to exit with 86 and every
stderr line that looks like a report counts as a failure; suppressions are
only tsan.supp (see its header for what may go there).

Exit status: 0 pass, 1 fail, 77 skip (reason printed). Stdlib only; the
driver runs on Python 3.8+ and only starts the interpreter under test as a
child process.
"""
import argparse
import fcntl
import glob
import marshal
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SKIP = 77

# Interpreter lookup and small helpers are the integration driver's.
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
from run import Skip, find_interpreter, fresh_dir  # noqa: E402

# What a sanitizer report looks like on stderr (any of them is a failure).
SANITIZER_REPORT = re.compile(
    r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|AddressSanitizer:DEADLYSIGNAL"
    r"|WARNING: ThreadSanitizer|ThreadSanitizer:DEADLYSIGNAL|FATAL: ThreadSanitizer"
    r"|runtime error: |SUMMARY: UndefinedBehaviorSanitizer|ERROR: UndefinedBehaviorSanitizer"
    r"|SUMMARY: (Address|Thread|Leak)Sanitizer|Sanitizer CHECK failed")

# Exit status the sanitizers are told to use, so that a report is never
# mistaken for a program's own status (the exits workload ends with 1 and 3).
SAN_EXIT = 86


class Failures:
    def __init__(self):
        self.items = []

    def fail(self, msg):
        self.items.append(msg)
        print("FAIL " + msg, flush=True)

    def check(self, cond, msg):
        if not cond:
            self.fail(msg)
        return bool(cond)


FAIL = Failures()


def note(msg):
    print(msg, flush=True)


def clean_env(extra=None):
    """Our environment without anything that changes what a sanitizer, an
    interpreter or the profiler does; then `extra`."""
    env = {}
    for k, v in os.environ.items():
        if (k == "LD_PRELOAD" or k.startswith("PYPROF_") or k.startswith("PYTHON")
                or k.endswith("SAN_OPTIONS") or k == "VALGRIND_OPTS"):
            continue
        env[k] = v
    env.setdefault("PATH", "/usr/bin:/bin")
    env.update(extra or {})
    return env


class Result:
    def __init__(self, argv, env_extra, status, out, err, secs):
        self.argv, self.env_extra = argv, env_extra
        self.status, self.out, self.err, self.secs = status, out, err, secs

    def describe(self, limit=12000):
        env = " ".join("%s=%s" % (k, shlex.quote(v)) for k, v in sorted(self.env_extra.items()))
        err = self.err.decode(errors="replace")
        if len(err) > limit:
            err = err[:limit // 2] + "\n[... %d bytes ...]\n" % (len(err) - limit) + err[-limit // 2:]
        return "%s %s -> status %s (%.1fs)\n--- stdout ---\n%s--- stderr ---\n%s\n--------------" % (
            env, " ".join(shlex.quote(a) for a in self.argv), self.status, self.secs,
            self.out.decode(errors="replace")[-4000:], err)


def run(argv, cwd, env_extra=None, timeout=120):
    start = time.time()
    p = subprocess.Popen(argv, cwd=cwd, env=clean_env(env_extra), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        return Result(argv, env_extra or {}, "timeout after %ss" % timeout, out, err,
                      time.time() - start)
    return Result(argv, env_extra or {}, p.returncode, out, err, time.time() - start)


def sanitizer_lines(text):
    return [l for l in text.splitlines() if SANITIZER_REPORT.search(l)]


def unit_names(src):
    return sorted(os.path.splitext(os.path.basename(p))[0]
                  for p in glob.glob(os.path.join(src, "tests", "unit", "test-*.c")))


# ---------------------------------------------------------------------------
# build

def cache_value(cache, name):
    m = re.search(r"^%s:[A-Z]+=(.*)$" % re.escape(name), cache, re.M)
    return m.group(1) if m else None


def cmd_build(a):
    src, bdir = os.path.abspath(a.src), os.path.abspath(a.build)
    os.makedirs(bdir, exist_ok=True)
    # One build of a tree at a time (two ctest runs, or a hand run).
    with open(os.path.join(bdir, ".sanitize-build.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        want = {
            "PYPROF_SANITIZE": a.sanitize,
            "PYPROF_NO_SANITIZE_TESTS": "ON",
            "CMAKE_BUILD_TYPE": a.build_type,
        }
        cache_path = os.path.join(bdir, "CMakeCache.txt")
        cache = open(cache_path).read() if os.path.exists(cache_path) else ""
        if cache and ((a.generator and cache_value(cache, "CMAKE_GENERATOR") != a.generator) or
                      (a.cc and cache_value(cache, "CMAKE_C_COMPILER") != a.cc)):
            # cmake cannot switch either in place: start the tree afresh.
            note("generator or compiler changed: clearing the cache of %s" % bdir)
            os.unlink(cache_path)
            shutil.rmtree(os.path.join(bdir, "CMakeFiles"), ignore_errors=True)
            cache = ""
        same = (cache and cache_value(cache, "CMAKE_HOME_DIRECTORY") == src
                and all(cache_value(cache, k) == v for k, v in want.items()))
        if same:
            note("configured already: %s (PYPROF_SANITIZE=%s); cmake --build re-runs "
                 "cmake by itself if a CMakeLists.txt changed" % (bdir, a.sanitize))
        else:
            argv = [a.cmake, "-S", src, "-B", bdir] + ["-D%s=%s" % kv for kv in sorted(want.items())]
            if a.generator:
                argv += ["-G", a.generator]
            if a.cc:
                argv += ["-DCMAKE_C_COMPILER=" + a.cc]
            note("$ " + " ".join(shlex.quote(x) for x in argv))
            p = subprocess.run(argv, env=clean_env())
            if p.returncode != 0:
                FAIL.fail("configuring %s failed (status %d)" % (bdir, p.returncode))
                return
        targets = list(a.target or []) + unit_names(src)
        argv = [a.cmake, "--build", bdir, "-j", str(a.jobs), "--target"] + targets
        note("$ " + " ".join(shlex.quote(x) for x in argv))
        p = subprocess.run(argv, env=clean_env())
        FAIL.check(p.returncode == 0, "building %s failed (status %d)" % (bdir, p.returncode))


# ---------------------------------------------------------------------------
# unit

def instrumented(path, kind):
    """Whether the binary carries the sanitizer's entry points (whatever the
    compiler and however the runtime is linked)."""
    marks = {"asan": [b"__asan_init", b"__ubsan_handle_"], "tsan": [b"__tsan_init"]}[kind]
    with open(path, "rb") as f:
        data = f.read()
    return [m.decode() for m in marks if m not in data]


def san_env(kind, suppressions=None, interpreter=False):
    """Sanitizer options. For an interpreter (not instrumented, leaks by
    design) no leak checking and no strict checks of libc calls it makes."""
    if kind == "asan":
        opts = ["halt_on_error=1", "abort_on_error=0", "exitcode=%d" % SAN_EXIT,
                "allow_user_segv_handler=1"]
        if interpreter:
            opts += ["detect_leaks=0"]
        else:
            opts += ["detect_leaks=1", "detect_stack_use_after_return=1", "strict_string_checks=1"]
        return {
            "ASAN_OPTIONS": ":".join(opts),
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=%d" % SAN_EXIT,
            "LSAN_OPTIONS": "exitcode=%d" % SAN_EXIT,
        }
    opts = ["halt_on_error=0", "exitcode=%d" % SAN_EXIT, "history_size=7",
            "second_deadlock_stack=1", "print_suppressions=1"]
    if suppressions:
        opts.append("suppressions=" + os.path.abspath(suppressions))
    return {"TSAN_OPTIONS": " ".join(opts)}


def cmd_unit(a):
    bdir = os.path.abspath(a.build)
    names = unit_names(os.path.abspath(a.src))
    if not names:
        FAIL.fail("no tests/unit/test-*.c under %s" % a.src)
        return
    if a.only:
        names = [n for n in names if n in a.only]
    env = san_env(a.kind, a.suppressions)
    note("environment: " + " ".join("%s=%s" % kv for kv in sorted(env.items())))
    for name in names:
        exe = os.path.join(bdir, "tests", "unit", name)
        if not FAIL.check(os.path.isfile(exe), "%s: %s was not built" % (name, exe)):
            continue
        missing = instrumented(exe, a.kind)
        if not FAIL.check(not missing, "%s is not instrumented for %s (no %s): the build "
                          "ignored PYPROF_SANITIZE" % (exe, a.kind, ", ".join(missing))):
            continue
        res = run([exe], bdir, env, timeout=a.timeout)
        text = (res.out + res.err).decode(errors="replace")
        reports = sanitizer_lines(text)
        ok = res.status in (0, SKIP) and not reports
        note("%s %s: status %s, %.1fs%s" % ("ok  " if ok else "FAIL", name, res.status, res.secs,
                                            ", all tests skipped" if res.status == SKIP else ""))
        summary = [l for l in text.splitlines() if "Matched" in l or re.match(r"^\d+ (race|race_top):", l)]
        if summary:
            note("  suppressions used: " + "; ".join(summary))
        if not ok:
            FAIL.fail("%s under %s: status %s, %d sanitizer report line(s)\n%s"
                      % (name, a.kind, res.status, len(reports), res.describe(40000)))


# ---------------------------------------------------------------------------
# preload

def runtime_of(lib, kind):
    """Path of the sanitizer runtime the instrumented library needs, which
    must come first in LD_PRELOAD (the interpreter is not instrumented)."""
    pat = {"asan": r"lib(asan|clang_rt\.asan[^ ]*)\.so[.\d]*", "tsan": r"lib(tsan|clang_rt\.tsan[^ ]*)\.so[.\d]*"}[kind]
    try:
        out = subprocess.run(["ldd", lib], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             env=clean_env(), timeout=30).stdout.decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    for line in out.splitlines():
        m = re.match(r"\s*(%s)\s+=>\s+(\S+)" % pat, line)
        if m and os.path.exists(m.group(m.lastindex)):
            return m.group(m.lastindex)
    for cc in ("cc", "gcc", "clang"):
        if shutil.which(cc):
            name = {"asan": "libasan.so", "tsan": "libtsan.so"}[kind]
            p = subprocess.run([cc, "-print-file-name=" + name], stdout=subprocess.PIPE,
                               env=clean_env()).stdout.decode().strip()
            if os.path.isabs(p) and os.path.exists(p):
                return p
    return None


def load_prof(path):
    with open(path, "rb") as f:
        stats = marshal.load(f)
    if not isinstance(stats, dict):
        raise ValueError("first marshal object is %s, not dict" % type(stats).__name__)
    return stats


def counts(stats, file_suffix, name):
    rows = [v for k, v in stats.items() if k[2] == name and k[0].endswith(file_suffix)]
    return [(v[1], v[0]) for v in rows]  # (nc, cc)


def check_counts(path, file_suffix, expected, what):
    """expected: {name: nc} (or (nc, cc)) in the profile at `path`."""
    if not FAIL.check(os.path.exists(path), "%s: no profile written at %s" % (what, path)):
        return
    try:
        stats = load_prof(path)
    except (OSError, EOFError, ValueError, TypeError) as e:
        FAIL.fail("%s: %s is not a readable profile: %s" % (what, path, e))
        return
    for name, want in expected.items():
        got = counts(stats, file_suffix, name)
        want_nc = want[0] if isinstance(want, tuple) else want
        ok = len(got) == 1 and got[0][0] == want_nc
        if isinstance(want, tuple):
            ok = ok and got[0][1] == want[1]
        FAIL.check(ok, "%s: %s in %s: expected (nc, cc) %r, got %r"
                   % (what, name, file_suffix, want, got))


def compile_cthread(py, wd):
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        return "-", "no C compiler"
    p = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['include'])"],
                       stdout=subprocess.PIPE, env=clean_env())
    inc = p.stdout.decode().strip()
    if p.returncode != 0 or not os.path.exists(os.path.join(inc, "Python.h")):
        return "-", "no Python.h for %s" % py
    out = os.path.join(wd, "cthread.so")
    src = os.path.join(WORKLOADS, "cthread.c")
    p = subprocess.run([cc, "-shared", "-fPIC", "-O1", "-I" + inc, src, "-o", out, "-lpthread"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        FAIL.fail("compiling cthread.c failed:\n" + p.stdout.decode(errors="replace"))
        return "-", "compile failed"
    return out, None


WORKLOADS = None  # set from --src


def check_stacks(sdir):
    """The storm asked for native stacks twice: a stacks file exists, with
    both parts (the library's dumper writes one per request, atomically)."""
    found = sorted(glob.glob(os.path.join(sdir, "storm-*.prof.stacks.txt")))
    if not FAIL.check(found, "storm: no stacks file in %s" % sdir):
        return
    with open(found[-1], errors="replace") as f:
        text = f.read()
    FAIL.check(text.startswith("Python stacks of process ") and
               "\nNative stacks (innermost first):\n" in text and text.endswith("\n"),
               "storm: stacks file %s is incomplete:\n%s" % (found[-1], text[:2000]))


def cmd_preload(a):
    global WORKLOADS
    src = os.path.abspath(a.src)
    WORKLOADS = os.path.join(src, "tests", "integration", "workloads")
    lib = os.path.abspath(a.lib)
    if not FAIL.check(os.path.isfile(lib), "library %s does not exist" % lib):
        return
    missing = instrumented(lib, a.kind)
    if not FAIL.check(not missing, "%s is not instrumented for %s (no %s)"
                      % (lib, a.kind, ", ".join(missing))):
        return
    py = find_interpreter(a.python)
    runtime = runtime_of(lib, a.kind)
    if not FAIL.check(runtime, "cannot find the %s runtime that %s needs" % (a.kind, lib)):
        return
    wd = fresh_dir(os.path.abspath(a.workdir))
    note("interpreter %s: %s\nruntime %s\nlibrary %s" % (a.python, py, runtime, lib))

    base = {"PYTHONMALLOC": "malloc"}  # every allocation through the sanitizer's malloc
    san = san_env(a.kind, a.suppressions, interpreter=True)
    preload = dict(base, LD_PRELOAD=runtime + ":" + lib, **san)
    for kv in a.env or []:
        k, _, v = kv.partition("=")
        preload[k] = v

    hinted = []

    def pair(argv, what, extra, out_path, compare_stdout=True):
        """Plain run and sanitized run; returns the sanitized one."""
        plain = run([py] + argv, wd, dict(base, **extra))
        if out_path and os.path.exists(out_path):
            os.unlink(out_path)
        res = run([py] + argv, wd, dict(preload, PYPROF_OUT=out_path or os.path.join(wd, "x.prof"),
                                        **extra), timeout=a.timeout)
        reports = sanitizer_lines(res.err.decode(errors="replace"))
        if (a.kind == "tsan" and not hinted and
                (res.status == -11 or b"ThreadSanitizer: SEGV" in res.err)):
            hinted.append(1)
            note("hint: a SEGV under TSan with an empty or runtime-only stack is typically an "
                 "instrumented function of the library called by the TSan runtime itself before "
                 "it set up the thread (e.g. an interposed libc function such as "
                 "pthread_setspecific, called from __tsan_thread_start_func): such a function "
                 "needs __attribute__((no_sanitize(\"thread\"))). Run the command under gdb for "
                 "the stack.")
        ok = FAIL.check(not reports, "%s: %d sanitizer report line(s) on stderr\n%s"
                        % (what, len(reports), res.describe(60000)))
        if ok:  # else the report above says it all
            ok = FAIL.check(res.status == plain.status, "%s: exit status %s, plain run gave %s\n%s"
                            % (what, res.status, plain.status, res.describe()))
        if ok and compare_stdout:
            ok = FAIL.check(res.out == plain.out, "%s: stdout differs from the plain run\n"
                            "  plain: %r\n  ours:  %r" % (what, plain.out[-2000:], res.out[-2000:]))
        note("%s %s: status %s (plain %s), %.1fs" % ("ok  " if ok else "FAIL", what, res.status,
                                                     plain.status, res.secs))
        return res

    # parity: the varied workload (generators, async, exceptions, recursion)
    out = os.path.join(wd, "parity.prof")
    pair([os.path.join(WORKLOADS, "parity_workload.py")], "parity", {}, out)
    check_counts(out, "parity_workload.py", {"fib": (1973, 1), "leaf": 110, "raise_deep": (20, 5),
                                             "async_leaf": 16, "main": 1}, "parity")

    # threads: every kind of thread, including pthreads created in C
    site = fresh_dir(os.path.join(wd, "site"))
    shutil.copy(os.path.join(WORKLOADS, "threads_sitecustomize.py"),
                os.path.join(site, "sitecustomize.py"))
    cthread, why = compile_cthread(py, wd)
    if why:
        note("threads: C-created threads skipped (%s)" % why)
    out = os.path.join(wd, "threads.prof")
    pair([os.path.join(WORKLOADS, "threads_workload.py"), cthread], "threads",
         {"PYTHONPATH": site, "PYTHONDONTWRITEBYTECODE": "1"}, out)
    want = {"work": 4000, "work2": 1000, "early_handle": 300}
    if cthread != "-":
        want["c_callback"] = 250
    check_counts(out, "threads_workload.py", want, "threads")
    check_counts(out, "sitecustomize.py", {"pre_handle": 200}, "threads")

    # exits: the final dump on the error and signal paths
    for mode in ("raise", "kbint", "exit3"):
        out = os.path.join(wd, "exits-%s.prof" % mode)
        pair([os.path.join(WORKLOADS, "exits_workload.py"), mode], "exits " + mode, {}, out)
        check_counts(out, "exits_workload.py", {"marker": 7}, "exits " + mode)

    # storm: snapshots by signal while threads run, start and end
    sdir = fresh_dir(os.path.join(wd, "storm"))
    res = pair([os.path.join(HERE, "storm_workload.py")], "storm", {"STORM_STACKS": "1"},
               os.path.join(sdir, "storm-%n.prof"), compare_stdout=False)
    files = sorted(glob.glob(os.path.join(sdir, "storm-*.prof")),
                   key=lambda p: int(re.sub(r"\D", "", os.path.basename(p)) or 0))
    if FAIL.check(files, "storm: no profile written in %s" % sdir):
        if b"snapshot signals (SIGUSR2 not caught" in res.out:
            note("storm: the library installed no SIGUSR2 handler: no snapshots were taken")
        else:
            FAIL.check(len(files) >= 2, "storm: only %d file(s) for 25 snapshot signals + the "
                       "final dump: %s" % (len(files), [os.path.basename(f) for f in files]))
        for f in files[:-1]:
            try:
                load_prof(f)
            except (OSError, EOFError, ValueError, TypeError) as e:
                FAIL.fail("storm: snapshot %s unreadable: %s" % (f, e))
        check_counts(files[-1], "storm_workload.py",
                     {"leaf": 4 * 3000 * 3 + 20 * 10, "rec": (4 * 3000 * 3, 4 * 3000),
                      "burst": 20}, "storm (final file %s)" % os.path.basename(files[-1]))
        note("storm: %d files" % len(files))
        check_stacks(sdir)


# ---------------------------------------------------------------------------
# valgrind

def vg_records(log):
    """Blocks of a valgrind log, one per error or loss record."""
    lines = [re.sub(r"^==\d+== ?", "", l) for l in log.splitlines() if re.match(r"^==\d+==", l)]
    blocks, cur = [], []
    for l in lines:
        if l.strip():
            cur.append(l)
        elif cur:
            blocks.append("\n".join(cur))
            cur = []
    if cur:
        blocks.append("\n".join(cur))
    return blocks


ALLOCATORS = re.compile(r"^(malloc|calloc|realloc|reallocarray|strdup|__strdup|strndup|__strndup|"
                        r"posix_memalign|aligned_alloc|memalign|valloc|operator new.*)$")


def first_caller_is_ours(record, ours):
    """Whether the first frame of a loss record below the allocator is ours."""
    for line in record.splitlines():
        m = re.match(r"\s+(?:at|by) 0x[0-9A-Fa-f]+: (.*?) (\(.*\))$", line)
        if not m:
            continue
        func, where = m.groups()
        if ALLOCATORS.match(func) or "vgpreload_" in where:
            continue
        return bool(ours.search(line))
    return False


def cmd_valgrind(a):
    global WORKLOADS
    src = os.path.abspath(a.src)
    WORKLOADS = os.path.join(src, "tests", "integration", "workloads")
    vg = shutil.which("valgrind")
    if not vg:
        raise Skip("valgrind is not installed")
    lib = os.path.abspath(a.lib)
    if not FAIL.check(os.path.isfile(lib), "library %s does not exist (build the pyprof target)" % lib):
        return
    if b"__asan_init" in open(lib, "rb").read() or b"__tsan_init" in open(lib, "rb").read():
        raise Skip("%s is a sanitizer build; valgrind needs the plain one" % lib)
    py = find_interpreter(a.python)
    wd = fresh_dir(os.path.abspath(a.workdir))
    note("interpreter %s: %s\nlibrary %s" % (a.python, py, lib))
    # Frames of our library: its sources (full paths thanks to
    # --fullpath-after=) or, without debug info, the object itself.
    ours = re.compile(r"\((%s|%s)/[^():]+:\d+\)|\(in [^)]*%s\)" % (
        re.escape(os.path.join(src, "core")), re.escape(os.path.join(src, "preload")),
        re.escape(os.path.basename(lib))))

    base_argv = [vg, "--tool=memcheck", "--error-exitcode=99", "--num-callers=40",
                 "--fullpath-after=", "--leak-check=full", "--show-leak-kinds=definite",
                 "--errors-for-leak-kinds=none"]
    if a.suppressions:
        base_argv.append("--suppressions=" + os.path.abspath(a.suppressions))

    def memcheck(what, script, out, compare_stdout=True):
        """Plain run, then memcheck with the library; checks; returns the
        memcheck run."""
        plain = run([py, script], wd, {"PYTHONMALLOC": "malloc"})
        log = os.path.join(wd, "valgrind-%s.log" % what)
        res = run(base_argv + ["--log-file=" + log, py, script], wd,
                  {"PYTHONMALLOC": "malloc", "LD_PRELOAD": lib, "PYPROF_OUT": out},
                  timeout=a.timeout)
        text = open(log, errors="replace").read() if os.path.exists(log) else ""
        m = re.search(r"ERROR SUMMARY: (\d+) errors? from (\d+) contexts? \(suppressed: (\d+)", text)
        recs = vg_records(text)
        # An error is a block with a stack ("at 0x...") that is not a loss record.
        errors = [r for r in recs if re.search(r"^\s+at 0x", r, re.M) and "in loss record" not in r]
        # A definite leak is ours when the allocation was made by our code:
        # the first frame below the allocator is in libpyprof. Objects the
        # interpreter allocates when we call it (an import, a string) and
        # never frees at exit are its own business; a reference we fail to
        # drop cannot be told from those at exit, so it is not looked for.
        leaks = [r for r in recs if "definitely lost" in r and first_caller_is_ours(r, ours)]
        n = len(FAIL.items)
        for r in errors:
            FAIL.fail("%s: memcheck error%s:\n%s" % (
                what, " with libpyprof frames" if ours.search(r) else
                " (no libpyprof frame: if it also happens without the library, suppress it "
                "in valgrind-python.supp)", r))
        for r in leaks:
            FAIL.fail("%s: definite leak of memory allocated by libpyprof:\n%s" % (what, r))
        if FAIL.check(m is not None, "%s: no ERROR SUMMARY in the valgrind log %s\n%s"
                      % (what, log, res.describe())) and not errors:
            FAIL.check(m.group(1) == "0", "%s: valgrind counted %s errors that this driver did "
                       "not parse; see %s" % (what, m.group(1), log))
        FAIL.check(res.status == plain.status == 0, "%s: status %s (plain run %s), 99 = memcheck "
                   "errors\n%s" % (what, res.status, plain.status, res.describe()))
        if compare_stdout:
            FAIL.check(res.out == plain.out, "%s: stdout differs from the plain run: %r vs %r"
                       % (what, res.out, plain.out))
        FAIL.check(b"pyprof: " in res.err, "%s: no 'pyprof:' line on stderr: was the library "
                   "loaded?\n%s" % (what, res.describe()))
        note("%s %s: status %s, %.1fs, %s" % ("ok  " if len(FAIL.items) == n else "FAIL", what,
                                             res.status, res.secs,
                                             m.group(0) + ")" if m else "no ERROR SUMMARY"))
        return res

    out = os.path.join(wd, "small.prof")
    memcheck("small", os.path.join(WORKLOADS, "small_workload.py"), out)
    check_counts(out, "small_workload.py", {"tick": 5, "main": 1}, "small")

    # Snapshots from the dumper thread while threads run (memcheck runs one
    # thread at a time, so this checks memory use, not the protocol).
    sdir = fresh_dir(os.path.join(wd, "storm"))
    memcheck("storm", os.path.join(HERE, "storm_workload.py"),
             os.path.join(sdir, "storm-%n.prof"), compare_stdout=False)
    files = sorted(glob.glob(os.path.join(sdir, "storm-*.prof")),
                   key=lambda p: int(re.sub(r"\D", "", os.path.basename(p)) or 0))
    if FAIL.check(files, "storm: no profile written in %s" % sdir):
        check_counts(files[-1], "storm_workload.py",
                     {"leaf": 4 * 3000 * 3 + 20 * 10, "rec": (4 * 3000 * 3, 4 * 3000),
                      "burst": 20}, "storm (final file %s)" % os.path.basename(files[-1]))


# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd")
    sub.required = True
    b = sub.add_parser("build")
    b.add_argument("--src", required=True)
    b.add_argument("--build", required=True)
    b.add_argument("--sanitize", required=True)
    b.add_argument("--target", action="append", help="extra target (unit tests are always built)")
    b.add_argument("--cmake", default="cmake")
    b.add_argument("--generator")
    b.add_argument("--cc")
    b.add_argument("--build-type", default="RelWithDebInfo")
    b.add_argument("--jobs", type=int, default=2)
    u = sub.add_parser("unit")
    u.add_argument("--src", required=True)
    u.add_argument("--build", required=True)
    u.add_argument("--kind", choices=("asan", "tsan"), required=True)
    u.add_argument("--suppressions")
    u.add_argument("--only", action="append", help="run only this test binary (repeatable)")
    u.add_argument("--timeout", type=int, default=240)
    p = sub.add_parser("preload")
    p.add_argument("--src", required=True)
    p.add_argument("--lib", required=True)
    p.add_argument("--kind", choices=("asan", "tsan"), required=True)
    p.add_argument("--python", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--suppressions")
    p.add_argument("--env", action="append", metavar="NAME=VALUE",
                   help="add to the environment of the preloaded runs (e.g. PYPROF_HOOK=legacy)")
    p.add_argument("--timeout", type=int, default=120)
    v = sub.add_parser("valgrind")
    v.add_argument("--src", required=True)
    v.add_argument("--lib", required=True)
    v.add_argument("--python", required=True)
    v.add_argument("--workdir", required=True)
    v.add_argument("--suppressions")
    v.add_argument("--timeout", type=int, default=180)
    a = ap.parse_args()
    start = time.time()
    try:
        {"build": cmd_build, "unit": cmd_unit, "preload": cmd_preload,
         "valgrind": cmd_valgrind}[a.cmd](a)
    except Skip as e:
        print("SKIP %s: %s" % (a.cmd, e))
        return SKIP
    if FAIL.items:
        print("\n%s: %d failure(s) in %.1fs" % (a.cmd, len(FAIL.items), time.time() - start))
        return 1
    print("%s: ok (%.1fs)" % (a.cmd, time.time() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
