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
  compat        view, merge, export, flame and run under the oldest Python
                3.8+ found
  export_collapsed  folded stacks: exact lines for a constructed profile,
                a->b->c and a->d->c kept apart with their calls
  export_speedscope speedscope JSON: frames, samples and weights agree
  export_callgrind  callgrind: own reader, edges and counts as pstats;
                callgrind_annotate reads it (if installed)
  export_pprof  gzipped profile.proto, decoded here: strings, samples,
                locations, functions, totals
  flame         flame graph SVG: well-formed, boxes, widths, tooltips
  flame_render  headless Chromium draws it, search and zoom run (skipped
                without /usr/bin/chromium)
  view_tree     view --tree: indentation, counts, limits, JSON
  tree_files    merge keeps call paths; bad call-path data is an error
  bad_files_export  bad inputs and outputs for export, flame, view --tree
  dump          dump PID on running profiled programs prints the new file
  dump_errors   dump on sleep, a gone pid, an inert library, PYPROF_SIGNAL
                off, a program with its own handler: one line, status 2
  calibrate     a positive PYPROF_BIAS line; bad options
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
    for sub in ("", "run", "view", "merge", "export", "flame", "dump",
                "calibrate"):
        r = cli(*([sub] if sub else []), "--help")
        CHK.equal(r.status, 0, "pyprof %s --help status" % sub)
        CHK.check(("usage: pyprof " + sub).strip() in r.out,
                  "pyprof %s --help: no usage line: %s" % (sub, r))
    for args in ([], ["frobnicate"], ["view", "--sort", "speed", "x.prof"],
                 ["view", "--limit", "many", "x.prof"],
                 ["view", "--limit", "-1", "x.prof"], ["view"], ["run"],
                 ["run", "--timer"], ["run", "--frob", "true"],
                 ["merge", "x.prof"], ["--frob"], ["export", "x.prof"],
                 ["export", "x.prof", "-f", "gif", "-o", "x"],
                 ["export", "x.prof", "-f", "collapsed"],
                 ["export", "-f", "pprof", "-o", "x"], ["flame", "x.prof"],
                 ["flame", "x.prof", "-o", "x.svg", "--width", "wide"],
                 ["view", "x.prof", "--tree", "--min-percent", "lots"],
                 ["dump"], ["dump", "abc"], ["dump", "1", "--timeout", "x"],
                 ["calibrate", "--runs", "many"], ["calibrate", "extra"]):
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
    """--timer cpu, --bias 1e-7,3e-8 (per event, per far event), --quiet and
    --out with %n reach the library (seen in the file's metadata and name;
    the far part only on sys.monitoring). Invalid values of
    each, and invalid PYPROF_* values inherited, exit 2 with one line and
    do not start the command."""
    write(os.path.join(A.workdir, "work.py"), WORKLOAD)
    r = cli("run", "--timer", "cpu", "--bias", "1e-7,3e-8", "--quiet",
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
        # the far part applies only where there are far events (sys.monitoring)
        far = float(meta.get("bias_far_seconds", "nan"))
        want = 3e-8 if meta.get("hook") == "sys.monitoring" else 0.0
        CHK.check(abs(far - want) < 1e-9, "bias_far_seconds %r, want %g (hook %s)"
                  % (far, want, meta.get("hook")))
        head = cli("view", path).out
        mb = re.search(r"bias (\S+) s/event", head)
        CHK.check(mb and abs(float(mb.group(1)) - 1e-7) < 1e-9 and
                  (("per far event" in head) == (want > 0)),
                  "view header shows the bias (and the far one on "
                  "sys.monitoring only): %r" % head[:400])
        check_counts(stats, 1, "--timer cpu")

    marker = os.path.join(A.workdir, "ran")
    touch = ["--", "sh", "-c", "touch " + q(marker)]
    for args in (["--timer", "fast"], ["--bias", "-1"], ["--bias", "2"],
                 ["--bias", "1e-8,x"], ["--bias", "1e-8,2e-8,3e-8"],
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


def make_bad_files(good):
    """Writes the bad inputs next to `good` (a profile); returns their
    names (a missing file and a directory among them)."""
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
    return list(bad) + ["missing.prof", "adir.prof"]


def case_bad_files():
    """Each bad input to view and to merge: status 2, one `pyprof:` line
    naming the file, no traceback, no merge output written."""
    good = profile_workload("good.prof")
    names = make_bad_files(good)
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
    syn = write_synthetic("syn.prof")
    ref = os.path.join(A.workdir, "ref.out")
    got = os.path.join(A.workdir, "old.out")
    for args in (["export", "-f", "collapsed"], ["export", "-f", "pprof"],
                 ["export", "-f", "callgrind"], ["export", "-f", "speedscope"],
                 ["flame"]):
        r = run([old, A.pyprof] + args + [syn, "-o", got])
        CHK.equal((r.status, r.err), (0, ""), "%s under %s" % (args, old))
        cli(*(args + [syn, "-o", ref]))
        if args[-1] != "pprof":  # pprof's gzip header differs by version
            with open(ref, "rb") as f1, open(got, "rb") as f2:
                CHK.check(f1.read() == f2.read(), "%s: output under %s "
                          "differs" % (args, old))
    r = run([old, A.pyprof, "view", syn, "--tree"])
    CHK.equal(r.status, 0, "view --tree under %s (%s)" % (old, r.err))


# ---------------------------------------------------------------------------
# Call paths: export, flame, view --tree, dump, calibrate

ABC = '''\
def c():
    return sum(range(10))


def b():
    return c()


def d():
    return c()


def a():
    for _ in range(3):
        b()
    for _ in range(5):
        d()


a()
'''
# ABC's paths below a, by function name: (calls) of each.
ABC_PATHS = {("a",): 1, ("a", "b"): 3, ("a", "b", "c"): 3, ("a", "d"): 5,
             ("a", "d", "c"): 5}


def load3(path):
    """(stats, metadata, tree) of a .prof file; None for what is absent."""
    with open(path, "rb") as f:
        data = f.read()
    objs = []
    f = __import__("io").BytesIO(data)
    while f.tell() < len(data):
        objs.append(marshal.load(f))
    return tuple(objs + [None] * (3 - len(objs)))[:3]


def profile_abc(name):
    """ABC under `pyprof run`; returns (path, stats, meta, tree)."""
    script = os.path.join(A.workdir, "abc.py")
    if not os.path.exists(script):
        write(script, ABC)
    out = os.path.join(A.workdir, name)
    r = cli("run", "--quiet", "--out", out, "--", A.python, script)
    if r.status != 0 or not os.path.isfile(out):
        raise AssertionError("could not make a profile: %s" % r)
    stats, meta, tree = load3(out)
    if tree is None:
        raise AssertionError("%s: the library wrote no call paths" % out)
    return (out, stats, meta, tree)


def tree_paths(tree):
    """{(keys root..node): [calls, tt, ct]} of a tree, added by path."""
    out, paths = {}, []
    for parent, lab, calls, tt, ct in tree["nodes"]:
        path = (paths[parent] if parent >= 0 else ()) + \
            (tuple(tree["labels"][lab]),)
        paths.append(path)
        v = out.setdefault(path, [0, 0.0, 0.0])
        v[0] += calls
        v[1] += tt
        v[2] += ct
    return out


def frame(key):
    """The CLI's frame name (documented in `pyprof export --help`)."""
    if key[0] == "~" and key[1] == 0:
        n = key[2]
        return "{%s}" % n[1:-1] if n[:1] == "<" and n[-1:] == ">" else n
    return "%s (%s:%d)" % (key[2], key[0], key[1])


# A constructed profile with known numbers. Node 9 repeats the path of
# node 1 (<module>;a): every output must add them. The built-in's own
# time is under half a microsecond. A file name holds a ';'.
MOD, FA, FB, FC, FD = (("m.py", 1, "<module>"), ("m.py", 10, "a"),
                       ("m.py", 20, "b"), ("m.py", 30, "c"), ("m.py", 40, "d"))
LEN, RUN, WEIRD = (("~", 0, "<built-in method builtins.len>"),
                   ("t.py", 5, "run"), ("we;ird.py", 3, "f"))
SYN_LABELS = [MOD, FA, FB, FC, FD, LEN, RUN, WEIRD]
SYN_NODES = [(-1, 0, 1, 0.001, 0.101),      # 0 <module>
             (0, 1, 1, 0.002, 0.099),       # 1 a
             (1, 2, 3, 0.010, 0.040),       # 2 b
             (2, 3, 3, 0.030, 0.030),       # 3 c
             (1, 4, 5, 0.007, 0.057),       # 4 d
             (4, 3, 5, 0.0499996, 0.05),    # 5 c
             (5, 5, 5, 0.0000004, 0.0000004),  # 6 len
             (-1, 6, 1, 0.0, 0.0205),       # 7 run (another thread)
             (7, 3, 2, 0.02, 0.02),         # 8 c
             (0, 1, 1, 0.001, 0.001),       # 9 a again
             (7, 7, 1, 0.0005, 0.0005)]     # 10 f in we;ird.py
SYN_TOTAL = 0.1215
SYN_CALLS = sum(n[2] for n in SYN_NODES)
# Own microseconds of each path of SYN with own time (paths as keys).
SYN_OWN_US = {(MOD,): 1000, (MOD, FA): 3000, (MOD, FA, FB): 10000,
              (MOD, FA, FB, FC): 30000, (MOD, FA, FD): 7000,
              (MOD, FA, FD, FC): 49999.6, (MOD, FA, FD, FC, LEN): 0.4,
              (RUN, FC): 20000, (RUN, WEIRD): 500}
# Collapsed lines: rounded, zeros left out.
SYN_US = {p: int(round(v)) for p, v in SYN_OWN_US.items() if round(v) > 0}
SYN_COUNTS = {(MOD,): 1, (MOD, FA): 2, (MOD, FA, FB): 3,
              (MOD, FA, FB, FC): 3, (MOD, FA, FD): 5, (MOD, FA, FD, FC): 5,
              (MOD, FA, FD, FC, LEN): 5, (RUN,): 1, (RUN, FC): 2,
              (RUN, WEIRD): 1}


def stats_from_tree(labels, nodes):
    """A pstats dict that agrees with a tree (no recursion in it)."""
    stats = {}
    for parent, lab, calls, tt, ct in nodes:
        key = labels[lab]
        cc, nc, t, c, callers = stats.get(key, (0, 0, 0.0, 0.0, {}))
        if parent >= 0:
            pk = labels[nodes[parent][1]]
            e = callers.get(pk, (0, 0, 0.0, 0.0))
            callers[pk] = (e[0] + calls, e[1] + calls, e[2] + tt, e[3] + ct)
        stats[key] = (cc + calls, nc + calls, t + tt, c + ct, callers)
    return stats


def write_synthetic(name, nodes=None, tree=True, meta=True):
    nodes = SYN_NODES if nodes is None else nodes
    path = os.path.join(A.workdir, name)
    data = marshal.dumps(stats_from_tree(SYN_LABELS, nodes))
    if meta:
        data += marshal.dumps({"tool": "libpyprof", "timer": "wall",
                               "python": "3.11.7", "pid": "4242",
                               "threads": "2"})
    if tree:
        data += marshal.dumps({"version": 1, "labels": SYN_LABELS,
                               "nodes": nodes, "truncated": 0,
                               "max_depth": 256})
    with open(path, "wb") as f:
        f.write(data)
    return path


def cprofile_file(name, script_text=ABC):
    """A profile written by cProfile (no metadata, no call paths)."""
    script = os.path.join(A.workdir, "cp_" + name + ".py")
    write(script, script_text)
    out = os.path.join(A.workdir, name)
    r = run([A.python, "-m", "cProfile", "-o", out, script])
    if r.status != 0:
        raise AssertionError("cProfile failed: %s" % r)
    return out


def no_paths_error(args, path, what):
    r = cli(*args)
    one_error_line(r, what, path)
    CHK.check("call paths" in r.err, "%s: should say there are no call "
              "paths: %r" % (what, r.err))


def export(path, fmt, *extra):
    """Runs export; returns (Result, output bytes or None)."""
    out = os.path.join(A.workdir, "out.%s" % fmt)
    if os.path.exists(out):
        os.unlink(out)
    r = cli("export", path, "--format", fmt, "-o", out, *extra)
    data = None
    if os.path.isfile(out):
        with open(out, "rb") as f:
            data = f.read()
    CHK.equal((r.status, r.out, r.err), (0, "", ""),
              "export %s %s: status, stdout, stderr" % (fmt, " ".join(extra)))
    return r, data


def parse_collapsed(text, what):
    """{(frame, ...): value}; every line `a;b;c N` with N > 0, no path
    twice."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(.+) (\d+)$", line)
        if not CHK.check(m, "%s: bad line %r" % (what, line)):
            continue
        path = tuple(m.group(1).split(";"))
        CHK.check(path not in out, "%s: path twice: %r" % (what, line))
        CHK.check(int(m.group(2)) > 0, "%s: value 0: %r" % (what, line))
        out[path] = int(m.group(2))
    return out


def case_export_collapsed():
    """The constructed profile: exact lines for --value us (own time in
    microseconds, rounded; the 0.4 us built-in left out) and --value calls
    (every path, a repeated path added: <module>;a 2); a ';' in a file name
    becomes '_'. A real run of a->b->c, a->d->c: c is 3 calls under b and 5
    under d, two lines. A cProfile file: one line, status 2."""
    syn = write_synthetic("syn.prof")

    def names(paths):
        return {tuple(frame(k).replace(";", "_") for k in p): v
                for p, v in paths.items()}
    _, data = export(syn, "collapsed")
    got = parse_collapsed((data or b"").decode(), "synthetic us")
    CHK.equal(got, names(SYN_US), "synthetic --value us")
    CHK.check(b"we_ird.py" in (data or b""), "';' in a file name not '_'")
    _, data = export(syn, "collapsed", "--value", "calls")
    CHK.equal(parse_collapsed((data or b"").decode(), "synthetic calls"),
              names(SYN_COUNTS), "synthetic --value calls")
    r = cli("export", syn, "-f", "collapsed", "--value", "calls", "-o", "-")
    CHK.equal(r.out.encode(), data, "-o - writes the same to stdout")

    path, stats, meta, tree = profile_abc("abc.prof")
    _, data = export(path, "collapsed", "--value", "calls")
    got = parse_collapsed((data or b"").decode(), "abc calls")
    labels = {k[2]: frame(k) for k in tree["labels"]
              if k[0].endswith("abc.py")}
    # The paths from a down, by name, and their counts.
    mine = {}
    for p, v in got.items():
        names_ = [re.sub(r" \(.*", "", f) for f in p]
        if "a" in names_:
            CHK.check(all(f == labels.get(n, f) for f, n in zip(p, names_)),
                      "frame names in %r" % (p,))
            mine[tuple(names_[names_.index("a"):])] = v
    want = dict(ABC_PATHS)
    want.update({("a", x, "c", "{built-in method builtins.sum}"): n
                 for x, n in (("b", 3), ("d", 5))})
    CHK.equal(mine, want, "a;b;c and a;d;c with their calls")
    _, data = export(path, "collapsed")
    got = parse_collapsed((data or b"").decode(), "abc us")
    total = sum(got.values())
    CHK.check(abs(total - sum(n[3] for n in tree["nodes"]) * 1e6)
              <= len(got) + 1, "sum of us %d vs the tree's own time" % total)

    cp = cprofile_file("cp.prof")
    no_paths_error(["export", cp, "-f", "collapsed", "-o", "x"], cp,
                   "collapsed of a cProfile file")
    CHK.check(not os.path.exists(os.path.join(A.workdir, "x")),
              "output written for a cProfile file")
    nopaths = write_synthetic("nopaths.prof", tree=False)
    no_paths_error(["export", nopaths, "-f", "collapsed", "-o", "x"],
                   nopaths, "collapsed of a file without call paths")


def check_speedscope(doc, what):
    """The speedscope file-format rules we rely on; returns
    [(frame names root..leaf, weight)]."""
    CHK.equal(doc.get("$schema"),
              "https://www.speedscope.app/file-format-schema.json",
              what + ": $schema")
    CHK.equal((doc.get("exporter"), doc.get("activeProfileIndex")),
              ("libpyprof", 0), what + ": exporter, activeProfileIndex")
    CHK.check(isinstance(doc.get("name"), str), what + ": name")
    frames = doc["shared"]["frames"]
    for f in frames:
        CHK.check(isinstance(f.get("name"), str) and f["name"] and
                  set(f) <= {"name", "file", "line", "col"} and
                  isinstance(f.get("line", 0), int) and
                  isinstance(f.get("file", ""), str),
                  "%s: bad frame %r" % (what, f))
    CHK.equal(len(doc["profiles"]), 1, what + ": profiles")
    p = doc["profiles"][0]
    CHK.equal((p["type"], p["unit"], p["startValue"]),
              ("sampled", "seconds", 0), what + ": type, unit, startValue")
    CHK.equal(len(p["samples"]), len(p["weights"]),
              what + ": as many weights as samples")
    CHK.check(all(isinstance(w, (int, float)) and w > 0
                  for w in p["weights"]), what + ": weights > 0")
    CHK.check(abs(p["endValue"] - sum(p["weights"])) < 1e-9,
              what + ": endValue %r is the sum of the weights %r"
              % (p["endValue"], sum(p["weights"])))
    out = []
    for s, w in zip(p["samples"], p["weights"]):
        if CHK.check(s and all(isinstance(i, int) and 0 <= i < len(frames)
                               for i in s), "%s: bad sample %r" % (what, s)):
            out.append((tuple(frames[i]["name"] for i in s), w))
    CHK.equal(len(set(x for x, _ in out)), len(out),
              what + ": each stack once")
    return out


def case_export_speedscope():
    """The constructed profile: one sample per path with own time, weights
    are the own seconds, endValue their sum (the total), frames carry
    file and line (not built-ins). A real a->b->c / a->d->c run: both
    stacks present, frames consistent. cProfile file: status 2."""
    syn = write_synthetic("syn.prof")
    _, data = export(syn, "speedscope")
    doc = json.loads(data.decode())
    got = check_speedscope(doc, "synthetic")
    want = {tuple(frame(k) if k == LEN else k[2] for k in p): us
            for p, us in SYN_OWN_US.items()}
    CHK.equal({s: round(w * 1e6, 1) for s, w in got}, want,
              "synthetic stacks and weights (us)")
    CHK.check(abs(doc["profiles"][0]["endValue"] - SYN_TOTAL) < 1e-9,
              "endValue = total %r" % SYN_TOTAL)
    fr = {f["name"]: f for f in doc["shared"]["frames"]}
    CHK.equal((fr.get("d", {}).get("file"), fr.get("d", {}).get("line")),
              ("m.py", 40), "frame d's file and line")
    CHK.equal(fr.get(frame(LEN)), {"name": frame(LEN)}, "built-in frame")

    path, stats, meta, tree = profile_abc("abc.prof")
    _, data = export(path, "speedscope")
    got = check_speedscope(json.loads(data.decode()), "abc")
    stacks = [s for s, _ in got]
    for mid in ("b", "d"):
        CHK.check(any(s[-4:] == ("a", mid, "c", "{built-in method "
                                 "builtins.sum}") for s in stacks),
                  "no stack a;%s;c;sum in %r" % (mid, stacks))
    own = sum(n[3] for n in tree["nodes"] if n[3] > 0)
    CHK.check(abs(sum(w for _, w in got) - own) < 1e-9,
              "weights add up to the tree's own time")
    cp = cprofile_file("cp.prof")
    no_paths_error(["export", cp, "-f", "speedscope", "-o", "x"], cp,
                   "speedscope of a cProfile file")


def parse_callgrind(text, what):
    """A small reader of the callgrind format (name compression, calls=
    lines): returns (events, summary, {(file, fn): self cost},
    {((file, fn), (file, fn)): [calls, inclusive cost]})."""
    lines = text.splitlines()
    names = {"fl": {}, "fn": {}}

    def name(kind, s):
        m = re.match(r"^\((\d+)\)(?: (.+))?$", s)
        if not m:
            return s
        if m.group(2) is not None:
            CHK.check(m.group(1) not in names[kind],
                      "%s: %s id %s defined twice" % (what, kind, m.group(1)))
            names[kind][m.group(1)] = m.group(2)
        if not CHK.check(m.group(1) in names[kind], "%s: %s id %s used "
                         "before definition" % (what, kind, m.group(1))):
            return s
        return names[kind][m.group(1)]
    i, events, summary = 0, None, None
    CHK.equal(lines[:1], ["# callgrind format"], what + ": first line")
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.startswith("events:"):
            events = line.split()[1:]
            break
        CHK.check(re.match(r"^(#.*|version: 1|creator: .*|cmd: .*|"
                           r"positions: line|event: .*|)$", line),
                  "%s: header line %r" % (what, line))
    CHK.check(events, what + ": no events line")
    selfc, calls = {}, {}
    fl = fn = cfl = cfn = None
    pending = None
    for line in lines[i:]:
        if not line or line.startswith("#"):
            continue
        if line.startswith("summary:") or line.startswith("totals:"):
            summary = int(line.split()[1])
        elif line.startswith("fl="):
            fl = name("fl", line[3:])
        elif line.startswith("fn="):
            fn = name("fn", line[3:])
            selfc.setdefault((fl, fn), 0)
        elif line.startswith("cfl=") or line.startswith("cfi="):
            cfl = name("fl", line[4:])
        elif line.startswith("cfn="):
            cfn = name("fn", line[4:])
        elif line.startswith("calls="):
            m = re.match(r"^calls=(\d+) (\d+)$", line)
            CHK.check(m and cfn is not None, "%s: bad %r" % (what, line))
            pending = int(m.group(1)) if m else 0
        elif re.match(r"^\d+ \d+$", line):
            cost = int(line.split()[1])
            CHK.check(fn is not None, "%s: cost before fn=" % what)
            if pending is not None:
                e = calls.setdefault(((fl, fn), (cfl or fl, cfn)), [0, 0])
                e[0] += pending
                e[1] += cost
                pending, cfl = None, None
            else:
                selfc[(fl, fn)] = selfc.get((fl, fn), 0) + cost
        else:
            CHK.check(False, "%s: bad line %r" % (what, line))
    CHK.check(pending is None, what + ": calls= without a cost line")
    return events, summary, selfc, calls


def check_callgrind(data, stats, what):
    """The export's functions and edges are the pstats data's."""
    events, summary, selfc, calls = parse_callgrind(data.decode(), what)
    CHK.equal(events, ["us"], what + ": events")

    def cg(key):
        if key[0] == "~" and key[1] == 0:
            return ("<built-in>", frame(key))
        return (key[0], "%s:%d" % (key[2], key[1]))
    funcs = set(stats) | {c for v in stats.values() for c in v[4]}
    CHK.equal(sorted(selfc), sorted(cg(k) for k in funcs),
              what + ": one fn per function (and per caller)")
    CHK.check(all(abs(selfc.get(cg(k), 0) - v[2] * 1e6) <= 0.5 + 1e-6
                  for k, v in stats.items()), what + ": self costs")
    total = sum(v[2] for v in stats.values()) * 1e6
    CHK.check(summary is not None and abs(summary - total) <= 1,
              "%s: summary %r vs %r" % (what, summary, total))
    want = {}
    for callee, v in stats.items():
        for caller, e in v[4].items():
            want[(cg(caller), cg(callee))] = e[0]
    CHK.equal({k: v[0] for k, v in calls.items()}, want,
              what + ": call edges and counts")
    return calls


def case_export_callgrind():
    """WORKLOAD profiled by libpyprof and by cProfile: the callgrind file
    parses (own reader), has one fn per function with its own time, and
    the edges main->middle 5, middle->leaf 50, fib->fib 176, main->fib 1
    with their counts; callgrind_annotate (if installed) reads it, exits 0,
    no warnings, and lists the functions."""
    ours = profile_workload("w.prof")
    cp = os.path.join(A.workdir, "c.prof")
    r = run([A.python, "-m", "cProfile", "-o", cp, "work.py"])
    if r.status != 0:
        raise AssertionError("cProfile failed: %s" % r)
    syn = write_synthetic("syn.prof")
    annotate = shutil.which("callgrind_annotate")
    if not annotate:
        print("note: callgrind_annotate not installed, not run")
    for path in (ours, cp, syn):
        what = os.path.basename(path)
        stats = load(path)[0]
        _, data = export(path, "callgrind")
        calls = check_callgrind(data or b"", stats, what)
        if path != syn:
            got = {(a[1].split(":")[0], b[1].split(":")[0]): v[0]
                   for (a, b), v in calls.items()
                   if a[0].endswith("work.py") and b[0].endswith("work.py")}
            CHK.equal({k: v for k, v in got.items() if k in EDGES},
                      {k: v[0] for k, v in EDGES.items()}, what + ": edges")
        if annotate:
            out = os.path.join(A.workdir, "out.callgrind")
            # Not from the work directory: the tool shortens names there.
            r = run([annotate, "--inclusive=yes", "--threshold=100", out],
                    cwd="/")
            CHK.equal(r.status, 0, "%s: callgrind_annotate status (%s)"
                      % (what, r.err.strip()))
            CHK.check("WARNING" not in r.err and "WARNING" not in r.out,
                      "%s: callgrind_annotate warns: %s" % (what, r))
            names = ("fib", "middle", "leaf", "main") if path != syn else \
                ("a", "b", "c", "d", "run", "builtins.len")
            for n in names:
                CHK.check(re.search(r"[:{ ]%s[:}]" % re.escape(n), r.out),
                          "%s: callgrind_annotate does not show %s:\n%s"
                          % (what, n, r.out))
            CHK.check("PROGRAM TOTALS" in r.out, "%s: no totals" % what)


def pb_varint(data, i):
    shift = value = 0
    while True:
        if i >= len(data):
            raise ValueError("varint runs past the end")
        b = data[i]
        i += 1
        value |= (b & 0x7f) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def pb_fields(data):
    """[(field, wire type, value)] of one protobuf message."""
    i, out = 0, []
    while i < len(data):
        key, i = pb_varint(data, i)
        field, wt = key >> 3, key & 7
        if wt == 0:
            v, i = pb_varint(data, i)
        elif wt == 2:
            n, i = pb_varint(data, i)
            v = data[i:i + n]
            if len(v) != n:
                raise ValueError("field %d runs past the end" % field)
            i += n
        elif wt in (1, 5):
            n = 8 if wt == 1 else 4
            v = data[i:i + n]
            i += n
        else:
            raise ValueError("wire type %d" % wt)
        if field == 0:
            raise ValueError("field number 0")
        out.append((field, wt, v))
    return out


def pb_ints(fields, num):
    """The integers of repeated (packed or not) field `num`."""
    out = []
    for f, wt, v in fields:
        if f != num:
            continue
        if wt == 0:
            out.append(v)
        else:
            i = 0
            while i < len(v):
                x, i = pb_varint(v, i)
                out.append(x)
    return out


def pb_one(fields, num, default=0):
    vals = pb_ints(fields, num)
    return vals[-1] if vals else default


def decode_pprof(data):
    """The parts of a gzipped profile.proto the tests look at."""
    import gzip
    top = pb_fields(gzip.decompress(data))
    strings = [v.decode("utf-8") for f, wt, v in top if f == 6]
    prof = {"strings": strings, "sample_type": [], "samples": [],
            "locations": {}, "functions": {}, "time_nanos": pb_one(top, 9),
            "default_sample_type": pb_one(top, 14),
            "comments": pb_ints(top, 13)}
    for f, wt, v in top:
        if wt != 2 or f == 6:
            continue
        m = pb_fields(v)
        if f == 1:
            prof["sample_type"].append((pb_one(m, 1), pb_one(m, 2)))
        elif f == 2:
            prof["samples"].append((pb_ints(m, 1), pb_ints(m, 2)))
        elif f == 4:
            lines = [pb_fields(x) for g, t, x in m if g == 4]
            prof["locations"][pb_one(m, 1)] = [
                (pb_one(l, 1), pb_one(l, 2)) for l in lines]
        elif f == 5:
            prof["functions"][pb_one(m, 1)] = (
                pb_one(m, 2), pb_one(m, 3), pb_one(m, 4), pb_one(m, 5))
    return prof


def pprof_stacks(prof, what):
    """[(names leaf..root, values)] with every reference checked."""
    s = prof["strings"]
    out = []
    for locs, values in prof["samples"]:
        names = []
        for lid in locs:
            lines = prof["locations"].get(lid)
            if not CHK.check(lines and len(lines) == 1, "%s: location %r: "
                             "%r" % (what, lid, lines)):
                continue
            fid, line = lines[0]
            fn = prof["functions"].get(fid)
            if CHK.check(fn and all(0 <= x < len(s) for x in fn[:3]),
                         "%s: function %r: %r" % (what, fid, fn)):
                names.append(s[fn[0]])
        out.append((tuple(names), values))
    return out


def case_export_pprof():
    """gunzip + own protobuf decoder: string_table[0] is "", sample types
    calls/count and time/nanoseconds (default time), every location and
    function id resolves, one sample per path (leaf first), calls values
    add up to the total calls of the tree (28 for the constructed file),
    time values to its own time; time_nanos is the file's mtime. A real
    a->b->c / a->d->c run: stacks c,b,a and c,d,a with 3 and 5 calls."""
    syn = write_synthetic("syn.prof")
    _, data = export(syn, "pprof")
    CHK.equal(data[:2], b"\x1f\x8b", "gzip magic")
    prof = decode_pprof(data)
    s = prof["strings"]
    CHK.equal(s[:1], [""], "string_table[0]")
    CHK.equal(len(set(s)), len(s), "strings are unique")
    CHK.equal([(s[a], s[b]) for a, b in prof["sample_type"]],
              [("calls", "count"), ("time", "nanoseconds")], "sample_type")
    CHK.equal(s[prof["default_sample_type"]], "time", "default_sample_type")
    CHK.equal(prof["time_nanos"], os.stat(syn).st_mtime_ns, "time_nanos")
    stacks = pprof_stacks(prof, "synthetic")
    CHK.equal(sum(v[0] for _, v in stacks), SYN_CALLS, "sum of calls")
    CHK.check(abs(sum(v[1] for _, v in stacks) - SYN_TOTAL * 1e9) <= 20,
              "sum of ns %d" % sum(v[1] for _, v in stacks))
    got = {st: v for st, v in stacks}
    CHK.equal(len(got), len(stacks), "each stack once")
    CHK.equal(got.get(("c", "d", "a", "<module>")), [5, 49999600],
              "sample c<-d<-a<-<module>")
    CHK.equal(got.get(("a", "<module>")), [2, 3000000],
              "sample a<-<module> (two nodes added)")
    CHK.equal(got.get(("{built-in method builtins.len}", "c", "d", "a",
                       "<module>")), [5, 400], "built-in sample")
    fns = {s[f[0]]: (s[f[2]], f[3]) for f in prof["functions"].values()}
    CHK.equal(fns.get("d"), ("m.py", 40), "function d: file, start line")
    CHK.equal(fns.get("f"), ("we;ird.py", 3), "function f: file, line")
    CHK.equal(fns.get("{built-in method builtins.len}"), ("", 0),
              "built-in function")

    path, stats, meta, tree = profile_abc("abc.prof")
    _, data = export(path, "pprof")
    prof = decode_pprof(data)
    stacks = pprof_stacks(prof, "abc")
    CHK.equal(sum(v[0] for _, v in stacks),
              sum(n[2] for n in tree["nodes"]), "abc: sum of calls")
    mine = {}
    for st, v in stacks:
        if "a" in st and st[0] == "c":
            mine[st[:st.index("a") + 1][::-1]] = v[0]
    CHK.equal(mine,
              {("a", "b", "c"): 3, ("a", "d", "c"): 5}, "abc: c's paths")
    cp = cprofile_file("cp.prof")
    no_paths_error(["export", cp, "-f", "pprof", "-o", "x"], cp,
                   "pprof of a cProfile file")


def parse_svg(path, what):
    import xml.etree.ElementTree as ET
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as e:
        CHK.check(False, "%s: not well-formed XML: %s" % (what, e))
        return None


SVG = "{http://www.w3.org/2000/svg}"


def svg_frames(root):
    """[(id, name, title text, x, width, depth)] of the flame graph boxes."""
    out = []
    for g in root.iter(SVG + "g"):
        if g.get("class") != "f":
            continue
        rect = g.find(SVG + "rect")
        out.append((g.get("id"), g.get("data-n"), g.findtext(SVG + "title"),
                    float(rect.get("x")), float(rect.get("width")),
                    int(g.get("data-d"))))
    return out


def case_flame():
    """The constructed profile: well-formed SVG of the width asked, the
    title, a script, a box per path (the repeated path added), tooltips
    with file:line, calls and percentage; boxes fit in their parent. A
    real a->b->c / a->d->c run: names a, b, c, d present; cProfile file:
    status 2."""
    syn = write_synthetic("syn.prof")
    out = os.path.join(A.workdir, "syn.svg")
    r = cli("flame", syn, "-o", out, "--title", "Synthetic <&> test",
            "--width", "1000")
    CHK.equal((r.status, r.out, r.err), (0, "", ""), "flame: status")
    root = parse_svg(out, "synthetic")
    if root is None:
        return
    CHK.equal(root.tag, SVG + "svg", "root element")
    CHK.equal(root.get("width"), "1000", "width")
    CHK.check(root.find(SVG + "script") is not None, "no script")
    CHK.equal(root.findtext(SVG + "title"), "Synthetic <&> test", "title")
    frames = svg_frames(root)
    byname = {}
    for f in frames:
        byname.setdefault(f[1], []).append(f)
    # The built-in (0.4 us) is far narrower than 0.1 px: left out.
    CHK.equal(sorted(byname), sorted(["all", "<module>", "a", "b", "c", "d",
                                      "run", "f"]), "box names")
    CHK.equal(len(byname.get("c", [])), 3, "three boxes for c (3 paths)")
    CHK.equal(len(byname.get("a", [])), 1, "one box for a (paths added)")
    a = byname.get("a", [None])[0]
    if a:
        CHK.check("m.py:10" in a[2] and "2 calls" in a[2] and "%" in a[2],
                  "tooltip of a: %r" % a[2])
        # a's box: 0.1/0.1215 of the graph's width (980 px).
        CHK.check(abs(a[4] - 980 * 0.1 / SYN_TOTAL) < 0.05,
                  "width of a: %r" % a[4])
    for f in frames:
        CHK.check(10 - 1e-6 <= f[3] and f[3] + f[4] <= 990 + 0.05,
                  "box %r outside the graph" % (f,))
    d = byname.get("d", [None])[0]
    for c in byname.get("c", []):
        if d and c[5] == d[5] + 1 and d[3] <= c[3] <= d[3] + d[4]:
            CHK.check(c[3] + c[4] <= d[3] + d[4] + 0.01,
                      "c wider than its parent d")

    path, stats, meta, tree = profile_abc("abc.prof")
    out = os.path.join(A.workdir, "abc.svg")
    r = cli("flame", path, "-o", out)
    CHK.equal(r.status, 0, "abc: status (%s)" % r.err)
    root = parse_svg(out, "abc")
    if root is not None:
        names = {f[1] for f in svg_frames(root)}
        for n in ("<module>", "a", "b", "c", "d"):
            CHK.check(n in names, "abc: no box for %s" % n)
        CHK.check(("Flame graph: abc.prof") in (root.findtext(SVG + "title")
                                                 or ""), "default title")
    cp = cprofile_file("cp.prof")
    no_paths_error(["flame", cp, "-o", out], cp, "flame of a cProfile file")
    one_error_line(cli("flame", syn, "-o", out, "--width", "10"),
                   "flame --width 10")


def read_png(path):
    """(width, height, [rows of (r, g, b)]) of an 8-bit RGB/RGBA PNG."""
    import struct
    import zlib
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    i, idat, ihdr = 8, b"", None
    while i < len(data):
        n, kind = struct.unpack(">I4s", data[i:i + 8])
        body = data[i + 8:i + 8 + n]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        i += 12 + n
    w, h, depth, ctype, _, _, interlace = ihdr
    if depth != 8 or ctype not in (2, 6) or interlace:
        raise ValueError("unsupported PNG %r" % (ihdr,))
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev, pos = [], bytearray(stride), 0
    for _ in range(h):
        ft, line = raw[pos], bytearray(raw[pos + 1:pos + 1 + stride])
        pos += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if ft == 1:
                line[x] = (line[x] + a) & 0xff
            elif ft == 2:
                line[x] = (line[x] + b) & 0xff
            elif ft == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xff
            elif ft == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[x] = (line[x] + pr) & 0xff
        rows.append([tuple(line[x:x + 3]) for x in range(0, stride, bpp)])
        prev = line
    return w, h, rows


def chromium(args, workdir):
    exe = A.chromium
    profile = os.path.join(workdir, "chromium-profile")
    return run([exe, "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                "--user-data-dir=" + profile] + args, timeout=90)


def case_flame_render():
    """Headless Chromium (if installed) renders the flame graph: the
    screenshot has the warm colours of Python frames; opened with #s=^leaf$
    the script highlights matching boxes (magenta pixels) and with
    #z=N zooms (the DOM after the script has box N at full width)."""
    if not A.chromium or not os.access(A.chromium, os.X_OK):
        raise Skip("no Chromium at %s: flame graphs not rendered"
                   % (A.chromium or "/usr/bin/chromium"))
    script = os.path.join(A.workdir, "busy.py")
    write(script, "def leaf(n):\n    return sum(i * i for i in range(n))\n\n"
          "def left():\n    return [leaf(2000) for _ in range(40)]\n\n"
          "def right():\n    return [leaf(500) for _ in range(40)]\n\n"
          "left(); right()\n")
    prof = os.path.join(A.workdir, "busy.prof")
    r = cli("run", "--quiet", "--out", prof, A.python, script)
    if r.status != 0:
        raise AssertionError("could not profile: %s" % r)
    svg = os.path.join(A.workdir, "busy.svg")
    r = cli("flame", prof, "-o", svg)
    CHK.equal(r.status, 0, "flame status")
    root = parse_svg(svg, "busy")
    if root is None:
        return
    frames = svg_frames(root)
    url = "file://" + svg

    def shot(suffix, name):
        png = os.path.join(A.workdir, name)
        r = chromium(["--screenshot=" + png, "--window-size=1200,800",
                      url + suffix], A.workdir)
        if not CHK.check(os.path.isfile(png), "no screenshot %s: %s"
                         % (name, r)):
            return None
        w, h, rows = read_png(png)
        print("screenshot %s: %dx%d" % (png, w, h))
        return rows

    def count(rows, pred):
        return sum(1 for row in rows for px in row if pred(px))
    rows = shot("", "flame.png")
    if rows:
        warm = count(rows, lambda p: p[0] >= 200 and p[2] <= 50
                     and 55 <= p[1] <= 235)
        CHK.check(warm > 5000, "only %d warm pixels: no frames drawn?"
                  % warm)
        CHK.equal(count(rows, lambda p: p == (230, 0, 230)), 0,
                  "magenta before any search")
    rows = shot("#s=%5Eleaf%24", "flame-search.png")
    if rows:
        magenta = count(rows, lambda p: p == (230, 0, 230))
        CHK.check(magenta > 1000, "search #s=^leaf$: %d magenta pixels"
                  % magenta)
    # Zoom to `right` (about a fifth of the time): afterwards its box is
    # the whole width, as the DOM dumped after the script shows.
    target = [f for f in frames if f[1] == "right"]
    if CHK.check(target, "no box for right"):
        fid = target[0][0]
        r = chromium(["--dump-dom", url + "#z=" + fid[1:]], A.workdir)
        m = re.search(r'<g id="%s"[^>]*>.*?<rect ([^>]*)>' % fid, r.out,
                      re.S)
        width = re.search(r'width="([\d.]+)"', m.group(1)) if m else None
        CHK.check(width and abs(float(width.group(1)) - 1180) < 0.5,
                  "zoom #z=%s: box width after the script: %s (was %.1f)"
                  % (fid[1:], width and width.group(1), target[0][4]))


DUMP_PROGRAM = '''\
import os, signal, sys, time
def tick():
    return sum(range(100))
def loop(ready, stop):
    open(ready, "w").close()
    deadline = time.time() + 60
    while time.time() < deadline and not os.path.exists(stop):
        tick()
        time.sleep(0.005)
if len(sys.argv) > 3:
    signal.signal(signal.SIGUSR2, lambda s, f: None)
loop(sys.argv[1], sys.argv[2])
'''


def start_program(argv, env, cwd, ready):
    """Starts `argv` with `env` added and waits for the file `ready`."""
    full = base_env()
    full.update(env)
    p = subprocess.Popen(argv, env=full, cwd=cwd, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True)
    deadline = time.time() + 20
    while ready and not os.path.exists(ready) and p.poll() is None and \
            time.time() < deadline:
        time.sleep(0.02)
    if ready and not os.path.exists(ready):
        p.kill()
        raise AssertionError("program did not start: %s" % (p.communicate(),))
    return p


def stop_program(p, stop):
    if stop:
        write(stop, "")
    try:
        return p.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        return p.communicate()


def case_dump():
    """A profiled program running in another directory with a relative
    PYPROF_OUT=snaps/d.%n.prof: `dump PID` prints .../snaps/d.0.prof, then
    d.1.prof, each a profile (calls of tick, call paths) with more calls
    than the one before; with PYPROF_SIGNAL=USR1 and a fixed absolute
    name, a second dump prints the same, replaced, file."""
    prog = write(os.path.join(A.workdir, "loop.py"), DUMP_PROGRAM)
    there = os.path.join(A.workdir, "there")
    os.makedirs(os.path.join(there, "snaps"))
    ready, stop = (os.path.join(A.workdir, x) for x in ("ready", "stop"))
    p = start_program([A.python, prog, ready, stop],
                      {"LD_PRELOAD": A.lib, "PYPROF_OUT": "snaps/d.%n.prof",
                       "PYPROF_QUIET": "1"}, there, ready)
    try:
        ticks = 0
        for n in range(2):
            time.sleep(0.2)
            r = cli("dump", str(p.pid))
            want = os.path.realpath(os.path.join(there, "snaps",
                                                 "d.%d.prof" % n))
            CHK.equal((r.status, os.path.realpath(r.out.strip()), r.err),
                      (0, want, ""),
                      "dump %d: status, stdout, stderr" % n)
            if os.path.isfile(want):
                stats, meta, tree = load3(want)
                t = [v[1] for k, v in stats.items() if k[2] == "tick"]
                CHK.check(t and t[0] > ticks, "dump %d: tick calls %r, "
                          "before %r" % (n, t, ticks))
                ticks = t[0] if t else ticks
                CHK.equal(meta.get("pid"), str(p.pid), "dump %d: pid" % n)
                CHK.check(tree is not None, "dump %d: no call paths" % n)
                r = cli("view", want, "--tree", "--min-percent", "0",
                        "--limit", "0")
                CHK.check(r.status == 0 and "tick" in r.out,
                          "view --tree of the snapshot: %s" % r)
    finally:
        stop_program(p, stop)

    os.unlink(ready)
    os.unlink(stop)
    fixed = os.path.join(A.workdir, "fixed.prof")
    p = start_program([A.python, prog, ready, stop],
                      {"LD_PRELOAD": A.lib, "PYPROF_OUT": fixed,
                       "PYPROF_SIGNAL": "USR1", "PYPROF_QUIET": "1"},
                      A.workdir, ready)
    try:
        for n in range(2):
            before = os.stat(fixed).st_ino if os.path.exists(fixed) else None
            r = cli("dump", str(p.pid), "--timeout", "20")
            CHK.equal((r.status, os.path.realpath(r.out.strip())),
                      (0, os.path.realpath(fixed)),
                      "USR1 dump %d (%s)" % (n, r.err.strip()))
            CHK.check(os.path.exists(fixed) and
                      os.stat(fixed).st_ino != before,
                      "USR1 dump %d: the file was not replaced" % n)
    finally:
        stop_program(p, stop)
    CHK.equal(p.returncode, 0, "the program survived the dumps")


def case_dump_errors():
    """`dump` on `sleep` (no libpyprof): status 2, one line, `sleep` still
    alive; on a pid that does not exist; on a non-Python program with the
    library preloaded (inert: no handler, so nothing is sent and it lives);
    with PYPROF_SIGNAL=off; on a program whose own USR2 handler replaced
    the library's: no file within --timeout, one line."""
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        r = cli("dump", str(sleeper.pid))
        one_error_line(r, "dump sleep", str(sleeper.pid))
        CHK.check("not a profiled process" in r.err, "message: %r" % r.err)
        CHK.equal(sleeper.poll(), None, "sleep still running")
    finally:
        sleeper.kill()
        sleeper.wait()
    gone = subprocess.Popen(["true"])
    gone.wait()
    r = cli("dump", str(gone.pid))
    one_error_line(r, "dump of a finished process", str(gone.pid))
    CHK.check("no process" in r.err, "message: %r" % r.err)

    inert = start_program(["sh", "-c", "sleep 30"], {"LD_PRELOAD": A.lib},
                          A.workdir, None)
    try:
        time.sleep(0.3)
        with open("/proc/%d/maps" % inert.pid) as f:
            mapped = "libpyprof" in f.read()
        r = cli("dump", str(inert.pid), "--timeout", "1")
        one_error_line(r, "dump of sh with the library preloaded",
                       str(inert.pid))
        CHK.check(("does not handle" if mapped else "not a profiled")
                  in r.err, "message: %r" % r.err)
        CHK.equal(inert.poll(), None, "sh still running (nothing sent)")
    finally:
        inert.kill()
        inert.communicate()

    prog = write(os.path.join(A.workdir, "loop.py"), DUMP_PROGRAM)
    for env, extra, want in (({"PYPROF_SIGNAL": "off"}, [], "off"),
                             ({}, ["own-handler"], "no new profile")):
        ready, stop = (os.path.join(A.workdir, x) for x in ("ready", "stop"))
        for x in (ready, stop):
            if os.path.exists(x):
                os.unlink(x)
        env.update({"LD_PRELOAD": A.lib, "PYPROF_QUIET": "1",
                    "PYPROF_OUT": os.path.join(A.workdir, "e.%n.prof")})
        p = start_program([A.python, prog, ready, stop] + extra, env,
                          A.workdir, ready)
        try:
            r = cli("dump", str(p.pid), "--timeout", "1")
            one_error_line(r, "dump with %s" % (env, ), str(p.pid))
            CHK.check(want in r.err, "message %r should say %r"
                      % (r.err, want))
            CHK.equal(p.poll(), None, "program still running")
        finally:
            stop_program(p, stop)
    one_error_line(cli("dump", "0"), "dump 0")
    one_error_line(cli("dump", "-5"), "dump -5")


def case_calibrate():
    """calibrate --runs 3: status 0, a median/spread line, and a last line
    PYPROF_BIAS=<positive number> that `run --bias` accepts; --timer cpu
    reaches the library; bad --timer, --runs, --python: status 2, one
    line."""
    r = cli("calibrate", "--runs", "3", "--python", A.python, timeout=180)
    CHK.equal(r.status, 0, "status (%s)" % r.err.strip())
    out = lines(r.out)
    m = re.match(r"^PYPROF_BIAS=([^,\s]+)(?:,(\S+))?$", out[-1]) if out else None
    if CHK.check(m, "last line: %r" % r.out):
        CHK.check(float(m.group(1)) > 0, "bias %s not positive" % m.group(1))
        CHK.check(m.group(2) is None or float(m.group(2)) > 0,
                  "far bias %s not positive" % m.group(2))
        m = re.match(r"^PYPROF_BIAS=(\S+)$", out[-1])
        r2 = cli("run", "--quiet", "--bias", m.group(1), "--", "true")
        CHK.equal(r2.status, 0, "run --bias %s (%s)" % (m.group(1), r2.err))
    CHK.check(re.search(r"median \S+ s, min \S+ s, max \S+ s, spread", r.out)
              and "3 runs" in r.out, "median and spread: %r" % r.out)
    r = cli("calibrate", "--runs", "1", "--timer", "cpu", "--python",
            A.python, timeout=120)
    CHK.check(r.status == 0 and "timer cpu" in r.out,
              "--timer cpu: %s" % r)
    one_error_line(cli("calibrate", "--timer", "fast"), "--timer fast")
    one_error_line(cli("calibrate", "--runs", "0"), "--runs 0")
    one_error_line(cli("calibrate", "--python", "/nonexistent/python"),
                   "--python /nonexistent/python", "/nonexistent/python")
    one_error_line(cli("calibrate", "--runs", "1", "--python", A.python,
                       env={"PYPROF_LIB": "/nonexistent.so"}),
                   "PYPROF_LIB=/nonexistent.so", "/nonexistent.so")


def tree_table(out):
    """[(percent, ncalls, depth, name)] of `view --tree`'s table."""
    rows, seen = [], False
    for line in out.splitlines():
        if line.split()[:1] == ["%total"]:
            seen = True
            continue
        m = re.match(r"^ *([\d.]+)% +[\d.]+ +[\d.]+ +(\d+)  ( *)(.*)$", line)
        if seen and m:
            rows.append((float(m.group(1)), int(m.group(2)),
                         len(m.group(3)) // 2, m.group(4)))
    return rows


def case_view_tree():
    """view --tree of a->b->c / a->d->c: c indented under b (3 calls) and
    under d (5 calls); --limit 2 shows the 2 heaviest paths, a parent
    first; --min-percent 50 on the constructed file: <module> and a only;
    --json rows with depth and parent; several files add up; paths with
    no calls and no time are left out (view and pprof); a cProfile file or
    --tree with --callers: status 2, one line."""
    path, stats, meta, tree = profile_abc("abc.prof")
    r = cli("view", path, "--tree", "--min-percent", "0", "--limit", "0",
            "--sort", "ncalls")
    CHK.equal(r.status, 0, "status (%s)" % r.err)
    rows = tree_table(r.out)
    CHK.equal(len(rows), len(tree_paths(tree)), "rows: one per path")
    names = [re.sub(r" \(.*", "", x[3]) for x in rows]
    if CHK.check("a" in names, "no a in %r" % names):
        i = names.index("a")
        da = rows[i][2]
        got = [(names[j], rows[j][1], rows[j][2] - da)
               for j in range(i + 1, i + 7)]
        CHK.equal(got, [("d", 5, 1), ("c", 5, 2),
                        ("{built-in method builtins.sum}", 5, 3),
                        ("b", 3, 1), ("c", 3, 2),
                        ("{built-in method builtins.sum}", 3, 3)],
                  "the rows under a (--sort ncalls: d first)")

    syn = write_synthetic("syn.prof")
    r = cli("view", syn, "--tree", "--limit", "2", "--min-percent", "0")
    CHK.equal([(x[2], x[3]) for x in tree_table(r.out)],
              [(0, frame(MOD)), (1, frame(FA))], "--limit 2")
    CHK.check("(8 more paths not shown)" in r.out, "--limit 2: no 'more' "
              "line: %s" % r.out)
    r = cli("view", syn, "--tree", "--min-percent", "50")
    CHK.equal([(x[2], x[3], x[1]) for x in tree_table(r.out)],
              [(0, frame(MOD), 1), (1, frame(FA), 2)], "--min-percent 50")
    r = cli("view", syn, "--tree", "--min-percent", "0", "--sort", "name",
            "--json")
    doc = json.loads(r.out)
    rows = doc["tree"]
    CHK.equal(len(rows), 10, "json: rows (11 nodes, two added)")
    CHK.check(all(x["parent"] < i and (x["depth"] == 0 if x["parent"] < 0
                                       else x["depth"] ==
                                       rows[x["parent"]]["depth"] + 1)
                  for i, x in enumerate(rows)), "json: parents and depths")
    CHK.equal([x["name"] for x in rows if x["depth"] == 0],
              ["<module>", "run"], "json --sort name: roots")
    CHK.check(abs(doc["total_time"] - SYN_TOTAL) < 1e-9, "json total_time")
    r = cli("view", syn, syn, "--tree", "--json", "--min-percent", "0")
    doc = json.loads(r.out)
    CHK.equal(sorted((x["name"], x["ncalls"]) for x in doc["tree"]
                     if x["depth"] == 1),
              [("a", 4), ("c", 4), ("f", 2)], "two files: calls added")
    # Paths without calls or time (a forked child inherits its parent's
    # with zero counts) are not shown, nor exported.
    empty = write_synthetic("empty.prof", nodes=SYN_NODES + [
        (1, 7, 0, 0.0, 0.0), (11, 5, 0, 0.0, 0.0)])
    r = cli("view", empty, "--tree", "--json", "--min-percent", "0")
    CHK.equal(len(json.loads(r.out)["tree"]) if r.status == 0 else r, 10,
              "rows with two empty nodes more")
    _, data = export(empty, "pprof")
    CHK.equal(len(decode_pprof(data)["samples"]), 10, "pprof: empty paths")
    cp = cprofile_file("cp.prof")
    no_paths_error(["view", cp, "--tree"], cp, "view --tree of cProfile")
    no_paths_error(["view", syn, cp, "--tree"], cp,
                   "view --tree of ours and cProfile")
    one_error_line(cli("view", syn, "--tree", "--callers", "a"),
                   "--tree with --callers")
    one_error_line(cli("view", syn, "--tree", "--min-percent", "101"),
                   "--min-percent 101")
    r = cli("view", syn)
    CHK.check(r.status == 0 and "Call tree" not in r.out,
              "view without --tree: %s" % r)


def case_tree_files():
    """Files with call paths: merge adds trees by path (calls doubled) and
    keeps them only when every input has them; bad call-path data (wrong
    version, a node before its parent, truncated, garbage after it): view,
    merge, export and flame say so in one line, status 2."""
    syn = write_synthetic("syn.prof")
    out = os.path.join(A.workdir, "m.prof")
    r = cli("merge", "-o", out, syn, syn)
    CHK.equal(r.status, 0, "merge status (%s)" % r.err)
    stats, meta, tree = load3(out)
    if CHK.check(tree is not None, "merge dropped the call paths"):
        want = {p: v[0] * 2 for p, v in tree_paths(
            {"labels": SYN_LABELS, "nodes": SYN_NODES}).items()}
        CHK.equal({p: v[0] for p, v in tree_paths(tree).items()}, want,
                  "merged tree: calls doubled")
        CHK.equal(tree["version"], 1, "merged tree: version")
    nopaths = write_synthetic("np.prof", tree=False)
    r = cli("merge", "-o", out, syn, nopaths)
    CHK.equal(r.status, 0, "merge with a file without call paths")
    CHK.equal(load3(out)[2], None, "call paths kept though one file has none")
    r = cli("view", out)
    CHK.equal(r.status, 0, "view of that merge")

    with open(syn, "rb") as f:
        good = f.read()
    head = marshal.dumps(stats_from_tree(SYN_LABELS, SYN_NODES)) + \
        marshal.dumps({"tool": "libpyprof"})
    tree = {"version": 1, "labels": SYN_LABELS, "nodes": SYN_NODES,
            "truncated": 0, "max_depth": 256}
    bad = {
        "version.prof": head + marshal.dumps(dict(tree, version=2)),
        "forward.prof": head + marshal.dumps(dict(
            tree, nodes=[(1, 0, 1, 0.0, 0.0), (-1, 0, 1, 0.0, 0.0)])),
        "label.prof": head + marshal.dumps(dict(
            tree, nodes=[(-1, 99, 1, 0.0, 0.0)])),
        "treecut.prof": good[:-10],
        "treegarbage.prof": good + b"\x00garbage",
        "notatree.prof": head + marshal.dumps([1, 2]),
    }
    for name, content in bad.items():
        path = os.path.join(A.workdir, name)
        with open(path, "wb") as f:
            f.write(content)
        for args in (["view", path], ["view", path, "--tree"],
                     ["merge", "-o", out, path],
                     ["export", path, "-f", "collapsed", "-o", "x"],
                     ["export", path, "-f", "callgrind", "-o", "x"],
                     ["flame", path, "-o", "x.svg"]):
            one_error_line(cli(*args), " ".join(args[:1] + args[2:]), path)


def case_bad_files_export():
    """The bad inputs of bad_files (truncated, empty, random, missing, a
    directory...) given to export (every format), flame and view --tree:
    status 2, one line naming the file, nothing written; an output that is
    a directory, in a missing directory or in /proc: status 2, one line."""
    good = profile_workload("good.prof")
    names = make_bad_files(good)
    out = os.path.join(A.workdir, "out.x")
    for name in names:
        path = os.path.join(A.workdir, name)
        for args in ([["export", path, "-f", f, "-o", out]
                      for f in ("collapsed", "speedscope", "callgrind",
                                "pprof")] +
                     [["export", good, path, "-f", "callgrind", "-o", out],
                      ["flame", path, "-o", out],
                      ["view", path, "--tree"]]):
            one_error_line(cli(*args), " ".join(args[:1] + args[2:]) + " "
                           + name, path)
            CHK.check(not os.path.exists(out), "%s wrote %s" % (args, out))
    for fmt in ("collapsed", "callgrind"):
        one_error_line(cli("export", good, "-f", fmt, "-o", A.workdir),
                       "export -o a directory", A.workdir)
        one_error_line(cli("export", good, "-f", fmt, "-o",
                           "/nonexistent/dir/x"),
                       "export -o into a missing directory",
                       "/nonexistent/dir")
    one_error_line(cli("flame", good, "-o", "/nonexistent/dir/x.svg"),
                   "flame -o into a missing directory", "/nonexistent/dir")
    # A directory where no file can be made (not even by root).
    one_error_line(cli("export", good, "-f", "callgrind", "-o",
                       "/proc/pyprof-test.out"),
                   "export -o into /proc", "/proc/pyprof-test.out")


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
    ap.add_argument("--chromium", default="/usr/bin/chromium",
                    help="for flame_render (skipped if absent)")
    A = ap.parse_args()
    A.pyprof = os.path.abspath(A.pyprof)
    A.lib = os.path.abspath(A.lib)
    A.workdir = os.path.abspath(A.workdir)
    if os.path.isdir(A.workdir):
        shutil.rmtree(A.workdir)
    os.makedirs(A.workdir)
    print("case %s: %s" % (A.case, CASES[A.case].__doc__.strip()), flush=True)
    if not os.access(A.python, os.X_OK):
        print("SKIP: no interpreter at %s" % A.python)
        return SKIP
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
