#!/usr/bin/env python3
"""Tests of the `pyprof` command line (scripts/pyprof).

    test_cli.py --case NAME --pyprof scripts/pyprof --lib build/libpyprof.so
                --python /usr/bin/python3 --workdir DIR

Runs one case and exits 0 (pass), 1 (fail) or 77 (skip, reason printed).
Stdlib only, Python 3.8+. The CLI runs under this driver's interpreter;
profiled programs run under --python with the real library (--lib).

Cases (the numbers each expects are in its docstring):
  usage         --help everywhere, usage errors are one line and status 2
  run_status    `run` keeps exit statuses 0 and 3, as the shell sees them
  run_signal    death by SIGTERM gives the same $? and returncode as direct;
                SIGTERM sent to pyprof reaches the command; SIGINT does not
                kill pyprof
  run_nonpython `sh -c 'exit 5'` exits 5 and writes nothing
  run_count     a profile with known call counts, one "wrote" line
  run_options   --timer/--bias/--quiet/--out reach the library; bad values
                and bad PYPROF_* in the environment stop before running
  run_env       LD_PRELOAD kept (ours appended); a relative --out is taken
                from pyprof's directory even if the command changes its own
  run_lookup    the library is found installed (../lib) and in the build
                tree (../build); a missing one is a clear error
  run_snapshot  --signal: a snapshot file per signal, also when the signal
                is sent to pyprof (skipped while the library lacks it)
  view_sort     rows, counts and order for --sort ncalls/name/cumtime, --limit
  view_edges    --callers / --callees edges with their counts
  view_json     --json rows and metadata
  view_cprofile a file written by cProfile (no metadata)
  merge         two runs add up; pstats reads the result; metadata merged
  bad_files     truncated, empty, random, missing, directory, ...: status 2
                and one `pyprof:` line naming the file, for view and merge
  compat        view, merge and run under the oldest Python 3.8+ found
"""
import argparse
import glob
import json
import marshal
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

SKIP = 77
TIMEOUT = 60

WORKLOAD = '''\
def leaf(i):
    return i * 2


def middle(n):
    t = 0
    for i in range(n):
        t += leaf(i)
    return t


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def main():
    for _ in range(5):
        middle(10)
    fib(10)


main()
'''
# What WORKLOAD's profile must say: (ncalls, primitive calls) per function,
# and the caller -> callee edges (ncalls, primitive calls), as cProfile has.
COUNTS = {"main": (1, 1), "middle": (5, 5), "leaf": (50, 50), "fib": (177, 1)}
EDGES = {("main", "middle"): (5, 5), ("middle", "leaf"): (50, 50),
         ("main", "fib"): (1, 1), ("fib", "fib"): (176, 2)}


class Skip(Exception):
    pass


class Checker:
    """Records every failed expectation and goes on, so one run shows all."""

    def __init__(self):
        self.failures = []

    def check(self, cond, msg):
        if not cond:
            self.failures.append(msg)
            print("FAIL " + msg, flush=True)
        return bool(cond)

    def equal(self, got, want, what):
        return self.check(got == want, "%s: expected %r, got %r"
                          % (what, want, got))


CHK = Checker()
A = None  # command-line arguments


class Result:
    def __init__(self, argv, status, out, err):
        self.argv, self.status, self.out, self.err = argv, status, out, err

    def __str__(self):
        return "%s -> %s\n--- stdout\n%s--- stderr\n%s---" % (
            " ".join(self.argv), self.status, self.out, self.err)


def base_env():
    """Our environment without anything that changes a child's behaviour."""
    env = {k: v for k, v in os.environ.items()
           if k != "LD_PRELOAD" and not k.startswith(("PYPROF_", "PYTHON"))}
    env.setdefault("PATH", "/usr/bin:/bin")
    env["PYPROF_LIB"] = A.lib
    return env


def run(argv, cwd=None, env=None, drop=(), timeout=TIMEOUT, stdin=""):
    full = base_env()
    full.update(env or {})
    for k in drop:
        full.pop(k, None)
    p = subprocess.Popen(argv, cwd=cwd or A.workdir, env=full,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True)
    try:
        out, err = p.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise AssertionError("timed out: %s" % " ".join(argv))
    return Result(argv, p.returncode, out, err)


def cli(*args, **kw):
    """pyprof ARGS under this interpreter."""
    return run([sys.executable, A.pyprof] + list(args), **kw)


def lines(text):
    return [l for l in text.splitlines() if l.strip()]


