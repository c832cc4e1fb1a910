#!/usr/bin/env python3
"""End-to-end lag of bench/worker.sh: commit in PostgreSQL -> visible in Turso (standard library only).

A second pgbench inserts a row into lag_probe(id, t) a few times a second, t being PostgreSQL's
clock_timestamp() as epoch seconds. `poll` reads the new rows from sqld every few milliseconds and
records when each was first seen; `report` turns that into the lag per probe, beside pgbench's
per-second tps.

  lag.py poll WORKDIR INTERVAL_MS
      Polls SQLD_URL (token TURSO_TOKEN, both from the environment) over Hrana-over-HTTP and appends
      "id,t,seen" lines to WORKDIR/probes.raw. Before the initial copy has created lag_probe in
      Turso, "no such table" is retried. Exits 0 once WORKDIR/probes.stop exists and every id up to
      the one written in it has been seen; 1 if they are not seen within 30 s of that, or on an error.

  lag.py report WORKDIR START SECONDS INTERVAL_MS TITLE
      Reads WORKDIR/probes.raw and pgbench's output WORKDIR/pgbench.out (run with -P 1; START is
      the epoch time it was started at), writes WORKDIR/lag.csv (seconds since pgbench started,
      probe id, lag_ms), WORKDIR/tps.csv (second, tps) and WORKDIR/lag.svg, and prints the lag
      percentiles. Exits 1 if there is no probe or no progress line.

The lag is an upper bound: a row is counted as visible when the response that first holds it has
arrived (at most one polling interval plus one request after it became visible), and t is taken
in the INSERT, just before its commit.
"""
import http.client
import json
import math
import os
import re
import sys
import time
import urllib.parse
from xml.sax.saxutils import escape

STOP_WAIT_S = 30


# ---- poll ----------------------------------------------------------------------------------------

class Sqld:
    """One keep-alive HTTP connection to sqld's /v2/pipeline."""

    def __init__(self, url, token):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port or 80
        self.path = u.path.rstrip("/") + "/v2/pipeline"
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.conn = None

    def execute(self, sql, args):
        """Runs one statement; returns the Hrana result of the execute request (ok or error)."""
        body = json.dumps({"requests": [{"type": "execute", "stmt": {"sql": sql, "args": args}},
                                        {"type": "close"}]})
        for attempt in (1, 2):   # a kept-alive connection the server has closed: once more
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            try:
                self.conn.request("POST", self.path, body, self.headers)
                resp = self.conn.getresponse()
                data = resp.read()
                break
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        if resp.status != 200:
            raise RuntimeError(f"sqld answered HTTP {resp.status}: {data[:200]!r}")
        return json.loads(data)["results"][0]


def new_probes(sqld, last):
    """The probe rows with an id above `last` as (id, t), or None while Turso has no lag_probe."""
    r = sqld.execute("SELECT id, t FROM lag_probe WHERE id > ? ORDER BY id",
                     [{"type": "integer", "value": str(last)}])
    if r["type"] != "ok":
        msg = r["error"]["message"]
        if "no such table" in msg:
            return None
        raise RuntimeError(f"sqld: {msg}")
    return [(int(row[0]["value"]), float(row[1]["value"])) for row in r["response"]["result"]["rows"]]


def stop_target(path):
    """The last probe id, once the benchmark has written it into the stop file."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    return int(text) if text else None


def poll(workdir, interval_ms):
    sqld = Sqld(os.environ["SQLD_URL"], os.environ["TURSO_TOKEN"])
    interval = interval_ms / 1000
    stop_file = os.path.join(workdir, "probes.stop")
    last, stop_since = 0, None
    with open(os.path.join(workdir, "probes.raw"), "w") as out:
        while True:
            started = time.time()
            rows = new_probes(sqld, last)
            seen = time.time()
            for pid, t in rows or []:
                out.write(f"{pid},{t!r},{seen!r}\n")
                last = pid
            out.flush()
            target = stop_target(stop_file)
            if target is not None:
                if last >= target:
                    return 0
                stop_since = stop_since or seen
                if seen - stop_since > STOP_WAIT_S:
                    print(f"lag probe: Turso showed probes up to id {last} of {target} "
                          f"{STOP_WAIT_S} s after the catch-up", file=sys.stderr)
                    return 1
            time.sleep(max(0.0, started + interval - time.time()))


# ---- report --------------------------------------------------------------------------------------

def read_probes(path):
    """(id, t, seen) per probe, in id order."""
    with open(path) as f:
        rows = [line.split(",") for line in f if line.strip()]
    return sorted((int(i), float(t), float(s)) for i, t, s in rows)


def read_tps(path):
    """(second, tps) from pgbench's `progress: N.0 s, X tps, ...` lines."""
    pat = re.compile(r"^progress: ([0-9.]+) s, ([0-9.]+) tps", re.M)
    with open(path) as f:
        return [(float(s), float(tps)) for s, tps in pat.findall(f.read())]


