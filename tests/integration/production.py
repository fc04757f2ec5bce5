#!/usr/bin/env python3
"""Production-control tests for libpyprof: signals, pause/resume, fork, exec,
multiprocessing, child processes, failing writes, bad settings.

    production.py --lib build/libpyprof.so --scenario snapshots --python 3.12 --workdir DIR

Runs one scenario against one interpreter and exits 0 (pass), 1 (fail) or 77
(skip, with the reason).  Same conventions as run.py, whose helpers it
imports (Checker, run, load_prof, ...); stdlib only, Python 3.8+.

Scenarios (each function's docstring gives the exact numbers expected):
  snapshots            50 snapshots of 8 busy threads + main, then the exact total
  snapshot_newfuncs    snapshots while functions are first seen: each file consistent
  signames             PYPROF_SIGNAL by name, SIG name, number, RTMIN+n, RTMAX-n, off
  template             PYPROF_OUT %t %% %n %p, relative path kept across os.chdir
  snapshot_blocked     a snapshot arrives within 1 s while main sleeps / holds the GIL in C
  program_handler      the program's own SIGUSR2 handler wins (installed after / before start)
  toggle               PYPROF_START=paused + PYPROF_TOGGLE_SIGNAL: exact counts per phase
  term                 SIGTERM/HUP/QUIT/INT: file written, same death; program handlers kept
  fork                 fork from main / other thread, os._exit, sys.exit in child, exec
  pools                multiprocessing Pool(3) under fork/spawn/forkserver: one file per process
  children             subprocess children, grandchildren, PYPROF_CHILDREN=0, non-Python child
  full_disk            full tmpfs, RLIMIT_FSIZE, /dev/full, removed directory
  sigkill_during_dump  SIGKILL while a 20k-row snapshot is being written: never a torn file
  badvalues            every bad value of every variable: one pyprof: line, nothing else
"""
import io
import marshal
import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as R  # noqa: E402  (the integration driver: helpers only)

from run import CHK, Fatal, expect_calls, fresh_dir, load_prof, pyprof_lines  # noqa: E402

WORKLOADS = os.path.join(HERE, "workloads")
LABELS = ("deb3.11", "3.12", "3.13")


def W(name):
    return os.path.join(WORKLOADS, name)


# ---------------------------------------------------------------------------
# Processes the test talks to while they run: run.Proc

Proc, kill_leftovers, wait_file = R.Proc, R.kill_leftovers, R.wait_file


def touch(path):
    with open(path, "w"):
        pass


def row(stats, filename_suffix, name):
    """(cc, nc, tt, ct, callers) of the one row named so, None if absent;
    a failure if there are several."""
    rows = R.rows_named(stats, filename_suffix, name)
    if len(rows) > 1:
        CHK.fail("%d rows for %s in %s" % (len(rows), name, filename_suffix))
    return rows[0][1] if rows else None


def nc_of(stats, filename_suffix, name):
    r = row(stats, filename_suffix, name)
    return r[1] if r else 0


def builtin_nc(stats, name):
    """nc of a built-in row such as '<built-in method time.sleep>'; 0 if absent."""
    v = stats.get(("~", 0, name))
    return v[1] if v else 0


def expect_counts(stats, suffix, want, what):
    """want: {name: nc}; nc 0 means the function must be absent."""
    for name, nc in want.items():
        got = nc_of(stats, suffix, name)
        CHK.equal(got, nc, "%s: %s calls (nc; 0 = absent)" % (what, name))


def meta_of(path):
    with open(path, "rb") as f:
        buf = io.BytesIO(f.read())
    marshal.load(buf)
    try:
        return marshal.load(buf)
    except (EOFError, ValueError, TypeError):
        return {}