def wrote_lines(err):
    return [l for l in err.splitlines() if l.startswith("pyprof: wrote ")]


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def load(path):
    """(stats, metadata or None) of a .prof file."""
    with open(path, "rb") as f:
        stats = marshal.load(f)
        rest = f.read()
    return stats, (marshal.loads(rest) if rest else None)


def by_name(stats):
    """{function name: value} for the workload's functions."""
    return {k[2]: v for k, v in stats.items()
            if k[0].endswith("work.py") and k[2] in COUNTS}


def check_counts(stats, times, what):
    """The workload's counts, `times` runs added together."""
    funcs = by_name(stats)
    for name, (nc, cc) in COUNTS.items():
        v = funcs.get(name)
        if CHK.check(v is not None, "%s: no row for %s" % (what, name)):
            CHK.equal((v[1], v[0]), (nc * times, cc * times),
                      "%s: (ncalls, primitive) of %s" % (what, name))
    keys = {k[2]: k for k in stats if k[0].endswith("work.py")}
    for (caller, callee), (nc, cc) in EDGES.items():
        edge = stats.get(keys.get(callee), (0,) * 4 + ({},))[4].get(
            keys.get(caller))
        CHK.equal(edge[:2] if edge else None, (nc * times, cc * times),
                  "%s: edge %s -> %s" % (what, caller, callee))


def profile_workload(name, extra=()):
    """Runs the workload under `pyprof run`; returns the file's path."""
    script = os.path.join(A.workdir, "work.py")
    if not os.path.exists(script):
        write(script, WORKLOAD)
    out = os.path.join(A.workdir, name)
    r = cli("run", "--out", out, *extra, "--", A.python, script)
    if r.status != 0 or not os.path.isfile(out):
        raise AssertionError("could not make a profile: %s" % r)
    return out


def one_error_line(r, what, mention=None):
    """Status 2, nothing on stdout, one stderr line `pyprof: ...`."""
    CHK.equal(r.status, 2, what + ": status")
    CHK.equal(r.out, "", what + ": stdout")
    err = r.err.splitlines()
    CHK.check(len(err) == 1 and err[0].startswith("pyprof: ")
              and "Traceback" not in r.err,
              "%s: want one `pyprof:` line on stderr, got %r" % (what, r.err))
    if mention is not None:
        CHK.check(mention in r.err, "%s: the message should name %r: %r"
                  % (what, mention, r.err))


def shell_status(command):
    """$? as sh sees it after `command`."""
    r = run(["sh", "-c", command + '; echo "status=$?"'])
    m = re.search(r"status=(\d+)", r.out)
    return int(m.group(1)) if m else None


def q(s):
    return "'" + s.replace("'", "'\\''") + "'"


# ---------------------------------------------------------------------------

def case_usage():
    """--help: status 0 and usage text; no command, unknown command or
    option, bad --limit/--sort, run with no command, merge without -o:
    status 2 and one line. The script runs by itself (shebang, mode)."""
    for sub in ("", "run", "view", "merge"):
        r = cli(*([sub] if sub else []), "--help")
        CHK.equal(r.status, 0, "pyprof %s --help status" % sub)
        CHK.check(("usage: pyprof " + sub).strip() in r.out,
                  "pyprof %s --help: no usage line: %s" % (sub, r))
    for args in ([], ["frobnicate"], ["view", "--sort", "speed", "x.prof"],
                 ["view", "--limit", "many", "x.prof"],
                 ["view", "--limit", "-1", "x.prof"], ["view"], ["run"],
                 ["run", "--timer"], ["run", "--frob", "true"],
                 ["merge", "x.prof"], ["--frob"]):
        one_error_line(cli(*args), "pyprof " + " ".join(args))
    CHK.check(os.access(A.pyprof, os.X_OK), "scripts/pyprof is not executable")
    with open(A.pyprof) as f:
        CHK.equal(f.readline().strip(), "#!/usr/bin/env python3", "shebang")
    r = run([A.pyprof, "--help"])
    CHK.equal(r.status, 0, "running scripts/pyprof directly")


def case_run_status():
    """python exiting 0 and 3: pyprof returns the same, in sh as well."""
    for code in (0, 3):
        prog = "import sys; sys.exit(%d)" % code
        r = cli("run", "--quiet", "--out", "st%d.prof" % code, A.python, "-c",
                prog)
        CHK.equal(r.status, code, "pyprof run: exit %d" % code)
        CHK.check(os.path.isfile(os.path.join(A.workdir, "st%d.prof" % code)),
                  "exit %d: no profile written" % code)
        direct = shell_status("%s -c %s" % (q(A.python), q(prog)))
        via = shell_status("%s %s run --quiet --out x.prof %s -c %s" % (
            q(sys.executable), q(A.pyprof), q(A.python), q(prog)))
        CHK.equal((direct, via), (code, code), "sh $? direct, via pyprof")