def percentile(sorted_values, q):
    """Nearest-rank percentile of an ascending list."""
    return sorted_values[max(0, math.ceil(q / 100 * len(sorted_values)) - 1)]


def write_csv(path, header, rows):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for row in rows:
            f.write(",".join(row) + "\n")


def nice_step(span, ticks=5):
    """A 1, 2 or 5 times a power of ten step giving about `ticks` ticks over span."""
    raw = max(span, 1e-9) / ticks
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)


def axis_max(value, ticks=5):
    step = nice_step(value, ticks)
    return max(step, math.ceil(value / step) * step), step


def fmt(v):
    return f"{v:g}" if v < 1e6 else f"{v:.3g}"


class Panel:
    """One chart panel: a plot area at (x0, y0) of size w x h, data x in [0, xmax], y in [0, ymax]."""

    def __init__(self, x0, y0, w, h, xmax, xstep, ymax, ystep):
        self.x0, self.y0, self.w, self.h = x0, y0, w, h
        self.xmax, self.xstep, self.ymax, self.ystep = xmax, xstep, ymax, ystep

    def px(self, x):
        return self.x0 + self.w * x / self.xmax

    def py(self, y):
        return self.y0 + self.h * (1 - min(y, self.ymax) / self.ymax)

    def frame(self, title, ylabel, xlabel):
        """Axes, grid, tick labels and titles."""
        out = [f'<rect x="{self.x0}" y="{self.y0}" width="{self.w}" height="{self.h}" fill="#fff" stroke="#444"/>']
        for i in range(int(round(self.ymax / self.ystep)) + 1):
            y = self.py(i * self.ystep)
            out.append(f'<line x1="{self.x0}" y1="{y:.1f}" x2="{self.x0 + self.w}" y2="{y:.1f}" stroke="#e4e4e4"/>')
            out.append(f'<text x="{self.x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{fmt(i * self.ystep)}</text>')
        for i in range(int(round(self.xmax / self.xstep)) + 1):
            x = self.px(i * self.xstep)
            out.append(f'<line x1="{x:.1f}" y1="{self.y0 + self.h}" x2="{x:.1f}" y2="{self.y0 + self.h + 5}" stroke="#444"/>')
            out.append(f'<text x="{x:.1f}" y="{self.y0 + self.h + 18}" text-anchor="middle">{fmt(i * self.xstep)}</text>')
        out.append(f'<text x="{self.x0}" y="{self.y0 - 28}" font-weight="bold">{escape(title)}</text>')
        cy = self.y0 + self.h / 2
        out.append(f'<text x="{self.x0 - 52}" y="{cy:.1f}" text-anchor="middle" '
                   f'transform="rotate(-90 {self.x0 - 52} {cy:.1f})">{escape(ylabel)}</text>')
        if xlabel:
            out.append(f'<text x="{self.x0 + self.w / 2}" y="{self.y0 + self.h + 36}" '
                       f'text-anchor="middle">{escape(xlabel)}</text>')
        return out

    def hline(self, y, color, label, right=True):
        """A dashed horizontal line at y, labelled at its right (or left) end."""
        py = self.py(y)
        tx, anchor = (self.x0 + self.w - 4, "end") if right else (self.x0 + 4, "start")
        return [f'<line x1="{self.x0}" y1="{py:.1f}" x2="{self.x0 + self.w}" y2="{py:.1f}" '
                f'stroke="{color}" stroke-dasharray="6 4"/>',
                f'<text x="{tx}" y="{py - 4:.1f}" text-anchor="{anchor}" fill="{color}">{escape(label)}</text>']

    def legend(self, items):
        """items: (color, kind 'line', 'dash', 'dot' or 'text', label), in one row between title and plot."""
        out, x, y = [], self.x0, self.y0 - 10
        for color, kind, label in items:
            if kind == "text":
                x -= 24
            elif kind == "dot":
                out.append(f'<circle cx="{x + 9}" cy="{y - 4}" r="2.5" fill="{color}"/>')
            else:
                dash = ' stroke-dasharray="6 4"' if kind == "dash" else ""
                out.append(f'<line x1="{x}" y1="{y - 4}" x2="{x + 18}" y2="{y - 4}" stroke="{color}" '
                           f'stroke-width="2"{dash}/>')
            out.append(f'<text x="{x + 24}" y="{y}">{escape(label)}</text>')
            x += 24 + 7 * len(label) + 24
        return out


