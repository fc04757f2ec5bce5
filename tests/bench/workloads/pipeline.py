"""A real-looking program: synthesise web-server log lines, parse them with
regular expressions, round-trip records through JSON, aggregate per path
and status, and render a text report. Mixes stdlib (re, json, collections,
datetime, textwrap, statistics) with user code.
"""
import collections
import datetime
import json
import os
import random
import re
import statistics
import textwrap

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
LINES = max(200, int(11900 * SCALE))

LOG_RE = re.compile(
    r'(?P<ip>\d+\.\d+\.\d+\.\d+) - (?P<user>\S+) \[(?P<ts>[^\]]+)\] '
    r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/1\.[01]" (?P<status>\d{3}) '
    r'(?P<size>\d+) (?P<ms>\d+\.\d+)'
)
QUERY_RE = re.compile(r"[?&]([a-z]+)=([^&]*)")
PATHS = ["/", "/index.html", "/api/users", "/api/orders", "/static/app.js",
         "/api/search", "/login", "/logout", "/api/items/42", "/health"]
USERS = ["-", "alice", "bob", "carol", "dave"]


def synth(rng, n):
    base = datetime.datetime(2024, 3, 1, 12, 0, 0)
    for i in range(n):
        ts = base + datetime.timedelta(seconds=i * 3)
        path = rng.choice(PATHS)
        if rng.random() < 0.3:
            path += "?q=%s&page=%d" % (rng.choice(["x", "yz", "abc"]), rng.randint(1, 9))
        yield '%d.%d.%d.%d - %s [%s] "%s %s HTTP/1.1" %d %d %.3f' % (
            10, rng.randint(0, 255), rng.randint(0, 255), rng.randint(1, 254),
            rng.choice(USERS), ts.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            rng.choice(["GET", "GET", "GET", "POST", "PUT"]), path,
            rng.choice([200, 200, 200, 201, 301, 404, 500]), rng.randint(100, 50000),
            rng.random() * 250)


def parse(line):
    m = LOG_RE.match(line)
    if not m:
        return None
    rec = m.groupdict()
    rec["status"] = int(rec["status"])
    rec["size"] = int(rec["size"])
    rec["ms"] = float(rec["ms"])
    path, _, query = rec["path"].partition("?")
    rec["path"] = path
    rec["query"] = dict(QUERY_RE.findall("?" + query)) if query else {}
    rec["ts"] = datetime.datetime.strptime(rec["ts"], "%d/%b/%Y:%H:%M:%S %z").isoformat()
    return rec


def aggregate(records):
    by_path = collections.defaultdict(list)
    statuses = collections.Counter()
    for rec in records:
        by_path[rec["path"]].append(rec["ms"])
        statuses[rec["status"]] += 1
    return by_path, statuses


def report(by_path, statuses):
    lines = []
    for path in sorted(by_path):
        ms = by_path[path]
        lines.append("%-16s n=%5d mean=%8.3f median=%8.3f max=%8.3f" % (
            path, len(ms), statistics.mean(ms), statistics.median(ms), max(ms)))
    summary = ", ".join("%d: %d" % kv for kv in sorted(statuses.items()))
    lines.extend(textwrap.wrap("statuses " + summary, width=60))
    return "\n".join(lines)


def main():
    rng = random.Random(1234)
    encoded = [json.dumps(rec, sort_keys=True) for rec in map(parse, synth(rng, LINES)) if rec]
    records = [json.loads(s) for s in encoded]
    text = report(*aggregate(records))
    words = collections.Counter(re.findall(r"[a-z]+", text.lower()))
    return len(records), len(text), sum(words.values())


if __name__ == "__main__":
    import _timing
    _timing.run(main)