def case_run_signal():
    """A command that kills itself with SIGTERM: $? 143 in sh and
    returncode -15 both directly and through pyprof, nothing extra on
    stderr. SIGTERM sent to pyprof reaches the command (which exits 7 on
    it). SIGINT sent to pyprof alone does not end it: the command's 0."""
    # The sleep: with the library preloaded, death by SIGTERM comes from its
    # dumper thread once the profile is written, not at once.
    prog = ("import os, signal, time; os.kill(os.getpid(), signal.SIGTERM); "
            "time.sleep(20)")
    direct = run([A.python, "-c", prog])
    via = cli("run", "--quiet", A.python, "-c", prog)
    CHK.equal(direct.status, -signal.SIGTERM, "direct returncode")
    CHK.equal(via.status, direct.status, "pyprof run returncode")
    CHK.equal(via.err, "", "pyprof run stderr after a signal death")
    sh_direct = shell_status("%s -c %s" % (q(A.python), q(prog)))
    sh_via = shell_status("%s %s run --quiet %s -c %s" % (
        q(sys.executable), q(A.pyprof), q(A.python), q(prog)))
    CHK.equal((sh_direct, sh_via), (143, 143), "sh $? direct, via pyprof")

    # A command that exits 7 on SIGTERM, and 0 after 6 s otherwise.
    ready = os.path.join(A.workdir, "ready")
    waiter = ("import os, signal, sys, time\n"
              "signal.signal(signal.SIGTERM, lambda *a: os._exit(7))\n"
              "open(%r, 'w').close()\n"
              "for _ in range(300):\n"
              "    time.sleep(0.02)\n"
              "sys.exit(0)\n" % ready)
    for sig, want in ((signal.SIGTERM, 7), (signal.SIGINT, 0)):
        if os.path.exists(ready):
            os.unlink(ready)
        p = subprocess.Popen([sys.executable, A.pyprof, "run", "--quiet",
                              A.python, "-c", waiter], env=base_env(),
                             cwd=A.workdir, stderr=subprocess.PIPE,
                             universal_newlines=True)
        deadline = time.time() + 20
        while not os.path.exists(ready) and time.time() < deadline:
            time.sleep(0.02)
        p.send_signal(sig)
        try:
            _, err = p.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        CHK.equal(p.returncode, want, "%s sent to pyprof alone: returncode"
                  % signal.Signals(sig).name)
        CHK.check("Traceback" not in err, "traceback: %s" % err)


def case_run_nonpython():
    """sh -c 'exit 5': status 5, no profile, and the reason on stderr."""
    outdir = os.path.join(A.workdir, "out")
    os.makedirs(outdir)
    r = cli("run", "--out", os.path.join(outdir, "p.%p.prof"), "sh", "-c",
            "exit 5")
    CHK.equal(r.status, 5, "status")
    CHK.equal(os.listdir(outdir), [], "files written")
    CHK.equal(lines(r.err), ["pyprof: no profile written to " + outdir],
              "stderr")


def case_run_count():
    """The workload: fib 177/1, leaf 50, middle 5, main 1 and their edges;
    the file is named by %p = the python's pid; the library's own wrote
    line is the only one (pyprof does not repeat it)."""
    write(os.path.join(A.workdir, "work.py"), WORKLOAD)
    r = cli("run", "--out", "w.%p.prof", A.python, "work.py")
    CHK.equal(r.status, 0, "status")
    files = glob.glob(os.path.join(A.workdir, "w.*.prof"))
    if not CHK.equal(len(files), 1, "files written"):
        return
    CHK.check(re.search(r"/w\.\d+\.prof$", files[0]), "name %s" % files[0])
    CHK.equal(lines(r.err), ["pyprof: wrote %s (%d functions)" % (
        files[0], len(load(files[0])[0]))], "stderr")
    stats, meta = load(files[0])
    check_counts(stats, 1, "run")
    CHK.equal((meta or {}).get("tool"), "libpyprof", "metadata tool")