def chart(title, seconds, tps, probes, lags, p99, interval_ms):
    """The SVG: pgbench's tps per second above the lag of each probe, on one time axis."""
    width, left, plot_w, plot_h = 960, 80, 850, 230
    # Probe rows may come a few ms after -T seconds (pgbench counts from its connections): drawn
    # just past the axis's end rather than stretching it.
    xmax, xstep = axis_max(max([seconds] + [s for s, _ in tps]), 10)
    tps_max, tps_step = axis_max(max(v for _, v in tps) * 1.1)
    lag_max, lag_step = axis_max(max(lags) * 1.1)
    top = Panel(left, 90, plot_w, plot_h, xmax, xstep, tps_max, tps_step)
    bottom = Panel(left, 90 + plot_h + 100, plot_w, plot_h, xmax, xstep, lag_max, lag_step)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{bottom.y0 + plot_h + 50}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="100%" height="100%" fill="#fafafa"/>',
           f'<text x="{width / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{escape(title)}</text>']
    out += top.frame("pgbench throughput, per second (pgbench -P 1)", "transactions/s", "")
    points = " ".join(f"{top.px(s):.1f},{top.py(v):.1f}" for s, v in tps)
    out.append(f'<polyline points="{points}" fill="none" stroke="#1f77b4" stroke-width="2"/>')
    out += top.legend([("#1f77b4", "line", "pgbench tps (while pgturso replicates)")])
    out += bottom.frame(f"end-to-end lag per probe: commit in PostgreSQL -> visible in Turso "
                        f"(upper bound, polled every {interval_ms:g} ms)", "lag (ms)",
                        "seconds since pgbench started")
    for (_, t, _), lag in zip(probes, lags):
        out.append(f'<circle cx="{bottom.px(t):.1f}" cy="{bottom.py(lag):.1f}" r="2" fill="#ff7f0e"/>')
    out += bottom.hline(p99, "#d62728", f"p99 {p99:.0f} ms")
    items = [("#ff7f0e", "dot", "lag of one probe row"), ("#d62728", "dash", "p99")]
    if lag_max >= 1000:
        out += bottom.hline(1000, "#555", "target: p99 <= 1 s", right=False)
        items.append(("#555", "dash", "target: p99 <= 1 s"))
    else:
        items.append(("#555", "text", "(target p99 <= 1000 ms: above this axis)"))
    out += bottom.legend(items)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def report(workdir, start, seconds, interval_ms, title):
    probes = read_probes(os.path.join(workdir, "probes.raw"))
    tps = read_tps(os.path.join(workdir, "pgbench.out"))
    if not probes:
        print("lag probe: no probe row was seen in Turso", file=sys.stderr)
        return 1
    if not tps:
        print("pgbench printed no progress line (-P 1)", file=sys.stderr)
        return 1
    probes = [(pid, t - start, seen - start) for pid, t, seen in probes]
    lags = [(seen - t) * 1000 for _, t, seen in probes]
    write_csv(os.path.join(workdir, "lag.csv"), ["seconds", "probe_id", "lag_ms"],
              [(f"{t:.3f}", str(pid), f"{lag:.1f}") for (pid, t, _), lag in zip(probes, lags)])
    write_csv(os.path.join(workdir, "tps.csv"), ["second", "tps"], [(f"{s:g}", f"{v:.1f}") for s, v in tps])
    ordered = sorted(lags)
    p50, p90, p99 = (percentile(ordered, q) for q in (50, 90, 99))
    with open(os.path.join(workdir, "lag.svg"), "w") as f:
        f.write(chart(title, seconds, tps, probes, lags, p99, interval_ms))
    print(f"end-to-end lag (commit in PostgreSQL -> visible in Turso) of {len(lags)} probe rows "
          f"({len(lags) / seconds:.0f}/s): p50 {p50:.0f} ms, p90 {p90:.0f} ms, p99 {p99:.0f} ms, "
          f"max {ordered[-1]:.0f} ms")
    print(f"  (an upper bound: sqld polled every {interval_ms:g} ms, so each is up to one interval "
          f"plus one request late)")
    return 0


def main(argv):
    if len(argv) == 3 and argv[0] == "poll":
        return poll(argv[1], float(argv[2]))
    if len(argv) == 6 and argv[0] == "report":
        return report(argv[1], float(argv[2]), float(argv[3]), float(argv[4]), argv[5])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (OSError, RuntimeError, ValueError, KeyError, http.client.HTTPException) as e:
        print(f"lag.py: {e}", file=sys.stderr)
        sys.exit(1)