def strict_load(path, into=None):
    """The stats dict, the metadata dict and the optional call-path tree
    (a third object), each complete, nothing after them: a problem string
    or None (then the stats dict is copied into `into`, if given)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return "cannot read: %s" % e
    buf = io.BytesIO(data)
    objs = []
    try:
        while buf.tell() < len(data) and len(objs) < 3:
            objs.append(marshal.load(buf))
    except (EOFError, ValueError, TypeError) as e:
        return "%d bytes: marshal object %d is incomplete or bad: %s" % (len(data), len(objs) + 1, e)
    if buf.tell() != len(data):
        return "%d stray bytes after %d marshal objects" % (len(data) - buf.tell(), len(objs))
    if len(objs) < 2 or not all(isinstance(o, dict) for o in objs):
        return "want 2 or 3 dicts (stats, metadata[, call paths]), got %s" % [type(o).__name__ for o in objs]
    if into is not None:
        into.update(objs[0])
    return None


def masked(b):
    """Output with every number replaced (pids differ from run to run)."""
    return re.sub(rb"\d+", b"N", b)


def thread_state(tid):
    """R, S, D, Z... of a task, "" if it is gone."""
    try:
        with open("/proc/%d/stat" % tid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def pid_gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


# ---------------------------------------------------------------------------
# 1. snapshots

def scenario_snapshots(py, lib, wd):
    """prod_snapshots.py (8 threads calling work() in loops, main calling
    main_work()), PYPROF_OUT=snap.%n.prof: 50 SIGUSR2, each waited for as
    snap.<k>.prof.  Every snapshot loads; work and main_work nc never
    decrease; worker nc == cc == 8 and main nc == 1 in every snapshot (live
    frames counted); main's ct never decreases.  Final snap.50.prof: work nc
    == cc == the total the program prints, worker 8, main 1, main_work == its
    printed count, edge worker->work == total.  Then 30 SIGUSR2 back to
    back: 1..30 more files (pending signals merge), each complete, work
    never decreasing, worker 8.  Exactly the files snap.0 .. snap.<last>,
    exit 0, empty stderr (PYPROF_QUIET=1)."""
    d = fresh_dir(os.path.join(wd, "snap"))
    stop = os.path.join(wd, "stop")
    f = "prod_snapshots.py"
    p = Proc([py, W(f), stop], d, lib=lib, env={"PYPROF_OUT": "snap.%n.prof", "PYPROF_QUIET": "1"})
    p.expect("ready", 15)
    prev = {"work": 0, "main_work": 0, "main_ct": 0.0}
    slowest = 0.0
    n_snap = 50
    for k in range(n_snap):
        CHK.section = "snapshot %d" % k
        path = os.path.join(d, "snap.%d.prof" % k)
        t0 = time.time()
        p.signal(signal.SIGUSR2)
        t = wait_file(path, 5)
        if t is None:
            CHK.fail("no %s within 5 s of SIGUSR2; files: %s" % (os.path.basename(path), sorted(os.listdir(d))))
            break
        slowest = max(slowest, t - t0)
        stats = load_prof(path)
        work, main_work = nc_of(stats, f, "work"), nc_of(stats, f, "main_work")
        CHK.check(work >= prev["work"], "work nc went down: %d after %d" % (work, prev["work"]))
        CHK.check(main_work >= prev["main_work"],
                  "main_work nc went down: %d after %d" % (main_work, prev["main_work"]))
        expect_calls(stats, f, "worker", 8, 8, what="live threads")
        expect_calls(stats, f, "main", 1, 1, what="live main")
        expect_calls(stats, f, "<module>", 1, 1, what="live module")
        m = row(stats, f, "main")
        if m:
            CHK.check(m[3] >= m[2] >= 0.0, "main: want ct >= tt >= 0, got tt=%r ct=%r" % (m[2], m[3]))
            CHK.check(m[3] >= prev["main_ct"] * (1 - 1e-6),
                      "main ct went down: %r after %r" % (m[3], prev["main_ct"]))
            prev["main_ct"] = m[3]
        wr = row(stats, f, "worker")
        if wr:
            CHK.check(wr[3] > 0.0, "live worker has ct %r" % wr[3])
        prev["work"], prev["main_work"] = work, main_work
    CHK.section = "flood"
    CHK.note("slowest snapshot took %.3f s from signal to file" % slowest)
    # 30 more, back to back: signals that arrive while one is pending merge,
    # so between 1 and 30 more files; none may be lost half-written.
    for _ in range(30):
        p.signal(signal.SIGUSR2)
    count, stable_since = -1, time.time()
    deadline = time.time() + 10
    while time.time() < deadline:
        c = len(os.listdir(d))
        if c != count:
            count, stable_since = c, time.time()
        elif time.time() - stable_since > 0.3:
            break
        time.sleep(0.01)
    flood = count - n_snap
    CHK.note("30 signals sent back to back gave %d snapshots" % flood)
    CHK.check(1 <= flood <= 30, "%d snapshot files after 30 signals (want 1..30)" % flood)
    for k in range(n_snap, n_snap + max(flood, 0)):
        path = os.path.join(d, "snap.%d.prof" % k)
        if not CHK.check(os.path.exists(path), "missing %s" % os.path.basename(path)):
            continue
        stats = load_prof(path)
        work = nc_of(stats, f, "work")
        CHK.check(work >= prev["work"], "snap.%d: work nc went down: %d after %d" % (k, work, prev["work"]))
        prev["work"] = work
        expect_calls(stats, f, "worker", 8, 8, what="snap.%d live threads" % k)
    n_snap += max(flood, 0)

    CHK.section = "final"
    touch(stop)
    res = p.finish(30)
    CHK.equal(res.status, 0, "exit status")
    CHK.equal(res.err, b"", "stderr (PYPROF_QUIET=1)")
    m = re.search(rb"total (\d+) main (\d+)", res.out)
    if not m:
        raise Fatal("no totals printed: " + res.describe())
    total, mains = int(m.group(1)), int(m.group(2))
    names = sorted(os.listdir(d))
    CHK.equal(names, sorted("snap.%d.prof" % k for k in range(n_snap + 1)), "files written")
    final = os.path.join(d, "snap.%d.prof" % n_snap)
    if not os.path.exists(final):
        raise Fatal("no final profile %s" % final)
    stats = load_prof(final)
    CHK.check(total >= prev["work"], "final total %d below the last snapshot's %d" % (total, prev["work"]))
    expect_calls(stats, f, "work", total, total, what="final")
    expect_calls(stats, f, "main_work", mains, mains, what="final")
    expect_calls(stats, f, "worker", 8, 8, what="final (snapshots must not add calls)")
    expect_calls(stats, f, "main", 1, 1, what="final")
    wk, wr = R.rows_named(stats, f, "worker"), R.rows_named(stats, f, "work")
    if len(wk) == 1 and len(wr) == 1:
        edge = wr[0][1][4].get(wk[0][0])
        CHK.equal(edge[0] if edge else None, total, "edge worker -> work nc")


# ---------------------------------------------------------------------------
# 1a. snapshots while new functions appear

def quick_load(path):
    """(stats, problems): the stats dict, and what is wrong with the file as
    a whole: incomplete objects, stray bytes, and run.py's call-path tree
    checks (every label the tree counts is in the stats with the same nc).
    Lighter than load_prof: no per-row type check (used on many files)."""
    with open(path, "rb") as f:
        data = f.read()
    buf = io.BytesIO(data)
    try:
        stats = marshal.load(buf)
        marshal.load(buf)
    except (EOFError, ValueError, TypeError) as e:
        return {}, ["not two complete marshal objects: %s" % e]
    problems = R.tree_problems(buf, stats) if buf.tell() < len(data) else []
    if buf.tell() != len(data):
        problems.append("%d stray bytes" % (len(data) - buf.tell()))
    return stats, problems


def scenario_snapshot_newfuncs(py, lib, wd):
    """prod_newfuncs.py 20000: 20000 new functions made and called once
    each, as fast as the interpreter can, while the test takes snapshots
    back to back (PYPROF_OUT=n.%n.prof, at most 150) until "made".  Every snapshot is
    whole and its call-path tree agrees with its stats (run.py's check:
    every label the tree counts is a stats row with the same nc); fn* rows
    all have nc 1 and their number never decreases; the final file (full
    load_prof checks) has exactly 20000.  Exit 0, no stderr."""
    n = 20000
    d = fresh_dir(os.path.join(wd, "out"))
    stop = os.path.join(wd, "stop")
    p = Proc([py, W("prod_newfuncs.py"), str(n), stop], d, lib=lib,
             env={"PYPROF_OUT": "n.%n.prof", "PYPROF_QUIET": "1"})
    p.expect("ready", 10)
    k = 0
    while p.p.poll() is None and k < 150:
        p.signal(signal.SIGUSR2)
        if not wait_file(os.path.join(d, "n.%d.prof" % k), 5):
            CHK.fail("no n.%d.prof 5 s after SIGUSR2" % k)
            break
        k += 1
        if any(l.startswith(b"made") for l in p.out):
            break
    touch(stop)
    res = p.finish(20)
    CHK.equal(res.status, 0, "exit status")
    CHK.equal(res.err, b"", "stderr")
    CHK.note("%d snapshots while the functions were being made" % k)
    CHK.check(k >= 3, "only %d snapshots: the test proves little" % k)
    prev, bad = 0, []
    for j in range(k):
        path = os.path.join(d, "n.%d.prof" % j)
        if not os.path.exists(path):
            bad.append("n.%d.prof: missing" % j)
            continue
        st, problems = quick_load(path)
        fns = [v[1] for key, v in st.items() if key[0].endswith("prod_newfuncs.py") and re.match(r"fn\d+$", key[2])]
        if any(x != 1 for x in fns):
            problems.append("fn* rows with nc != 1: %s" % sorted(set(fns)))
        if len(fns) < prev:
            problems.append("fn* rows went down: %d after %d" % (len(fns), prev))
        prev = max(prev, len(fns))
        bad += ["n.%d.prof (%d fn* rows): %s" % (j, len(fns), x) for x in problems]
    CHK.check(not bad, "%d problem(s) in %d snapshots:\n  %s" % (len(bad), k, "\n  ".join(bad[:10])))
    CHK.section = "final"
    final = os.path.join(d, "n.%d.prof" % k)
    if CHK.check(os.path.exists(final), "no final n.%d.prof" % k):
        st = load_prof(final)
        fns = [v[1] for key, v in st.items() if key[0].endswith("prod_newfuncs.py") and re.match(r"fn\d+$", key[2])]
        CHK.equal((len(fns), set(fns)), (n, {1}), "fn* rows in the final file, their nc")


# ---------------------------------------------------------------------------
# 1b. signal names

def scenario_signames(py, lib, wd):
    """PYPROF_SIGNAL=USR1, SIGUSR1, 10, RTMIN+3, RTMAX-1, SIGRTMIN: sending
    that signal writes o.0.prof with fn0..fn9 called once each, the program
    goes on and its final o.1.prof follows (exit 0).  PYPROF_SIGNAL=off:
    SIGUSR2 kills the program as it would without the library (-SIGUSR2),
    no file."""
    cases = [("USR1", signal.SIGUSR1), ("SIGUSR1", signal.SIGUSR1), ("10", 10),
             ("RTMIN+3", signal.SIGRTMIN + 3), ("RTMAX-1", signal.SIGRTMAX - 1),
             ("SIGRTMIN", signal.SIGRTMIN)]
    for i, (val, sig) in enumerate(cases):
        CHK.section = "PYPROF_SIGNAL=%s" % val
        d = fresh_dir(os.path.join(wd, "case%d" % i))
        stop = os.path.join(wd, "stop%d" % i)
        p = Proc([py, W("prod_bigprof.py"), "10", stop], d, lib=lib,
                 env={"PYPROF_SIGNAL": val, "PYPROF_OUT": "o.%n.prof", "PYPROF_QUIET": "1"})
        p.expect("ready", 10)
        p.signal(sig)
        got = wait_file(os.path.join(d, "o.0.prof"), 3)
        CHK.check(got is not None, "no snapshot within 3 s of signal %d" % sig)
        touch(stop)
        res = p.finish(15)
        CHK.equal(res.status, 0, "exit status")
        CHK.equal(res.err, b"", "stderr")
        CHK.equal(sorted(os.listdir(d)), ["o.0.prof", "o.1.prof"], "files")
        if got:
            stats = load_prof(os.path.join(d, "o.0.prof"))
            fns = sorted(k[2] for k, v in stats.items() if re.match(r"fn\d+$", k[2]) and v[1] == 1)
            CHK.equal(len(fns), 10, "fn* rows called once in the snapshot")

    CHK.section = "PYPROF_SIGNAL=off"
    d = fresh_dir(os.path.join(wd, "off"))
    p = Proc([py, W("prod_bigprof.py"), "10", os.path.join(wd, "never")], d, lib=lib,
             env={"PYPROF_SIGNAL": "off", "PYPROF_OUT": "o.%n.prof", "PYPROF_QUIET": "1"})
    p.expect("ready", 10)
    p.signal(signal.SIGUSR2)
    res = p.finish(10)
    CHK.equal(res.status, -signal.SIGUSR2, "status after SIGUSR2 with PYPROF_SIGNAL=off")
    CHK.equal(sorted(os.listdir(d)), [], "files")


# ---------------------------------------------------------------------------
# 1c. PYPROF_OUT templates

def scenario_template(py, lib, wd):
    """prod_template.py (tick x3, then os.chdir("sub")).
    PYPROF_OUT=t.%t.%%.%n.prof (relative): a snapshot after the chdir and
    the final file are t.<T>.%.0.prof and t.<T>.%.1.prof in the starting
    directory (T a unix time within the run), nothing in sub/, tick 3.
    PYPROF_OUT=<abs>/x%p%%%n.prof: x<pid>%0.prof (snapshot), x<pid>%1.prof."""
    runs = [("t.%t.%%.%n.prof", None), ("x%p%%%n.prof", "abs")]
    for i, (tmpl, absdir) in enumerate(runs):
        CHK.section = "PYPROF_OUT=%s%s" % ("<abs>/" if absdir else "", tmpl)
        d = fresh_dir(os.path.join(wd, "cwd%d" % i))
        outdir = fresh_dir(os.path.join(wd, absdir)) if absdir else d
        stop = os.path.join(wd, "stop%d" % i)
        t0 = int(time.time())
        p = Proc([py, W("prod_template.py"), stop], d, lib=lib,
                 env={"PYPROF_OUT": os.path.join(absdir and outdir or "", tmpl), "PYPROF_QUIET": "1"})
        p.expect("moved", 10)
        p.signal(signal.SIGUSR2)
        deadline = time.time() + 5
        while len([x for x in os.listdir(outdir) if x.endswith(".prof")]) < 1 and time.time() < deadline:
            time.sleep(0.005)
        touch(stop)
        res = p.finish(15)
        t1 = int(time.time())
        CHK.equal(res.status, 0, "exit status")
        CHK.equal(res.err, b"", "stderr")
        names = sorted(x for x in os.listdir(outdir) if x != "sub")
        if absdir:
            want = ["x%d%%0.prof" % p.pid, "x%d%%1.prof" % p.pid]
            CHK.equal(names, want, "files")
        else:
            ok = len(names) == 2
            for k, name in enumerate(names):
                m = re.match(r"t\.(\d+)\.%\.(\d)\.prof$", name)
                ok = ok and bool(m) and t0 <= int(m.group(1)) <= t1 and int(m.group(2)) == k
            CHK.check(ok, "want t.<T>.%%.0.prof and t.<T>.%%.1.prof with %d <= T <= %d, got %s"
                      % (t0, t1, names))
        sub = os.path.join(d, "sub")
        CHK.equal(os.listdir(sub) if os.path.isdir(sub) else None, [], "files in sub/ (the later cwd)")
        for name in names:
            expect_counts(load_prof(os.path.join(outdir, name)), "prod_template.py", {"tick": 3}, name)


# ---------------------------------------------------------------------------
# 2. snapshot while blocked

def scenario_snapshot_blocked(py, lib, wd):
    """prod_blocked.py, PYPROF_OUT=blk.%n.prof, SIGUSR2 0.3 s after it
    blocks (the two modes run side by side).  sleep: main in time.sleep(3);
    cgil: main in sum(range(N)) for ~2 s, a C loop holding the GIL (the
    workload measures that a ticker thread could not run for >= 1 s during
    it).  Either way blk.0.prof exists within 1 s of the signal and before
    the call returns, and counts the live call (time.sleep nc 1 /
    builtins.sum nc 4: 3 calibration runs + live), main nc 1.  The sleep still
    lasts >= 2.9 s.  Final blk.1.prof has the same counts, exit 0."""
    modes = (("sleep", "<built-in method time.sleep>", 1), ("cgil", "<built-in method builtins.sum>", 4))
    procs = {}
    for mode, _, _ in modes:
        d = fresh_dir(os.path.join(wd, mode))
        procs[mode] = (d, Proc([py, W("prod_blocked.py"), mode], d, lib=lib,
                               env={"PYPROF_OUT": "blk.%n.prof", "PYPROF_QUIET": "1"}))
    times = {}
    for mode, _, _ in modes:
        d, p = procs[mode]
        p.expect("blocking", 15)
        time.sleep(0.3)
        if mode == "sleep":  # and the main thread is asleep by now
            deadline = time.time() + 2
            while thread_state(p.pid) != "S" and time.time() < deadline:
                time.sleep(0.005)
        t_sig = time.time()
        p.signal(signal.SIGUSR2)
        times[mode] = (t_sig, wait_file(os.path.join(d, "blk.0.prof"), 8))
    for mode, bname, nbuiltin in modes:
        CHK.section = mode
        d, p = procs[mode]
        t_sig, t_file = times[mode]
        res = p.finish(20)
        CHK.equal(res.status, 0, "exit status")
        CHK.equal(res.err, b"", "stderr")
        m = re.search(rb"unblocked (\S+)", res.out)
        t_unblocked = float(m.group(1)) if m else None
        if mode == "cgil":
            g = re.search(rb"callsecs (\S+) gilgap (\S+)", res.out)
            if not g:
                raise Fatal("no gilgap line: " + res.describe())
            CHK.note("sum() took %s s; the GIL was held for %s s" % (g.group(1).decode(), g.group(2).decode()))
            CHK.check(float(g.group(2)) >= 1.0,
                      "test premise: the ticker thread should have been starved of the GIL for "
                      ">= 1 s during sum(), longest gap %s s" % g.group(2).decode())
        else:
            sl = re.search(rb"slept (\S+)", res.out)
            CHK.check(sl and float(sl.group(1)) >= 2.9, "time.sleep(3) cut short: %s" % res.out)
        if not CHK.check(t_file is not None, "no snapshot blk.0.prof at all\n" + res.describe()):
            continue
        CHK.note("snapshot %.3f s after the signal" % (t_file - t_sig))
        CHK.check(t_file - t_sig < 1.0, "snapshot took %.3f s after the signal (want < 1 s)"
                  % (t_file - t_sig))
        if t_unblocked is not None:
            CHK.check(t_file < t_unblocked, "snapshot appeared %.3f s after the blocking call "
                      "returned: it waited for the call" % (t_file - t_unblocked))
        snap = load_prof(os.path.join(d, "blk.0.prof"))
        CHK.equal(builtin_nc(snap, bname), nbuiltin, "snapshot: %s nc (live call included)" % bname)
        expect_calls(snap, "prod_blocked.py", "main", 1, 1, what="snapshot")
        final = os.path.join(d, "blk.1.prof")
        if CHK.check(os.path.exists(final), "no final blk.1.prof; files %s" % os.listdir(d)):
            st = load_prof(final)
            CHK.equal(builtin_nc(st, bname), nbuiltin, "final: %s nc" % bname)
            expect_calls(st, "prod_blocked.py", "main", 1, 1, what="final")


# ---------------------------------------------------------------------------
# 3. the program's own handler

def scenario_program_handler(py, lib, wd):
    """prod_handler.py with PYPROF_OUT=h.%n.prof.  after: the program calls
    signal.signal(SIGUSR2, on_usr2) once running; SIGUSR2 runs on_usr2
    ("handled by program"), exit 0, the only file is the final h.0.prof with
    on_usr2 nc 1, stderr empty.  before: sitecustomize installed site_usr2
    before profiling started: exactly one pyprof: line (naming signal 12 /
    USR2), "handled by sitecustomize", only h.0.prof, site_usr2 nc 1."""
    for mode in ("after", "before"):
        CHK.section = mode
        d = fresh_dir(os.path.join(wd, mode))
        env = {"PYPROF_OUT": "h.%n.prof", "PYPROF_QUIET": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        if mode == "before":
            site = fresh_dir(os.path.join(wd, "site"))
            shutil.copy(W("prod_handler_site.py"), os.path.join(site, "sitecustomize.py"))
            env["PYTHONPATH"] = site
        p = Proc([py, W("prod_handler.py"), mode], d, lib=lib, env=env)
        p.expect("ready", 10)
        p.signal(signal.SIGUSR2)
        res = p.finish(15)
        who = "program" if mode == "after" else "sitecustomize"
        CHK.equal(res.status, 0, "exit status")
        CHK.check(("handled by %s" % who).encode() in res.out and b"\ndone" in res.out,
                  "the program's handler did not run:\n" + res.describe())
        lines = pyprof_lines(res.err)
        if mode == "after":
            CHK.equal(res.err, b"", "stderr (handler installed after start: nothing to say)")
        else:
            CHK.check(len(lines) == 1 and re.search(r"\b(12|USR2|SIGUSR2)\b", lines[0]),
                      "want one pyprof: line naming signal 12, got %r" % res.err)
            CHK.equal(R.non_pyprof_lines(res.err), [], "other stderr lines")
        CHK.equal(sorted(os.listdir(d)), ["h.0.prof"], "files (no snapshot, only the final profile)")
        if os.path.exists(os.path.join(d, "h.0.prof")):
            stats = load_prof(os.path.join(d, "h.0.prof"))
            if mode == "after":
                expect_calls(stats, "prod_handler.py", "on_usr2", 1, 1)
            else:
                expect_calls(stats, "sitecustomize.py", "site_usr2", 1, 1)


# ---------------------------------------------------------------------------
# 4. toggle

def toggle_then_snapshot(p, tsig):
    """The toggle signal, then (once its handler has surely run) SIGUSR2:
    the library serves them in the order their handlers ran, and two
    signals sent back to back may be handled the other way round (a
    standard signal goes before a real-time one; another thread may take
    the second while the first is pending)."""
    p.signal(tsig)
    time.sleep(0.1)
    p.signal(signal.SIGUSR2)


def toggle_phases(py, lib, f, d, marks, env, tsig, want):
    """Runs workload f (in d, PYPROF_OUT=t.%n.prof) through its two phases:
    at each, the toggle signal tsig confirmed by snapshot t.<k>.prof, which
    must hold the counts want[k], then the phase's marker file in marks.
    Checks that it ends with status 0 and an empty stderr."""
    p = Proc([py, W(f), marks], d, lib=lib, env=dict(env, PYPROF_OUT="t.%n.prof", PYPROF_QUIET="1"))
    for k, (line, go) in enumerate((("phase a", "go1"), ("phase b", "go2"))):
        p.expect(line, 10)
        toggle_then_snapshot(p, tsig)
        path = os.path.join(d, "t.%d.prof" % k)
        if CHK.check(wait_file(path, 5), "no snapshot t.%d.prof after the toggle" % k):
            expect_counts(load_prof(path), f, want[k], "t.%d.prof" % k)
        touch(os.path.join(marks, go))
    res = p.finish(15)
    CHK.equal(res.status, 0, "exit status")
    CHK.equal(res.err, b"", "stderr")


def scenario_toggle(py, lib, wd):
    """prod_toggle.py: phase_a x11, wait go1, phase_b x22, wait go2,
    phase_c x33.  Each toggle is confirmed by a snapshot sent 0.1 s after
    it (requests are served in order), then the marker file is made.
    paused start (PYPROF_START=paused, PYPROF_TOGGLE_SIGNAL=USR1): resume
    before go1, pause before go2: t.0 (after resume) has no phase_*; t.1
    (after pause) and final t.2: phase_b 22, wait_for 1 (the go2 wait,
    counted as returning at the pause), no phase_a, phase_c, main,
    <module> (entered while paused).
    running start (PYPROF_TOGGLE_SIGNAL=RTMIN+3): pause before go1, resume
    before go2: t.0: phase_a 11, wait_for 1, main 1; final: phase_a 11,
    phase_b 0, phase_c 33, wait_for 1 (go1 wait; the go2 one began paused),
    main 1, <module> 1.
    prod_toggle_threads.py (4 threads, work_a/b/c x100 each per phase, the
    toggles made while every thread waits between phases): running start,
    pause, resume: work_a 400, work_b 0, work_c 400, worker 4; paused start
    (threads created while paused), resume, pause: work_b 400 only, worker
    0."""
    f = "prod_toggle.py"
    rt3 = signal.SIGRTMIN + 3
    runs = [
        ("paused start", {"PYPROF_START": "paused", "PYPROF_TOGGLE_SIGNAL": "USR1"}, signal.SIGUSR1,
         [{"phase_a": 0, "phase_b": 0, "phase_c": 0},
          {"phase_a": 0, "phase_b": 22, "phase_c": 0, "wait_for": 1, "main": 0},
          {"phase_a": 0, "phase_b": 22, "phase_c": 0, "wait_for": 1, "main": 0, "<module>": 0}]),
        ("running start", {"PYPROF_TOGGLE_SIGNAL": "RTMIN+3"}, rt3,
         [{"phase_a": 11, "phase_b": 0, "phase_c": 0, "wait_for": 1, "main": 1},
          {"phase_a": 11, "phase_b": 0, "phase_c": 0, "wait_for": 1, "main": 1},
          {"phase_a": 11, "phase_b": 0, "phase_c": 33, "wait_for": 1, "main": 1, "<module>": 1}]),
    ]
    for i, (what, env, tsig, want) in enumerate(runs):
        CHK.section = what
        d = fresh_dir(os.path.join(wd, "out%d" % i))
        marks = fresh_dir(os.path.join(wd, "marks%d" % i))
        toggle_phases(py, lib, f, d, marks, env, tsig, want)
        CHK.equal(sorted(os.listdir(d)), ["t.0.prof", "t.1.prof", "t.2.prof"], "files")
        final = os.path.join(d, "t.2.prof")
        if os.path.exists(final):
            expect_counts(load_prof(final), f, want[2], "final t.2.prof")

    # Threads: a pause must stop counting on every thread, a resume restart
    # it on every thread, including threads created while paused.
    f = "prod_toggle_threads.py"
    runs = [
        ("threads, running start", {"PYPROF_TOGGLE_SIGNAL": "USR1"},
         [{"work_a": 400, "work_b": 0, "work_c": 0, "worker": 4},
          {"work_a": 400, "work_b": 0, "work_c": 0, "worker": 4},
          {"work_a": 400, "work_b": 0, "work_c": 400, "worker": 4}]),
        ("threads, paused start", {"PYPROF_START": "paused", "PYPROF_TOGGLE_SIGNAL": "USR1"},
         [{"work_a": 0, "work_b": 0, "work_c": 0, "worker": 0},
          {"work_a": 0, "work_b": 400, "work_c": 0, "worker": 0},
          {"work_a": 0, "work_b": 400, "work_c": 0, "worker": 0}]),
    ]
    for i, (what, env, want) in enumerate(runs):
        CHK.section = what
        d = fresh_dir(os.path.join(wd, "thr%d" % i))
        marks = fresh_dir(os.path.join(wd, "thrmarks%d" % i))
        toggle_phases(py, lib, f, d, marks, env, signal.SIGUSR1, want)
        final = os.path.join(d, "t.2.prof")
        if CHK.check(os.path.exists(final), "no final t.2.prof: %s" % os.listdir(d)):
            expect_counts(load_prof(final), f, want[2], "final t.2.prof")


# ---------------------------------------------------------------------------
# 5. fatal signals

def no_core():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def scenario_term(py, lib, wd):
    """prod_term.py plain (marker x7 then sleeping in sleeper()) and
    PYPROF_OUT=out.prof: SIGTERM / SIGHUP / SIGQUIT -> status -SIG (their
    default action, as plain python), stdout "ready", no other stderr, out.prof with marker 7, sleeper 1, main 1 and one
    'pyprof: wrote' line.  SIGINT -> KeyboardInterrupt traceback, status as
    plain python (-2), out.prof likewise.  SIGTERM while main holds the GIL
    in sum() (prod_blocked.py cgil): -15 within 2 s, file with sum nc 4.
    handler: the program's SIGTERM handler prints and sys.exit(5)s: status 5,
    on_term 1.  ignore: the handler only notes it: "survived", status 0."""
    f = "prod_term.py"
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGINT):
        CHK.section = signal.Signals(sig).name
        d = fresh_dir(os.path.join(wd, CHK.section))
        if sig == signal.SIGINT:  # Python's own handler: KeyboardInterrupt
            plain = Proc([py, W(f), "plain"], d, preexec_fn=no_core)
            plain.expect("ready")
            time.sleep(0.05)
            plain.signal(sig)
            pres = plain.finish(10)
            CHK.equal(pres.status, -sig, "plain python's status (test premise)")
        else:  # the default action: what plain python does, without a run
            pres = R.Result([], 0, -sig, b"ready\n", b"", {})
        p = Proc([py, W(f), "plain"], d, lib=lib, env={"PYPROF_OUT": "out.prof"}, preexec_fn=no_core)
        p.expect("ready")
        time.sleep(0.05)
        p.signal(sig)
        res = p.finish(10)
        CHK.equal(res.status, pres.status, "status with the library")
        CHK.equal(res.out, pres.out, "stdout")
        if sig == signal.SIGINT:  # a traceback whose innermost frame varies
            CHK.equal(R.non_pyprof_lines(res.err)[-1:], ["KeyboardInterrupt"], "last stderr line")
            CHK.equal(R.non_pyprof_lines(pres.err)[-1:], ["KeyboardInterrupt"], "plain: last stderr line")
        else:
            CHK.equal(R.non_pyprof_lines(res.err), R.non_pyprof_lines(pres.err),
                      "stderr apart from pyprof: lines")
        lines = pyprof_lines(res.err)
        CHK.check(len(lines) == 1 and "wrote" in lines[0], "want one 'pyprof: wrote' line, got %r" % lines)
        CHK.equal(sorted(x for x in os.listdir(d) if "prof" in x), ["out.prof"], "files")
        if os.path.exists(os.path.join(d, "out.prof")):
            expect_counts(load_prof(os.path.join(d, "out.prof")), f,
                          {"marker": 7, "sleeper": 1, "main": 1}, "out.prof")

    CHK.section = "SIGTERM while holding the GIL"
    d = fresh_dir(os.path.join(wd, "cgil"))
    p = Proc([py, W("prod_blocked.py"), "cgil"], d, lib=lib, env={"PYPROF_OUT": "out.prof", "PYPROF_QUIET": "1"})
    p.expect("blocking", 15)
    time.sleep(0.2)
    t0 = time.time()
    p.signal(signal.SIGTERM)
    res = p.finish(15)
    took = time.time() - t0
    CHK.equal(res.status, -signal.SIGTERM, "status")
    CHK.check(took < 2.0, "the process took %.2f s to die after SIGTERM (waited for the C call?)" % took)
    CHK.check(b"unblocked" not in res.out, "the C call finished before the process died")
    if CHK.check(os.path.exists(os.path.join(d, "out.prof")), "no out.prof"):
        st = load_prof(os.path.join(d, "out.prof"))
        CHK.equal(builtin_nc(st, "<built-in method builtins.sum>"), 4, "builtins.sum nc (3 + 1 live)")

    for mode, status, line in (("handler", 5, b"handler ran"), ("ignore", 0, b"survived")):
        CHK.section = "program's SIGTERM handler (%s)" % mode
        d = fresh_dir(os.path.join(wd, mode))
        p = Proc([py, W(f), mode], d, lib=lib, env={"PYPROF_OUT": "out.prof", "PYPROF_QUIET": "1"})
        p.expect("ready")
        p.signal(signal.SIGTERM)
        res = p.finish(10)
        CHK.equal(res.status, status, "status")
        CHK.check(line in res.out, "stdout lacks %r:\n%s" % (line, res.describe()))
        CHK.equal(res.err if mode == "ignore" else b"", b"", "stderr")
        if CHK.check(os.path.exists(os.path.join(d, "out.prof")), "no out.prof"):
            expect_counts(load_prof(os.path.join(d, "out.prof")), f,
                          {"marker": 7, "on_term": 1, "main": 1}, "out.prof")


# ---------------------------------------------------------------------------
# 6. fork, _exit, exec

def scenario_fork(py, lib, wd):
    """prod_fork.py with PYPROF_OUT=out.prof (no %p).  Output (pids masked)
    and stderr equal the plain run's.
    main: parent out.prof: pre 3, pf 11, main 1, cf/child_part 0; child
    (os._exit) out.<pid>.prof: cf 7, child_part 1, main 1 (its stack at
    the fork), pre/pf 0; posix.fork 1 in both.
    thread: fork in forker() on a thread: child file tf 5, forker 1, main 0
    (another thread's frame), pre/pf 0; parent: pre 3, pf 11, forker 1, tf 0.
    exit4: child ends by sys.exit(4): status 4, its file cf 7.
    snapchild (PYPROF_OUT=s.%n.prof): SIGUSR2 to the waiting child writes
    s.0.<child>.prof (cf 7, child_wait 1 live); SIGTERM kills it (-15 as
    the parent sees) writing s.1.<child>.prof; parent: s.0.prof, pre 3, pf 11.
    nothing (PYPROF_START=paused): os._exit(3) at once: status 3, no file, no
    pyprof: line.
    exec: pre x4 then os.execv(python, prod_exec_target.py): out.prof with
    pre 4 (and no target) and out.exec1.prof with target 6 (and no pre).
    execve: the same through os.execve() with a copy of os.environ."""
    f = "prod_fork.py"
    for mode in ("main", "thread", "exit4"):
        CHK.section = mode
        d = fresh_dir(os.path.join(wd, mode))
        plain = R.run([py, W(f), mode], d)
        res = R.run([py, W(f), mode], d, lib=lib, env={"PYPROF_OUT": "out.prof", "PYPROF_QUIET": "1"})
        CHK.equal(masked(res.out), masked(plain.out), "stdout (numbers masked)")
        CHK.equal(res.status, plain.status, "exit status")
        CHK.equal(masked(res.err), masked(plain.err), "stderr (the plain run's, numbers masked; PYPROF_QUIET=1)")
        m = re.search(rb"child (\d+) status (\d+)", res.out)
        if not m:
            CHK.fail("no child line: " + res.describe())
            continue
        cpid, cst = int(m.group(1)), int(m.group(2))
        CHK.equal(cst, 4 if mode == "exit4" else 0, "child's exit status")
        cname = "out.%d.prof" % cpid
        CHK.equal(sorted(os.listdir(d)), sorted(["out.prof", cname]), "files")
        if not (os.path.exists(os.path.join(d, "out.prof")) and os.path.exists(os.path.join(d, cname))):
            continue
        parent, child = load_prof(os.path.join(d, "out.prof")), load_prof(os.path.join(d, cname))
        CHK.equal(meta_of(os.path.join(d, cname)).get("pid"), str(cpid), "child file's metadata pid")
        if mode == "thread":
            expect_counts(parent, f, {"pre": 3, "pf": 11, "forker": 1, "tf": 0, "main": 1}, "parent")
            expect_counts(child, f, {"tf": 5, "forker": 1, "main": 0, "pre": 0, "pf": 0}, "child")
        else:
            expect_counts(parent, f, {"pre": 3, "pf": 11, "main": 1, "parent_part": 1,
                                      "cf": 0, "child_part": 0}, "parent")
            expect_counts(child, f, {"cf": 7, "child_part": 1, "main": 1, "pre": 0, "pf": 0,
                                     "parent_part": 0}, "child")
            CHK.equal(builtin_nc(parent, "<built-in method posix.fork>"), 1, "parent: posix.fork nc")
            CHK.equal(builtin_nc(child, "<built-in method posix.fork>"), 1, "child: posix.fork nc")

    CHK.section = "signals to a fork child"
    d = fresh_dir(os.path.join(wd, "snapchild"))
    p = Proc([py, W(f), "snapchild"], d, lib=lib, env={"PYPROF_OUT": "s.%n.prof", "PYPROF_QUIET": "1"})
    cpid = int(p.expect("child ready", 10).split()[-1])
    os.kill(cpid, signal.SIGUSR2)
    snap = os.path.join(d, "s.0.%d.prof" % cpid)
    if CHK.check(wait_file(snap, 5), "no child snapshot %s; files %s" % (snap, os.listdir(d))):
        expect_counts(load_prof(snap), f, {"cf": 7, "child_wait": 1, "child_part": 1, "pre": 0, "pf": 0},
                      "child's snapshot")
    os.kill(cpid, signal.SIGTERM)
    res = p.finish(10)
    CHK.equal(res.status, 0, "parent's exit status")
    CHK.check(("child %d status -15" % cpid).encode() in res.out,
              "the child should have died by SIGTERM:\n" + res.describe())
    CHK.equal(sorted(os.listdir(d)), sorted(["s.0.prof", "s.0.%d.prof" % cpid, "s.1.%d.prof" % cpid]),
              "files (parent's final, child's snapshot and final)")
    if os.path.exists(os.path.join(d, "s.1.%d.prof" % cpid)):
        expect_counts(load_prof(os.path.join(d, "s.1.%d.prof" % cpid)), f,
                      {"cf": 7, "child_wait": 1, "pre": 0, "pf": 0}, "child's final file")
    if os.path.exists(os.path.join(d, "s.0.prof")):
        expect_counts(load_prof(os.path.join(d, "s.0.prof")), f,
                      {"pre": 3, "pf": 11, "cf": 0, "child_wait": 0}, "parent's file")

    CHK.section = "os._exit with nothing profiled"
    d = fresh_dir(os.path.join(wd, "nothing"))
    res = R.run([py, W(f), "nothing"], d, lib=lib,
                env={"PYPROF_OUT": "out.prof", "PYPROF_START": "paused", "PYPROF_TOGGLE_SIGNAL": "USR1"})
    CHK.equal(res.status, 3, "exit status")
    CHK.equal(res.err, b"", "stderr (nothing written, nothing to say)")
    CHK.equal(os.listdir(d), [], "files")

    for mode in ("exec", "execve"):
        CHK.section = mode
        d = fresh_dir(os.path.join(wd, mode))
        res = R.run([py, W(f), mode], d, lib=lib, env={"PYPROF_OUT": "out.prof", "PYPROF_QUIET": "1"})
        CHK.equal(res.status, 0, "exit status")
        CHK.check(b"exec target" in res.out, "the exec target did not run:\n" + res.describe())
        files = sorted(os.listdir(d))
        found = {}
        for name in files:
            st = load_prof(os.path.join(d, name))
            found[name] = (nc_of(st, f, "pre"), nc_of(st, "prod_exec_target.py", "target"))
        # os.execve() passes the program's own environment (a copy of
        # os.environ, which never had PYPROF_EXECED): the library adds it.
        CHK.equal(found, {"out.prof": (4, 0), "out.exec1.prof": (0, 6)},
                  "files and their (pre, target) counts: the process before exec, then the "
                  "exec'd program")


# ---------------------------------------------------------------------------
# 7. multiprocessing pools

def scenario_pools(py, lib, wd):
    """prod_pool.py, PYPROF_OUT=pool.prof: Pool(3).map(square, range(30))
    under fork (close/join and `with` = terminate), spawn (with) and
    forkserver (close/join).  Files: exactly pool.prof (root, square 0) and
    pool.<pid>.prof for each of the 3 workers (a worker that returned no
    item may lack one: terminate() can kill it before its interpreter
    started profiling) and each helper process
    (forkserver, resource tracker) the program names, after those exited;
    each file's metadata pid is the one in its name; square's nc in each
    worker's file equals the items that worker returned; the sum is 30.
    stderr has nothing but pyprof: lines (as plain python: nothing)."""
    runs = [("fork", "close"), ("fork", "with"), ("spawn", "with"), ("forkserver", "close")]
    for method, how in runs:
        CHK.section = "%s/%s" % (method, how)
        d = fresh_dir(os.path.join(wd, "%s-%s" % (method, how)))
        res = R.run([py, W("prod_pool.py"), method, how], d, lib=lib,
                    env={"PYPROF_OUT": "pool.prof", "PYPROF_QUIET": "1"})
        CHK.equal(res.status, 0, "exit status")
        CHK.equal(R.non_pyprof_lines(res.err), [], "stderr lines (plain python prints none)")
        out = res.out.decode()
        try:
            workers = [int(x) for x in re.search(r"^workers (.*)$", out, re.M).group(1).split()]
            helpers = [int(x) for x in re.search(r"^helpers ?(.*)$", out, re.M).group(1).split()]
            per = dict((int(a), int(b)) for a, b in
                       (kv.split(":") for kv in re.search(r"^done (.*)$", out, re.M).group(1).split()))
        except AttributeError:
            CHK.fail("unexpected output:\n" + res.describe())
            continue
        CHK.equal(len(workers), 3, "workers")
        CHK.check(set(per) <= set(workers), "results from pids %s that are not workers %s" % (per, workers))
        deadline = time.time() + 5
        while not all(pid_gone(h) for h in helpers) and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        CHK.check(all(pid_gone(h) for h in helpers), "helpers %s still alive 5 s after the end" % helpers)
        names = sorted(os.listdir(d))
        # A worker that got no item may still have been starting its
        # interpreter (spawn, on a loaded machine) when terminate() sent
        # SIGTERM: killed before profiling started, it rightly has no file.
        idle = [w for w in workers if per.get(w, 0) == 0 and "pool.%d.prof" % w not in names]
        if idle:
            CHK.note("idle workers %s were terminated before writing a file" % idle)
        want = sorted(["pool.prof"] + ["pool.%d.prof" % w for w in workers + helpers
                                       if w not in idle])
        CHK.equal(names, want, "files (root, workers %s, helpers %s)" % (workers, helpers))
        total = 0
        for name in names:
            m = re.match(r"pool\.(?:(\d+)\.)?prof$", name)
            if not m:
                continue
            path = os.path.join(d, name)
            st = load_prof(path)
            pid = int(m.group(1)) if m.group(1) else res.pid
            CHK.equal(meta_of(path).get("pid"), str(pid), "%s: metadata pid" % name)
            n = nc_of(st, "prod_pool.py", "square")
            total += n
            if pid in workers:
                CHK.equal(n, per.get(pid, 0), "%s: square calls vs items the worker returned" % name)
            else:
                CHK.equal(n, 0, "%s (not a worker): square calls" % name)
        CHK.equal(total, 30, "square calls over all files")


# ---------------------------------------------------------------------------
# 8. children

def scenario_children(py, lib, wd):
    """prod_children.py: parent_work x3, a Python child (child_work x9) that
    starts a Python grandchild (child_work x9), sh -c 'exit 3', a fork child
    (forked_work x4, os._exit).
    PYPROF_OUT=out.prof: files exactly out.prof (parent_work 3, no
    child_work/forked_work), out.<child>.prof, out.<grandchild>.prof
    (child_work 9 each), out.<fork>.prof (forked_work 4); child and
    grandchild see PYPROF_ROOT_PID = the parent's pid; sh status 3.
    PYPROF_CHILDREN=0: only out.prof, same statuses.
    PYPROF_OUT=o.%p.prof: o.<pid>.prof for each of the 4 processes.
    PYPROF_OUT=dir.d/prof (no extension, dot in the directory): dir.d/prof
    and dir.d/prof.<pid> for the 3 others."""
    runs = [("out.prof", {}, lambda pid: "out.%d.prof" % pid, "out.prof"),
            ("out.prof", {"PYPROF_CHILDREN": "0"}, None, "out.prof"),
            ("o.%p.prof", {}, lambda pid: "o.%d.prof" % pid, None),
            ("dir.d/prof", {}, lambda pid: "dir.d/prof.%d" % pid, "dir.d/prof")]
    for i, (tmpl, extra, child_name, root_name) in enumerate(runs):
        CHK.section = "PYPROF_OUT=%s%s" % (tmpl, " PYPROF_CHILDREN=0" if extra else "")
        d = fresh_dir(os.path.join(wd, "run%d" % i))
        os.makedirs(os.path.join(d, "dir.d"))
        res = R.run([py, W("prod_children.py")], d, lib=lib,
                    env=dict(extra, PYPROF_OUT=tmpl, PYPROF_QUIET="1"))
        CHK.equal(res.status, 0, "exit status")
        CHK.equal(R.non_pyprof_lines(res.err), [], "stderr lines (plain python prints none)")
        out = res.out.decode()
        try:
            parent = int(re.search(r"^parent (\d+)", out, re.M).group(1))
            child, croot = map(int, re.search(r"^child (\d+) root (\d+)", out, re.M).groups())
            grand, groot = map(int, re.search(r"^grandchild (\d+) root (\d+)", out, re.M).groups())
            forked = int(re.search(r"^fork (\d+) status 0", out, re.M).group(1))
        except AttributeError:
            CHK.fail("unexpected output:\n" + res.describe())
            continue
        CHK.equal(parent, res.pid, "parent pid")
        CHK.equal((croot, groot), (parent, parent), "PYPROF_ROOT_PID seen by child and grandchild")
        CHK.check("child status 0" in out and "sh status 3" in out, "statuses:\n" + out)
        found = sorted(os.path.relpath(os.path.join(r, n), d) for r, _, ns in os.walk(d) for n in ns)
        rname = root_name or "o.%d.prof" % parent
        want = [rname]
        if child_name:
            want += [child_name(child), child_name(grand), child_name(forked)]
        CHK.equal(found, sorted(want), "files")
        if os.path.exists(os.path.join(d, rname)):
            expect_counts(load_prof(os.path.join(d, rname)), "prod_children.py",
                          {"parent_work": 3, "forked_work": 0}, rname)
        if child_name:
            for pid, fn, suffix, nc in ((child, "child_work", "prod_child.py", 9),
                                        (grand, "child_work", "prod_child.py", 9),
                                        (forked, "forked_work", "prod_children.py", 4)):
                path = os.path.join(d, child_name(pid))
                if os.path.exists(path):
                    expect_counts(load_prof(path), suffix, {fn: nc}, child_name(pid))
                    CHK.equal(meta_of(path).get("pid"), str(pid), "%s metadata pid" % child_name(pid))


# ---------------------------------------------------------------------------
# 9. failing writes

def one_cannot_write(res, path, reason_re, what):
    lines = pyprof_lines(res.err)
    CHK.check(len(lines) == 1 and lines[0].startswith("pyprof: cannot write %s: " % path)
              and re.search(reason_re, lines[0]),
              "%s: want exactly one line 'pyprof: cannot write %s: <%s>', got %r"
              % (what, path, reason_re, lines))


def scenario_full_disk(py, lib, wd):
    """prod_bigprof.py 3000 (a profile > 64 KiB; checked) exiting 3.
    tmpfs of 64 KiB: exactly one 'pyprof: cannot write <path>: No space
    left on device', status 3, stdout as plain, the mount left empty; a
    snapshot there says so once too and the program goes on (2 lines).
    RLIMIT_FSIZE 16 KiB: one 'cannot write ...: File too large', status 3,
    no file, no temp file.  PYPROF_OUT=/dev/full (as root): one 'cannot
    write /dev/full' line, status 3, /dev/full still the char device 1,7,
    no /dev/full.tmp.*.  Output directory removed by the program: one
    'cannot write' line, status 3."""
    argv = [py, W("prod_bigprof.py"), "3000", "-", "3"]
    plain = R.run(argv, wd)
    CHK.equal(plain.status, 3, "plain status (premise)")

    CHK.section = "profile size"
    d = fresh_dir(os.path.join(wd, "normal"))
    res = R.run(argv, d, lib=lib, env={"PYPROF_OUT": "big.prof", "PYPROF_QUIET": "1"})
    size = os.path.getsize(os.path.join(d, "big.prof")) if os.path.exists(os.path.join(d, "big.prof")) else 0
    CHK.check(size > 128 * 1024, "the profile is only %d bytes: the test needs > 128 KiB" % size)

    CHK.section = "tmpfs 64k"
    mnt = fresh_dir(os.path.join(wd, "mnt"))
    mp = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if mp.returncode != 0:
        CHK.note("SKIPPED this part: cannot mount a tmpfs: %s" % mp.stdout.decode(errors="replace").strip())
    else:
        try:
            target = os.path.join(mnt, "big.prof")
            res = R.run(argv, wd, lib=lib, env={"PYPROF_OUT": target})
            CHK.equal(res.status, 3, "exit status")
            CHK.equal(res.out, plain.out, "stdout")
            one_cannot_write(res, target, r"No space left on device", "final dump")
            CHK.equal(os.listdir(mnt), [], "files left in the full tmpfs")

            CHK.section = "tmpfs 64k, snapshot"
            stop = os.path.join(wd, "stop-snap")
            target = os.path.join(mnt, "snap.%n.prof")
            p = Proc([py, W("prod_bigprof.py"), "3000", stop, "3"], wd, lib=lib, env={"PYPROF_OUT": target})
            p.expect("ready", 10)
            p.signal(signal.SIGUSR2)
            deadline = time.time() + 5
            while b"cannot write" not in b"".join(p.err) and time.time() < deadline:
                time.sleep(0.01)
            CHK.check(b"cannot write" in b"".join(p.err), "no 'cannot write' line 5 s after the snapshot signal")
            touch(stop)
            res = p.finish(15)
            CHK.equal(res.status, 3, "exit status (the program went on after the failed snapshot)")
            lines = pyprof_lines(res.err)
            CHK.check(len(lines) == 2 and all(l.startswith("pyprof: cannot write %s/snap." % mnt)
                                              and "No space left on device" in l for l in lines),
                      "want two 'cannot write' lines (snapshot, final), got %r" % lines)
            CHK.equal(os.listdir(mnt), [], "files left in the full tmpfs")
        finally:
            subprocess.run(["umount", mnt])

    CHK.section = "RLIMIT_FSIZE"
    d = fresh_dir(os.path.join(wd, "fsize"))
    target = os.path.join(d, "big.prof")

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))

    p = Proc(argv, wd, lib=lib, env={"PYPROF_OUT": target, "PYTHONDONTWRITEBYTECODE": "1"},
             preexec_fn=small_files)
    res = p.finish(20)
    CHK.equal(res.status, 3, "exit status")
    CHK.equal(res.out, plain.out, "stdout")
    one_cannot_write(res, target, r"File too large", "RLIMIT_FSIZE")
    CHK.equal(os.listdir(d), [], "files left (no profile, no temp file)")

    CHK.section = "/dev/full"
    before = os.stat("/dev/full")
    if not stat.S_ISCHR(before.st_mode):
        raise Fatal("/dev/full is not a character device before the test (mode %o)" % before.st_mode)
    basic = [py, W("prod_basic.py")]
    bplain = R.run(basic, wd)
    res = R.run(basic, wd, lib=lib, env={"PYPROF_OUT": "/dev/full"})
    after = os.stat("/dev/full")
    if not (stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev):
        CHK.fail("SERIOUS: /dev/full is no longer the character device %d,%d (mode %o): the library "
                 "replaced it; restoring with mknod" % (os.major(before.st_rdev), os.minor(before.st_rdev),
                                                        after.st_mode))
        os.unlink("/dev/full")
        subprocess.run(["mknod", "-m", "666", "/dev/full", "c", "1", "7"])
    CHK.equal(res.status, bplain.status, "exit status")
    CHK.equal(res.out, bplain.out.replace(b"PYPROF_ROOT_PID=-", b"PYPROF_ROOT_PID=%d" % res.pid), "stdout")
    one_cannot_write(res, "/dev/full", r".", "/dev/full")
    left = [n for n in os.listdir("/dev") if n.startswith("full.tmp.")]
    CHK.equal(left, [], "temporary files left in /dev")

    CHK.section = "directory removed"
    gone = fresh_dir(os.path.join(wd, "gone"))
    target = os.path.join(gone, "x.prof")
    res = R.run(basic + ["rmtree", gone], wd, lib=lib, env={"PYPROF_OUT": target})
    CHK.equal(res.status, 3, "exit status")
    one_cannot_write(res, target, r"No such file or directory", "removed directory")
    CHK.check(not os.path.exists(gone), "the directory came back")


# ---------------------------------------------------------------------------
# 10. SIGKILL during a dump

def file_id(st):
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


def scenario_sigkill_during_dump(py, lib, wd):
    """prod_bigprof.py 20000 (20k distinct functions, a ~5 MB profile;
    with 100k each check of the file takes ~2 s on this VM, and the kills
    below find the file being written at any size), PYPROF_OUT=k.prof.
    Each round, in a new process: SIGUSR2, wait for k.prof, then SIGUSR2
    again and SIGKILL: 2 ms after the signal (while the snapshot is taken),
    or 0 / 15 ms after its temporary file appears (while the file is
    written).  Afterwards k.prof is complete: 2 or 3 marshal objects (stats,
    metadata, call paths), no stray byte, 20000 fn* rows called once; every
    other file is a temporary k.prof.tmp.<pid>.<n>.  Last round: SIGTERM
    2 ms after the second SIGUSR2: status -15, k.prof rewritten and whole,
    no temporary file left."""
    n = 20000
    rounds = [("2 ms after the signal", 0.002, False), ("as the temp file appears", 0.0, True),
              ("15 ms after the temp file appears", 0.015, True),
              ("SIGTERM instead, 2 ms after the signal", 0.002, False)]
    interrupted = 0
    for i, (what, delay, after_tmp) in enumerate(rounds):
        CHK.section = "kill %s" % what
        t_round = time.time()
        d = fresh_dir(os.path.join(wd, "r%d" % i))
        path = os.path.join(d, "k.prof")
        p = Proc([py, W("prod_bigprof.py"), str(n), os.path.join(wd, "never")], d, lib=lib,
                 env={"PYPROF_OUT": "k.prof", "PYPROF_QUIET": "1"})
        p.expect("ready", 20)
        t_ready = time.time()
        p.signal(signal.SIGUSR2)
        t1 = wait_file(path, 10)
        if t1 is None:
            CHK.fail("no k.prof 10 s after SIGUSR2")
            p.p.kill()
            p.finish()
            continue
        if i == 0:
            CHK.note("a dump of %d rows took %.3f s (%d bytes)" % (n, t1 - t_ready, os.path.getsize(path)))
        first = os.stat(path)
        p.signal(signal.SIGUSR2)
        if after_tmp:
            deadline = time.time() + 5
            while not any(".tmp." in x for x in os.listdir(d)) and time.time() < deadline:
                pass  # busy: the window is tens of ms
        time.sleep(delay)
        sig = signal.SIGTERM if what.startswith("SIGTERM") else signal.SIGKILL
        p.signal(sig)
        res = p.finish(10)
        CHK.equal(res.status, -sig, "status")
        names = sorted(os.listdir(d))
        temps = [x for x in names if re.match(r"k\.prof\.tmp\.%d\.\d+$" % p.pid, x)]
        others = [x for x in names if x != "k.prof" and x not in temps]
        CHK.equal(others, [], "files other than k.prof and its temporaries")
        # An inode number alone is not enough: a freed one is soon reused.
        replaced = (file_id(os.stat(path)) != file_id(first)) if os.path.exists(path) else None
        if sig == signal.SIGTERM:  # the snapshot, then the final file: both whole, no temporary
            CHK.equal(temps, [], "temporary files after SIGTERM")
            CHK.check(replaced, "k.prof was not rewritten by the final dump after SIGTERM")
        CHK.note("k.prof %s; %d temporary file(s) left; round took %.1f s (%.1f s to start)" %
                 ("rewritten since the 1st dump" if replaced else "kept from the 1st dump", len(temps),
                  time.time() - t_round, t_ready - t_round))
        if temps:
            interrupted += 1
        stats = {}
        problem = strict_load(path, stats) if os.path.exists(path) else "k.prof is gone"
        if CHK.check(problem is None, "k.prof after SIGKILL: %s" % problem):
            fns = sum(1 for k, v in stats.items() if k[2].startswith("fn") and v[1] == 1)
            CHK.equal(fns, n, "fn* rows called once in k.prof")
    CHK.section = ""
    CHK.note("%d of %d kills hit a dump while its temporary file was being written"
             % (interrupted, len(rounds)))


# ---------------------------------------------------------------------------
# 11. bad values

BAD = [
    ("PYPROF_OUT", ""), ("PYPROF_OUT", "out%q.prof"), ("PYPROF_OUT", "out%"),
    ("PYPROF_OUT", "/tmp/" + "x" * 5000 + ".prof"),
    ("PYPROF_QUIET", "maybe"), ("PYPROF_QUIET", ""),
    ("PYPROF_TIMER", "bogus"), ("PYPROF_TIMER", ""),
    ("PYPROF_BIAS", "-1"), ("PYPROF_BIAS", "2"), ("PYPROF_BIAS", "abc"), ("PYPROF_BIAS", "nan"),
    ("PYPROF_BIAS", "1e-3x"), ("PYPROF_BIAS", "1e-8,"), ("PYPROF_BIAS", ",1e-8"),
    ("PYPROF_BIAS", "1e-8,2e-8,3e-8"), ("PYPROF_BIAS", "1e-8,-1"), ("PYPROF_BIAS", "auto,1e-8"),
    ("PYPROF_SIGNAL", "USR3"), ("PYPROF_SIGNAL", "KILL"), ("PYPROF_SIGNAL", "0"),
    ("PYPROF_SIGNAL", "65"), ("PYPROF_SIGNAL", "RTMIN+99"), ("PYPROF_SIGNAL", "SEGV"),
    ("PYPROF_TOGGLE_SIGNAL", "bogus"), ("PYPROF_TOGGLE_SIGNAL", "USR2"),  # = the default PYPROF_SIGNAL
    ("PYPROF_TOGGLE_SIGNAL", "SIGKILL"),
    ("PYPROF_START", "pause"), ("PYPROF_START", "RUNNING"),
    ("PYPROF_START", "paused"),  # without PYPROF_TOGGLE_SIGNAL
    ("PYPROF_CHILDREN", "2"), ("PYPROF_CHILDREN", "maybe"),
    ("PYPROF_ROOT_PID", "0"), ("PYPROF_ROOT_PID", "-1"), ("PYPROF_ROOT_PID", "abc"),
    ("PYPROF_ROOT_PID", "99999999999999999999"),
    # Variables added after the brief (README table): same rule.
    ("PYPROF_PATHS", "maybe"), ("PYPROF_CRASH", "maybe"), ("PYPROF_HOOK", "bogus"),
    # PYPROF_EXECED is left out: set by the library for the next image after
    # exec and inherited by that image's children, whose pid differs; such
    # values must be ignored silently, so nothing is checked for it here.
]
BAD_ENVS = [("%s=%r" % kv, {kv[0]: kv[1]}, kv[0]) for kv in BAD] + [
    ("PYPROF_TOGGLE_SIGNAL=SIGUSR1 with PYPROF_SIGNAL=USR1",
     {"PYPROF_SIGNAL": "USR1", "PYPROF_TOGGLE_SIGNAL": "SIGUSR1"}, "PYPROF_"),
    ("unknown PYPROF_FOO", {"PYPROF_FOO": "1"}, "PYPROF_FOO"),
    ("unknown PYPROF_OUTPUT", {"PYPROF_OUTPUT": "x.prof"}, "PYPROF_OUTPUT"),
    ("unknown PYPROF_out (case)", {"PYPROF_out": "x.prof"}, "PYPROF_out"),
    ("unknown PYPROF_ (empty suffix)", {"PYPROF_": "1"}, "PYPROF_"),
]


def scenario_badvalues(py, lib, wd):
    """prod_basic.py (tick x5, a stdout and a stderr line, exit 3) with each
    bad setting in BAD / BAD_ENVS: stdout, status and stderr exactly the
    plain run's (same environment, no library) plus exactly one line
    beginning 'pyprof:' that names the variable; no file written; the
    library sets no PYPROF_ROOT_PID (the program prints it)."""
    from concurrent.futures import ThreadPoolExecutor

    # The program's output depends on the environment only through
    # PYPROF_ROOT_PID: one plain run serves every other case.
    argv = [py, "-S", W("prod_basic.py")]  # -S: no site, quicker start (56 runs)
    shared_plain = R.run(argv, fresh_dir(os.path.join(wd, "plain")))

    def one(i_case):
        i, (what, env, _) = i_case
        d = fresh_dir(os.path.join(wd, "case%d" % i))
        plain = R.run(argv, d, env=env) if "PYPROF_ROOT_PID" in env else shared_plain
        ours = R.run(argv, d, lib=lib, env=env)
        return plain, ours, sorted(os.listdir(d))

    with ThreadPoolExecutor(3) as ex:
        results = list(ex.map(one, enumerate(BAD_ENVS)))
    for (what, env, name), (plain, ours, files) in zip(BAD_ENVS, results):
        CHK.section = what
        CHK.equal(plain.status, 3, "plain status (premise)")
        CHK.equal(ours.out, plain.out, "stdout")
        CHK.equal(ours.status, plain.status, "exit status")
        lines = pyprof_lines(ours.err)
        CHK.check(len(lines) == 1 and R.non_pyprof_lines(ours.err) == R.non_pyprof_lines(plain.err),
                  "stderr should be the plain run's plus exactly one 'pyprof:' line; got %r" % ours.err)
        if lines:
            CHK.check(name in lines[0], "the line should name %s: %r" % (name, lines[0]))
        CHK.equal(files, [], "files written (the program must run unprofiled)")
    CHK.section = ""
    CHK.note("%d bad settings checked" % len(BAD_ENVS))


# ---------------------------------------------------------------------------

def scenario_churn(py, lib, wd):
    """prod_churn.py 4000: 4200 short threads one after another.  Resident
    memory grows by less than 2 MB over the last 4000 with the library (the
    tables of finished threads are folded into one total and freed; without
    that it was ~27 kB per thread, ~100 MB here); the plain run's growth
    is printed for comparison.  The profile has handle 4200, leaf 12600
    and metadata threads 4201; exit 0."""
    plain = R.run([py, W("prod_churn.py"), "4000"], wd)
    CHK.equal(plain.status, 0, "plain exit status")
    prof = os.path.join(wd, "churn.prof")
    res = R.run([py, W("prod_churn.py"), "4000"], wd, lib=lib,
                env={"PYPROF_OUT": prof, "PYPROF_QUIET": "1"})
    CHK.equal(res.status, 0, "exit status")
    m = re.search(rb"growth (-?\d+)", res.out)
    mp = re.search(rb"growth (-?\d+)", plain.out)
    if CHK.check(m is not None, "no growth line: " + res.describe()):
        growth = int(m.group(1))
        CHK.note("RSS growth over 4000 threads: %d kB (plain: %s kB)"
                 % (growth, mp.group(1).decode() if mp else "?"))
        CHK.check(growth < 2048, "RSS grew %d kB over 4000 threads (want < 2048)" % growth)
    if CHK.check(os.path.exists(prof), "no %s: %s" % (prof, res.describe())):
        expect_counts(load_prof(prof), "prod_churn.py", {"handle": 4200, "leaf": 12600}, "churn")
    CHK.equal(meta_of(prof).get("threads"), "4201", "metadata threads")


SCENARIOS = {
    "churn": scenario_churn,
    "snapshots": scenario_snapshots,
    "snapshot_newfuncs": scenario_snapshot_newfuncs,
    "signames": scenario_signames,
    "template": scenario_template,
    "snapshot_blocked": scenario_snapshot_blocked,
    "program_handler": scenario_program_handler,
    "toggle": scenario_toggle,
    "term": scenario_term,
    "fork": scenario_fork,
    "pools": scenario_pools,
    "children": scenario_children,
    "full_disk": scenario_full_disk,
    "sigkill_during_dump": scenario_sigkill_during_dump,
    "badvalues": scenario_badvalues,
}


if __name__ == "__main__":
    sys.exit(R.drive(__doc__, SCENARIOS, LABELS))