def case_run_options():
    """--timer cpu, --bias 1e-7, --quiet and --out with %n reach the
    library (seen in the file's metadata and name). Invalid values of
    each, and invalid PYPROF_* values inherited, exit 2 with one line and
    do not start the command."""
    write(os.path.join(A.workdir, "work.py"), WORKLOAD)
    r = cli("run", "--timer", "cpu", "--bias", "1e-7", "--quiet",
            "--out", "o.%n.prof", A.python, "work.py")
    CHK.equal(r.status, 0, "status")
    CHK.equal(r.err, "", "stderr with --quiet")
    path = os.path.join(A.workdir, "o.0.prof")
    if CHK.check(os.path.isfile(path), "no o.0.prof"):
        stats, meta = load(path)
        meta = meta or {}
        CHK.equal(meta.get("timer"), "cpu", "metadata timer")
        bias = float(meta.get("bias_seconds", "nan"))
        CHK.check(abs(bias - 1e-7) < 1e-8, "bias_seconds %r, want ~1e-7" % bias)
        check_counts(stats, 1, "--timer cpu")

    marker = os.path.join(A.workdir, "ran")
    touch = ["--", "sh", "-c", "touch " + q(marker)]
    for args in (["--timer", "fast"], ["--bias", "-1"], ["--bias", "2"],
                 ["--bias", "abc"], ["--out", ""], ["--out", "x%"],
                 ["--out", "p%q"], ["--out", "nodir/x.prof"],
                 ["--signal", "KILL"], ["--signal", "SEGV"],
                 ["--signal", "NOPE"], ["--signal", "usr1"],
                 ["--signal", "RTMIN-1"], ["--signal", "RTMAX+1"],
                 ["--signal", "0"], ["--signal", "999"]):
        one_error_line(cli("run", *(args + touch)), "run " + " ".join(args))
    for name, value in (("PYPROF_TIMER", "fast"), ("PYPROF_BIAS", "x"),
                        ("PYPROF_OUT", "a%z"), ("PYPROF_QUIET", "maybe"),
                        ("PYPROF_SIGNAL", "STOP"), ("PYPROF_START", "later"),
                        ("PYPROF_CHILDREN", "maybe"),
                        ("PYPROF_TOGGLE_SIGNAL", "ABRT")):
        one_error_line(cli("run", *touch, env={name: value}),
                       "%s=%s in the environment" % (name, value), name)
    one_error_line(cli("run", "--signal", "USR1", *touch,
                       env={"PYPROF_TOGGLE_SIGNAL": "SIGUSR1"}),
                   "--signal USR1 with PYPROF_TOGGLE_SIGNAL=SIGUSR1",
                   "PYPROF_TOGGLE_SIGNAL")
    one_error_line(cli("run", *touch, env={"PYPROF_START": "paused"}),
                   "PYPROF_START=paused without a toggle signal", "PYPROF_START")
    CHK.check(not os.path.exists(marker), "the command ran despite an error")
    # Good values of the other forms are accepted.
    for args in (["--bias", "0"], ["--bias", "2.5e-8"], ["--signal", "off"],
                 ["--signal", "SIGUSR1"], ["--signal", "RTMIN+3"],
                 ["--signal", "SIGRTMAX-1"], ["--signal", "10"],
                 ["--out", "a%%b.%p.%t.prof"]):
        r = cli("run", *(args + ["--quiet", "--", "true"]))
        CHK.equal(r.status, 0, "run %s true: status (%s)" % (" ".join(args),
                                                             r.err.strip()))


def case_run_env():
    """An existing LD_PRELOAD stays first and ours is appended; PYPROF_*
    set by pyprof are visible; a relative --out is resolved against
    pyprof's cwd even when the command cds elsewhere first; an inherited
    PYPROF_ROOT_PID (pyprof run inside a profiled program) is dropped, so
    the command writes the file named by --out, not a child's name."""
    show = ["sh", "-c", 'printf "%s|%s" "$LD_PRELOAD" "$PYPROF_OUT"']
    lib = os.path.abspath(A.lib)
    r = cli("run", "--quiet", "--out", "x.prof", *show,
            env={"LD_PRELOAD": "/nonexistent/libfoo.so"})
    CHK.equal(r.out, "/nonexistent/libfoo.so:%s|%s" % (
        lib, os.path.join(A.workdir, "x.prof")), "LD_PRELOAD|PYPROF_OUT")
    r = cli("run", "--quiet", *show)
    CHK.equal(r.out.split("|")[0], lib, "LD_PRELOAD without one before")

    sub = os.path.join(A.workdir, "sub")
    os.makedirs(sub)
    write(os.path.join(sub, "work.py"), WORKLOAD)
    r = cli("run", "--quiet", "--out", "cd.prof", "sh", "-c",
            "cd sub && exec %s work.py" % q(A.python))
    CHK.equal(r.status, 0, "status")
    CHK.check(os.path.isfile(os.path.join(A.workdir, "cd.prof")),
              "cd.prof not in pyprof's directory: %s" % os.listdir(A.workdir))
    r = cli("run", "--quiet", "--out", "root.prof", A.python, "sub/work.py",
            env={"PYPROF_ROOT_PID": "1"})
    CHK.equal((r.status, sorted(glob.glob(os.path.join(A.workdir, "root*")))),
              (0, [os.path.join(A.workdir, "root.prof")]),
              "with PYPROF_ROOT_PID=1 inherited: status, files")


def case_run_lookup():
    """With PYPROF_LIB unset: PREFIX/bin/pyprof uses PREFIX/lib/libpyprof.so,
    ROOT/scripts/pyprof uses ROOT/build/libpyprof.so; neither present, or
    PYPROF_LIB naming no file: status 2, one line."""
    write(os.path.join(A.workdir, "work.py"), WORKLOAD)
    for script, libdir in (("inst/bin/pyprof", "inst/lib"),
                           ("tree/scripts/pyprof", "tree/build")):
        script = os.path.join(A.workdir, script)
        os.makedirs(os.path.dirname(script))
        shutil.copy(A.pyprof, script)
        argv = [sys.executable, script, "run", "--out", "lk.prof", A.python,
                "work.py"]
        one_error_line(run(argv, drop=["PYPROF_LIB"]),
                       "%s without a library" % script, "libpyprof.so")
        os.makedirs(os.path.join(A.workdir, libdir))
        shutil.copy(A.lib, os.path.join(A.workdir, libdir, "libpyprof.so"))
        r = run(argv, drop=["PYPROF_LIB"])
        CHK.equal(r.status, 0, "%s: status (%s)" % (script, r.err.strip()))
        path = os.path.join(A.workdir, "lk.prof")
        if CHK.check(os.path.isfile(path), "%s: no profile" % script):
            check_counts(load(path)[0], 1, script)
            os.unlink(path)
    one_error_line(cli("run", "true", env={"PYPROF_LIB": "/nonexistent.so"}),
                   "PYPROF_LIB=/nonexistent.so", "/nonexistent.so")


def case_run_snapshot():
    """--signal USR1 --out s.%n.prof: the program signals itself once
    (s.0.prof, a snapshot), then pyprof receives USR1 and passes it on
    (s.1.prof), then the program ends (s.2.prof, the final profile, which
    has every call: fib 177/1 ...)."""
    write(os.path.join(A.workdir, "work.py"), WORKLOAD)
    go = os.path.join(A.workdir, "go")
    snap = os.path.join(A.workdir, "s.%d.prof")
    prog = ("import os, signal, time, runpy\n"
            "os.kill(os.getpid(), signal.SIGUSR1)\n"
            "for _ in range(500):\n"
            "    if os.path.exists(%r): break\n"
            "    time.sleep(0.02)\n"
            "runpy.run_path('work.py')\n" % go)
    write(os.path.join(A.workdir, "snap.py"), prog)
    p = subprocess.Popen([sys.executable, A.pyprof, "run", "--signal", "USR1",
                          "--out", "s.%n.prof", A.python, "snap.py"],
                         env=base_env(), cwd=A.workdir,
                         stderr=subprocess.PIPE, universal_newlines=True)
    deadline = time.time() + 20
    while (not os.path.exists(snap % 0) and p.poll() is None
           and time.time() < deadline):
        time.sleep(0.02)
    if p.poll() is not None:
        err = p.stderr.read()
        if "PYPROF_SIGNAL" in err:
            raise Skip("the library does not support PYPROF_SIGNAL yet: "
                       + err.strip())
    p.send_signal(signal.SIGUSR1)
    while not os.path.exists(snap % 1) and time.time() < deadline:
        time.sleep(0.02)
    write(go, "")
    _, err = p.communicate(timeout=TIMEOUT)
    CHK.equal(p.returncode, 0, "status (%s)" % err.strip())
    CHK.equal(sorted(os.path.basename(f) for f in glob.glob(
        os.path.join(A.workdir, "s.*.prof"))),
        ["s.0.prof", "s.1.prof", "s.2.prof"], "files")
    if os.path.isfile(snap % 2):
        check_counts(load(snap % 2)[0], 1, "final profile")


def table_rows(out):
    """[(ncalls, function)] of `view`'s table."""
    rows, seen = [], False
    for line in out.splitlines():
        if line.split()[:1] == ["ncalls"]:
            seen = True
            continue
        if seen and line.strip():
            f = line.split()
            rows.append((f[0], f[-1], f))
    return rows


def case_view_sort():
    """--sort ncalls --limit 3: fib 177/1, leaf 50, middle 5 in that order
    and nothing else; header names the file, the timer and Python, the
    counts; --sort name orders by name; the default (cumtime) is
    non-increasing in cumtime; --limit 0 shows all."""
    path = profile_workload("v.prof")
    stats, meta = load(path)
    r = cli("view", path, "--sort", "ncalls", "--limit", "3")
    CHK.equal(r.status, 0, "status")
    rows = table_rows(r.out)
    CHK.equal([(n, os.path.basename(f)) for n, f, _ in rows],
              [("177/1", "work.py:12(fib)"), ("50", "work.py:1(leaf)"),
               ("5", "work.py:5(middle)")], "rows of --sort ncalls --limit 3")
    CHK.check("Files:       " + path in r.out, "no Files line: " + r.out)
    CHK.check("timer wall" in r.out, "no timer in the header: " + r.out)
    CHK.check("Python %s" % meta["python"] in r.out, "no Python version")
    CHK.check("threads 1" in r.out, "no thread count")
    CHK.check("%d functions" % len(stats) in r.out, "no function count")
    CHK.check("showing 3 of %d" % len(stats) in r.out, "no 'showing 3 of'")

    r = cli("view", "--sort", "name", "--limit", "0", path)
    names = [re.sub(r".*\((.*)\)$", r"\1", f) for _, f, _ in table_rows(r.out)]
    CHK.equal(len(names), len(stats), "--limit 0 rows")
    CHK.equal(names, sorted(names), "--sort name order")

    r = cli("view", path)
    cum = [float(f[3]) for _, _, f in table_rows(r.out)]
    CHK.equal(cum, sorted(cum, reverse=True), "default order (cumtime)")
    CHK.equal(len(cum), min(25, len(stats)), "default limit")


def edge_blocks(out):
    """{function label: [(ncalls, other label)]} of --callers/--callees."""
    blocks, cur = {}, None
    for line in out.splitlines():
        if line and not line.startswith(" ") and "  [ncalls " in line:
            cur = blocks.setdefault(line.split("  [")[0], [])
        elif cur is not None and line.startswith("    ") and \
                line.split()[0] != "ncalls" and not line.strip().startswith("("):
            f = line.split()
            cur.append((f[0], f[-1]))
    return blocks


def case_view_edges():
    """--callers '^fib$': main 1, fib 176/2; --callers leaf: middle 50;
    --callees main: middle 5, fib 1; --callees middle: leaf 50; a pattern
    with '/' or ':' matches file:line; no match: 0 functions."""
    path = profile_workload("e.prof")
    stats = load(path)[0]
    key = {k[2]: k for k in stats if k[0].endswith("work.py")}

    def lab(name):
        return "%s:%d(%s)" % key[name]

    def edges(*args):
        r = cli("view", path, *args)
        CHK.equal(r.status, 0, "view %s: status" % " ".join(args))
        return edge_blocks(r.out)

    got = edges("--callers", "^fib$")
    CHK.equal({k: sorted(v) for k, v in got.items()},
              {lab("fib"): sorted([("1", lab("main")), ("176/2", lab("fib"))])},
              "--callers ^fib$")
    CHK.equal(edges("--callers", "leaf"), {lab("leaf"): [("50", lab("middle"))]},
              "--callers leaf")
    got = edges("--callees", "^main$", "--sort", "ncalls")
    CHK.equal(got, {lab("main"): [("5", lab("middle")), ("1", lab("fib"))]},
              "--callees ^main$ --sort ncalls")
    CHK.equal(edges("--callees", "middle"), {lab("middle"): [("50", lab("leaf"))]},
              "--callees middle")
    CHK.equal(list(edges("--callers", "work.py:%d(leaf)" % key["leaf"][1])),
              [lab("leaf")], "--callers work.py:LINE(leaf)")
    CHK.equal(sorted(edges("--callers", "/work.py:1[(]")),
              sorted([lab("leaf"), lab("<module>")]), "--callers regex")
    r = cli("view", path, "--callers", "no_such_function")
    CHK.equal(r.status, 0, "no match: status")
    CHK.check("0 functions" in r.out, "no match: " + r.out)
    both = edges("--callers", "^leaf$", "--callees", "^leaf$")
    CHK.equal(both, {lab("leaf"): [("50", lab("middle"))]},
              "--callers and --callees together (leaf calls nothing)")


def case_view_json():
    """--json --sort ncalls --limit 2: rows fib (177, 1) and leaf (50, 50),
    the metadata of the file, total calls; with --callers fib, the edges."""
    path = profile_workload("j.prof")
    stats, meta = load(path)
    r = cli("view", "--json", "--sort", "ncalls", "--limit", "2", path)
    CHK.equal(r.status, 0, "status")
    doc = json.loads(r.out)
    CHK.equal([(x["name"], x["ncalls"], x["primitive_calls"])
               for x in doc["rows"]], [("fib", 177, 1), ("leaf", 50, 50)],
              "rows")
    CHK.equal(doc["metadata"], meta, "metadata")
    CHK.equal(doc["functions"], len(stats), "functions")
    CHK.equal(doc["total_calls"], sum(v[1] for v in stats.values()),
              "total_calls")
    doc = json.loads(cli("view", "--json", "--callers", "^fib$", path).out)
    rows = doc["callers"]["rows"]
    CHK.equal(sorted((e["name"], e["ncalls"], e["primitive_calls"])
                     for e in rows[0]["callers"]) if rows else None,
              [("fib", 176, 2), ("main", 1, 1)], "json callers of fib")


def case_view_cprofile():
    """A file from `python -m cProfile -o`: same rows (fib 177/1 ...), no
    libpyprof header lines; merged with a libpyprof file, counts add."""
    write(os.path.join(A.workdir, "work.py"), WORKLOAD)
    r = run([A.python, "-m", "cProfile", "-o", "c.prof", "work.py"])
    if r.status != 0:
        raise AssertionError("cProfile failed: %s" % r)
    r = cli("view", "c.prof", "--sort", "ncalls", "--limit", "3")
    CHK.equal(r.status, 0, "status (%s)" % r.err)
    CHK.equal([(n, f) for n, f, _ in table_rows(r.out)],
              [("177/1", "work.py:12(fib)"), ("50", "work.py:1(leaf)"),
               ("5", "work.py:5(middle)")], "rows")
    CHK.check("Profiler:" not in r.out and "Process:" not in r.out,
              "metadata lines for a cProfile file: " + r.out)
    doc = json.loads(cli("view", "--json", "c.prof").out)
    CHK.equal(doc["metadata"], {}, "json metadata of a cProfile file")
    ours = profile_workload("l.prof")
    r = cli("view", "c.prof", ours, "--sort", "ncalls", "--limit", "2",
            "--json")
    CHK.equal([(x["name"], x["ncalls"]) for x in json.loads(r.out)["rows"]],
              [("fib", 177), ("fib", 177)],
              "cProfile + libpyprof (different file names: two rows)")


def case_merge():
    """Two runs merged: fib 354/2, leaf 100, edge middle->leaf 100 ...;
    pstats.Stats and `python -m pstats` read it; metadata: tool kept, pids
    joined, merged_files 2; merging that with a third run: 3, counts x3."""
    a = profile_workload("a.prof")
    b = profile_workload("b.prof")
    out = os.path.join(A.workdir, "m.prof")
    r = cli("merge", "-o", out, a, b)
    CHK.equal((r.status, r.out, r.err), (0, "", ""), "merge status/output")
    stats, meta = load(out)
    check_counts(stats, 2, "merged")
    ma, mb = load(a)[1], load(b)[1]
    CHK.equal(meta.get("tool"), "libpyprof", "merged tool")
    CHK.equal(meta.get("pid"), "%s,%s" % (ma["pid"], mb["pid"]), "merged pid")
    CHK.equal(meta.get("python"), ma["python"], "merged python")
    CHK.equal(meta.get("merged_files"), "2", "merged_files")
    r = run([A.python, "-c", "import pstats, sys\n"
             "s = pstats.Stats(sys.argv[1])\n"
             "fib = [v for k, v in s.stats.items() if k[2] == 'fib'][0]\n"
             "print(s.total_calls, s.prim_calls, fib[1], fib[0])", out])
    want = "%d %d 354 2" % (sum(v[1] for v in stats.values()),
                            sum(v[0] for v in stats.values()))
    CHK.equal(r.out.strip(), want, "pstats.Stats: total, primitive, fib "
              "ncalls and primitive (%s)" % r.err.strip())
    r = run([A.python, "-m", "pstats", out], stdin="sort ncalls\nstats 1\nquit\n")
    CHK.check(r.status == 0 and "354/2" in r.out and "Traceback" not in r.err,
              "python -m pstats: %s" % r)
    c = profile_workload("c.prof")
    out3 = os.path.join(A.workdir, "m3.prof")
    r = cli("merge", "-o", out3, out, c)
    CHK.equal(r.status, 0, "merge of a merge: status")
    stats3, meta3 = load(out3)
    check_counts(stats3, 3, "merge of a merge")
    CHK.equal(meta3.get("merged_files"), "3", "merge of a merge: merged_files")
    r = cli("view", out3)
    CHK.check("Merged:      3 profiles" in r.out, "view of a merge: " + r.out)


def case_bad_files():
    """Each bad input to view and to merge: status 2, one `pyprof:` line
    naming the file, no traceback, no merge output written."""
    good = profile_workload("good.prof")
    with open(good, "rb") as f:
        data = f.read()
    rng = random.Random(1)
    bad = {
        "truncated.prof": data[:len(data) // 3],
        "truncated-meta.prof": data[:-3],
        "empty.prof": b"",
        "random.prof": bytes(rng.randrange(256) for _ in range(4096)),
        "text.prof": b"hello, this is not a profile\n",
        "list.prof": marshal.dumps([1, 2, 3]),
        "badentry.prof": marshal.dumps({("a", 1, "f"): (1, 2)}),
        "trailing.prof": data + b"\x00garbage",
    }
    for name, content in bad.items():
        with open(os.path.join(A.workdir, name), "wb") as f:
            f.write(content)
    os.makedirs(os.path.join(A.workdir, "adir.prof"))
    names = list(bad) + ["missing.prof", "adir.prof"]
    out = os.path.join(A.workdir, "merged.prof")
    for name in names:
        path = os.path.join(A.workdir, name)
        one_error_line(cli("view", path), "view " + name, path)
        one_error_line(cli("view", good, path), "view good " + name, path)
        one_error_line(cli("merge", "-o", out, good, path), "merge " + name,
                       path)
        CHK.check(not os.path.exists(out), "merge %s wrote %s" % (name, out))
    one_error_line(cli("merge", "-o", os.path.join(A.workdir, "adir.prof"),
                       good), "merge -o a directory", "adir.prof")
    one_error_line(cli("merge", "-o", "/nonexistent/dir/x.prof", good),
                   "merge -o into a missing directory", "/nonexistent/dir")


def case_compat():
    """view, merge and run under the oldest Python 3.8+ found: same results."""
    found = sorted(glob.glob("/root/.pyenv/versions/3.*/bin/python3") +
                   glob.glob("/usr/bin/python3.*[0-9]"),
                   key=lambda p: [int(x) for x in
                                  re.findall(r"3\.(\d+)", p)[-1:]])
    olds = []
    for p in found:
        r = run([p, "-c", "import sys; print(sys.version_info >= (3, 8))"])
        if r.out.strip() == "True":
            olds.append(p)
    if not olds:
        raise Skip("no Python 3.8+ interpreter besides this one")
    old = olds[0]
    print("using " + old)
    a = profile_workload("a.prof")
    out = os.path.join(A.workdir, "m.prof")
    r = run([old, A.pyprof, "merge", "-o", out, a, a])
    CHK.equal((r.status, r.err), (0, ""), "merge under " + old)
    if os.path.isfile(out):
        check_counts(load(out)[0], 2, "merge under " + old)
    r = run([old, A.pyprof, "view", out, "--sort", "ncalls", "--limit", "1"])
    CHK.equal([n for n, _, _ in table_rows(r.out)], ["354/2"],
              "view under %s (%s)" % (old, r.err))
    one_error_line(run([old, A.pyprof, "view", "missing.prof"]),
                   "error under " + old)
    r = run([old, A.pyprof, "run", "--quiet", "sh", "-c", "exit 4"])
    CHK.equal(r.status, 4, "run under " + old)


CASES = {name[5:]: fn for name, fn in globals().items()
         if name.startswith("case_")}


def main():
    global A
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", required=True, choices=sorted(CASES))
    ap.add_argument("--pyprof", required=True)
    ap.add_argument("--lib", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--workdir", required=True)
    A = ap.parse_args()
    A.pyprof = os.path.abspath(A.pyprof)
    A.lib = os.path.abspath(A.lib)
    A.workdir = os.path.abspath(A.workdir)
    if os.path.isdir(A.workdir):
        shutil.rmtree(A.workdir)
    os.makedirs(A.workdir)
    print("case %s: %s" % (A.case, CASES[A.case].__doc__.strip()), flush=True)
    try:
        CASES[A.case]()
    except Skip as e:
        print("SKIP: %s" % e)
        return SKIP
    except AssertionError as e:
        CHK.check(False, str(e))
    if CHK.failures:
        print("%d failure(s)" % len(CHK.failures))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
