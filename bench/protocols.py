#!/usr/bin/env python3
"""Hrana protocol variants measured directly against sqld (standard library only); started by
bench/protocols.sh.

Question: does stored SQL (store_sql + sql_id) or Hrana 3 (v3 JSON, v3 protobuf) make applying a
large transaction cheaper than what pgturso sends now (v2 JSON, rows as one JSON argument)?

Every variant applies the same ROWS rows (i, 'row i', i % 1000, i / 7) to an empty table in ONE
Turso transaction. Request bodies are built before timing; the timed part is the HTTP exchange
only. Variants run interleaved (1, 2, ..., 8, then again) so machine noise hits all alike; medians
of wall time and of sqld's CPU time (utime + stime from /proc) are reported. After every run the
table is checked: count(*), sum(n) and every row's v and f (f exact).

Environment: SQLD_URL, TURSO_TOKEN (from scripts/lib.sh start_sqld), SQLD_BIN (the sqld binary,
for --version), PGTURSO_PROTO_ROWS (default 100000), PGTURSO_PROTO_REPEAT (default 5).
Exit status: 0 when every run succeeded and verified, 2 on any error.
"""

import http.client
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
import traceback

from bench import float_parts  # pgturso's [m, e] float encoding (bench.py, beside this file)
import urllib.parse

ROWS = int(os.environ.get("PGTURSO_PROTO_ROWS", "100000"))
REPEAT = int(os.environ.get("PGTURSO_PROTO_REPEAT", "5"))
PER_STMT = 2000  # rows per multi-row statement (pgturso's default)
SLOW_DIV = 10  # one-statement-per-row variants apply ROWS / SLOW_DIV rows, scaled back up

TABLE = '"t"'
DDL = 'CREATE TABLE "t" ("id" INTEGER NOT NULL, "v" TEXT, "n" INTEGER, "f" REAL, PRIMARY KEY ("id"))'
INSERT = 'INSERT INTO "t" ("id", "v", "n", "f")'
UPSERT = ' ON CONFLICT ("id") DO UPDATE SET "v" = excluded."v", "n" = excluded."n", "f" = excluded."f"'
# pgturso's JSON-rows statement: one text argument, a JSON array of [id, v, n, [m, e]] rows
JSON_ROWS_SQL = (
    INSERT + " SELECT r.j ->> 0, r.j ->> 1, r.j ->> 2, "
    "(r.j ->> '$[3][0]') * power(2.0, r.j ->> '$[3][1]') "
    "FROM (SELECT value AS j FROM json_each(?) LIMIT -1 OFFSET 0) AS r WHERE true" + UPSERT
)
JSON_CT = "application/json"
PB_CT = "application/x-protobuf"


class BenchError(Exception):
    pass


def dumps(obj):
    """Compact JSON bytes, as serde_json writes them."""
    return json.dumps(obj, separators=(",", ":")).encode()


def values_sql(nrows):
    return INSERT + " VALUES " + ", ".join(["(?, ?, ?, ?)"] * nrows) + UPSERT


# ---- Hrana JSON -------------------------------------------------------------------------------

def jval(v):
    if v is None:
        return {"type": "null"}
    if isinstance(v, int):
        return {"type": "integer", "value": str(v)}
    if isinstance(v, float):
        return {"type": "float", "value": v}
    return {"type": "text", "value": v}


def jstmt(sql=None, args=(), sql_id=None):
    stmt = {"sql": sql} if sql_id is None else {"sql_id": sql_id}
    stmt.update(args=[jval(a) for a in args], want_rows=False)
    return stmt


def jbatch(stmts, begin=True, commit=True):
    """pgturso's transaction batch: BEGIN? stmts COMMIT? (+ ROLLBACK unless COMMIT ran), every
    step conditioned on the previous one. Returns the request and how many steps must succeed."""
    steps = []

    def push(stmt):
        step = {"stmt": stmt}
        if steps:
            step = {"condition": {"type": "ok", "step": len(steps) - 1}, **step}
        steps.append(step)

    if begin:
        push(jstmt("BEGIN"))
    for s in stmts:
        push(s)
    ok_steps = len(steps)
    if commit:
        push(jstmt("COMMIT"))
        ok_steps = len(steps)
        steps.append({"condition": {"type": "not", "cond": {"type": "ok", "step": ok_steps - 1}},
                      "stmt": jstmt("ROLLBACK")})
    return {"type": "batch", "batch": {"steps": steps}}, ok_steps


def json_results(data):
    """A JSON pipeline response as (baton, [result]); a result is ("error", message) or
    ("ok", None) or, for a batch, ("batch", (steps that succeeded, [(step, error message)]))."""
    body = json.loads(data)
    out = []
    for r in body.get("results", []):
        if r.get("type") != "ok":
            out.append(("error", (r.get("error") or {}).get("message", str(r))))
        elif r["response"]["type"] == "batch":
            res = r["response"]["result"]
            ok = {i for i, x in enumerate(res["step_results"]) if x is not None}
            errs = [(i, e.get("message")) for i, e in enumerate(res["step_errors"]) if e is not None]
            out.append(("batch", (ok, errs)))
        else:
            out.append(("ok", None))
    return body.get("baton"), out


# ---- Hrana protobuf (hand-encoded; schema: Hrana 3 spec, "Protobuf schema") -----------------

def varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        if not n:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def ld(num, payload):
    """A length-delimited field (message, string, bytes)."""
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def vint(num, n):
    """A varint field (uint32, int32 >= 0, bool)."""
    return varint(num << 3) + varint(n)


def pval(v):
    """hrana.Value: null = 1, integer = 2 (sint64), float = 3 (double), text = 4."""
    if v is None:
        return ld(1, b"")
    if isinstance(v, int):
        return vint(2, (v << 1) ^ (v >> 63))
    if isinstance(v, float):
        return varint(3 << 3 | 1) + struct.pack("<d", v)
    return ld(4, v.encode())


def pstmt(sql, args=()):
    """hrana.Stmt: sql = 1, args = 3 (repeated Value), want_rows = 5."""
    return ld(1, sql.encode()) + b"".join(ld(3, pval(a)) for a in args) + vint(5, 0)


def pbatch(stmts):
    """jbatch as protobuf: a StreamRequest{batch = 3: BatchStreamReq{batch = 1: Batch{steps = 1}}};
    BatchStep: condition = 1, stmt = 2; BatchCond: step_ok = 1, not = 3."""
    steps = [ld(2, pstmt("BEGIN"))]
    for s in stmts:
        steps.append(ld(1, vint(1, len(steps) - 1)) + ld(2, s))
    steps.append(ld(1, vint(1, len(steps) - 1)) + ld(2, pstmt("COMMIT")))
    ok_steps = len(steps)
    steps.append(ld(1, ld(3, vint(1, ok_steps - 1))) + ld(2, pstmt("ROLLBACK")))
    return ld(3, ld(1, b"".join(ld(1, s) for s in steps))), ok_steps


PB_CLOSE = ld(1, b"")  # StreamRequest{close = 1: CloseStreamReq{}}


def pbody(requests):
    """PipelineReqBody without a baton (a new stream): requests = 2."""
    return b"".join(ld(2, r) for r in requests)


def read_varint(buf, i):
    n = shift = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return n, i


def pb_fields(buf):
    """One protobuf message as {field number: [values]}: varints as int, the rest as bytes."""
    out, i = {}, 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = read_varint(buf, i)
        elif wt == 2:
            n, i = read_varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt in (1, 5):
            size = 8 if wt == 1 else 4
            v, i = buf[i:i + size], i + size
        else:
            raise BenchError(f"protobuf response: unexpected wire type {wt}")
        out.setdefault(num, []).append(v)
    return out


def pb_message(fields, num):
    return fields.get(num, [b""])[-1]


def pb_results(data):
    """A protobuf PipelineRespBody (results = 3) in json_results' form. StreamResult: ok = 1
    (StreamResponse: batch = 3 -> BatchStreamResp.result = 1), error = 2 (Error.message = 1);
    BatchResult: step_results = 1, step_errors = 2, maps as entries {key = 1, value = 2}."""
    body = pb_fields(data)
    out = []
    for raw in body.get(3, []):
        r = pb_fields(raw)
        if 2 in r or 1 not in r:
            out.append(("error", pb_message(pb_fields(pb_message(r, 2)), 1).decode()))
            continue
        resp = pb_fields(r[1][0])
        if 3 not in resp:
            out.append(("ok", None))
            continue
        res = pb_fields(pb_message(pb_fields(resp[3][0]), 1))
        ok = {pb_fields(e).get(1, [0])[0] for e in res.get(1, [])}
        errs = []
        for e in res.get(2, []):
            entry = pb_fields(e)
            errs.append((entry.get(1, [0])[0], pb_message(pb_fields(pb_message(entry, 2)), 1).decode()))
        out.append(("batch", (ok, errs)))
    baton = body.get(1, [None])[0]
    return (baton.decode() if baton is not None else None), out


def check_results(label, results, expect):
    """expect: per request None (any ok response) or the number of batch steps that must succeed
    (0..k-1; a ROLLBACK after COMMIT must be skipped)."""
    if len(results) != len(expect):
        raise BenchError(f"{label}: {len(results)} results for {len(expect)} requests")
    for n, ((kind, detail), want) in enumerate(zip(results, expect)):
        if kind == "error":
            raise BenchError(f"{label}: request {n} failed: {detail}")
        if want is None:
            continue
        if kind != "batch":
            raise BenchError(f"{label}: request {n} is not a batch response")
        ok, errs = detail
        if errs:
            raise BenchError(f"{label}: request {n}, step {errs[0][0]} failed: {errs[0][1]}")
        if ok != set(range(want)):
            missing = sorted(set(range(want)) - ok)[:5]
            raise BenchError(f"{label}: request {n}: steps {missing} did not run "
                             f"({len(ok)} of {want} succeeded)")


# ---- transport and measurement -----------------------------------------------------------------

class Sqld:
    """One keep-alive HTTP connection to sqld with the bearer token."""

    def __init__(self, url, token):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port or 80
        self.base = u.path.rstrip("/")
        self.auth = f"Bearer {token}"
        self.conn = None

    def post(self, path, body, ctype):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
            self.conn.connect()
            self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.conn.request("POST", self.base + path, body,
                              {"Authorization": self.auth, "Content-Type": ctype})
            resp = self.conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            raise
        if resp.status != 200:
            raise BenchError(f"HTTP {resp.status} from {path}: {data[:500]!r}")
        return data

    def execute(self, *sqls):
        """Runs statements on a new stream (autocommit); returns the last one's rows as lists."""
        reqs = [{"type": "execute", "stmt": {"sql": s}} for s in sqls]
        body = json.loads(self.post("/v2/pipeline", json_body(reqs + [{"type": "close"}]), JSON_CT))
        for r in body["results"]:
            if r.get("type") != "ok":
                raise BenchError(f"{sqls}: {(r.get('error') or {}).get('message', r)}")
        res = body["results"][len(sqls) - 1]["response"]["result"]
        return [[v.get("value") for v in row] for row in res["rows"]]


def sqld_pid(port):
    """sqld's pid, found by the port on its command line."""
    pattern = rf"127\.0\.0\.1:{port}( |$)"
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    pids = []
    for p in out.split():
        try:
            with open(f"/proc/{p}/comm") as f:
                if f.read().strip() == "sqld":
                    pids.append(int(p))
        except OSError:
            pass
    if len(pids) != 1:
        raise BenchError(f"expected one sqld process listening on port {port}, found {pids}")
    return pids[0]


def cpu_seconds(pid):
    """utime + stime of the process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Request:
    """One prebuilt POST. body: bytes, or (head, tail) to put the current baton between."""

    def __init__(self, path, ctype, body, expect):
        self.path, self.ctype, self.body, self.expect = path, ctype, body, expect

    def encode(self, baton):
        if isinstance(self.body, bytes):
            return self.body
        return self.body[0] + dumps(baton) + self.body[1]


class Variant:
    def __init__(self, name, rows, requests):
        self.name, self.rows, self.requests = name, rows, requests
        self.scale = ROWS / rows
        self.walls, self.cpus = [], []


def make_rows(n):
    return [(i, f"row {i}", i % 1000, i / 7) for i in range(1, n + 1)]


def chunks(rows):
    return [rows[k:k + PER_STMT] for k in range(0, len(rows), PER_STMT)]


def json_body(requests):
    return dumps({"baton": None, "requests": requests})


def single(name, rows, path, body, expect):
    """A variant that sends its whole transaction in one POST."""
    ctype = PB_CT if path.startswith("/v3-protobuf") else JSON_CT
    return Variant(name, rows, [Request(path, ctype, body, expect)])


def build_variants():
    rows = make_rows(ROWS)
    few = make_rows(max(1, ROWS // SLOW_DIV))
    rows_json = [dumps([[i, v, n, list(float_parts(f))] for i, v, n, f in c]).decode()
                 for c in chunks(rows)]
    close = {"type": "close"}
    out = []

    # 1-3: multi-row VALUES with one placeholder per value, one batch
    stmts = [(values_sql(len(c)), [x for r in c for x in r]) for c in chunks(rows)]
    batch, ok = jbatch([jstmt(sql, args) for sql, args in stmts])
    body = json_body([batch, close])
    out.append(single("placeholders v2 json", ROWS, "/v2/pipeline", body, [ok, None]))
    out.append(single("placeholders v3 json", ROWS, "/v3/pipeline", body, [ok, None]))
    batch, ok = pbatch([pstmt(sql, args) for sql, args in stmts])
    out.append(single("placeholders v3 protobuf", ROWS, "/v3-protobuf/pipeline",
                      pbody([batch, PB_CLOSE]), [ok, None]))

    # 4-5: one single-row statement per row, SQL text in every step vs stored once
    one = values_sql(1)
    batch, ok = jbatch([jstmt(one, r) for r in few])
    out.append(single("one statement per row, v2 json", len(few), "/v2/pipeline",
                      json_body([batch, close]), [ok, None]))
    store = {"type": "store_sql", "sql_id": 1, "sql": one}
    batch, ok = jbatch([jstmt(args=r, sql_id=1) for r in few])
    out.append(single("one statement per row, store_sql + sql_id, v2 json", len(few), "/v2/pipeline",
                      json_body([store, batch, close]), [None, ok, None]))

    # 6-7: what pgturso sends now: rows as one JSON text argument per statement, one batch
    batch, ok = jbatch([jstmt(JSON_ROWS_SQL, [j]) for j in rows_json])
    out.append(single("JSON rows v2 json", ROWS, "/v2/pipeline", json_body([batch, close]), [ok, None]))
    batch, ok = pbatch([pstmt(JSON_ROWS_SQL, [j]) for j in rows_json])
    out.append(single("JSON rows v3 protobuf", ROWS, "/v3-protobuf/pipeline",
                      pbody([batch, PB_CLOSE]), [ok, None]))

    # 8: how pgturso splits a large transaction: one statement per request on one stream (baton
    # chaining), BEGIN in the first request, COMMIT (+ ROLLBACK) and close in the last
    reqs = []
    for k, j in enumerate(rows_json):
        first, last = k == 0, k == len(rows_json) - 1
        batch, ok = jbatch([jstmt(JSON_ROWS_SQL, [j])], begin=first, commit=last)
        parts, expect = ([batch, close], [ok, None]) if last else ([batch], [ok])
        if first:
            body = json_body(parts)
        else:  # b'{"baton":' + baton + b',"requests":[...]}'
            body = (b'{"baton":', b"," + dumps({"requests": parts})[1:])
        reqs.append(Request("/v2/pipeline", JSON_CT, body, expect))
    name = f"JSON rows v2 json, {len(reqs)} requests of {PER_STMT} rows on one stream"
    out.append(Variant(name, ROWS, reqs))
    return out


def run_once(db, pid, v):
    """Applies variant v to a fresh table; returns (wall s, sqld cpu s), scaled to ROWS rows."""
    db.execute(f"DROP TABLE IF EXISTS {TABLE}", DDL)
    raws, baton = [], None
    cpu0 = cpu_seconds(pid)
    t0 = time.perf_counter()
    for n, req in enumerate(v.requests):
        data = db.post(req.path, req.encode(baton), req.ctype)
        raws.append(data)
        if n + 1 < len(v.requests):  # the next request continues this stream
            baton = json.loads(data).get("baton")
            if baton is None:
                raise BenchError(f"{v.name}: request {n} returned no baton: {data[:500]!r}")
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(pid) - cpu0
    for n, (req, data) in enumerate(zip(v.requests, raws)):
        _, results = (pb_results if req.ctype == PB_CT else json_results)(data)
        check_results(f"{v.name}, request {n}", results, req.expect)
    want = [v.rows, sum(i % 1000 for i in range(1, v.rows + 1)), v.rows]
    got = db.execute(f"SELECT count(*), sum(n), sum(v = 'row ' || id AND f = id / 7.0) FROM {TABLE}")[0]
    if [int(x or 0) for x in got] != want:
        raise BenchError(f"{v.name}: count(*), sum(n), exact rows = {got}, expected {want}")
    return wall * v.scale, cpu * v.scale


def table(headers, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]

    def line(cells):  # first column left-aligned, numbers right-aligned
        return " | ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                          for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(headers), "-+-".join("-" * w for w in widths)] + [line(r) for r in rows])


def gain(variants, base, other):
    """How much less wall time `other` takes than `base` (0.10 = 10 % faster), and its CPU gain."""
    b, o = variants[base], variants[other]
    return 1 - o.wall / b.wall, (1 - o.cpu / b.cpu) if b.cpu else 0.0


def report(variants, ver):
    for v in variants:
        v.wall, v.cpu = statistics.median(v.walls), statistics.median(v.cpus)
    best = min(v.wall for v in variants)
    rows = []
    for v in variants:
        mark = "*" if v.scale != 1 else ""
        rows.append([v.name + mark, ROWS, f"{v.wall:.3f}", f"{v.cpu:.3f}", f"{ROWS / v.wall:,.0f}",
                     f"{v.wall / best:.2f}"])
    print(table(["variant", "rows", "wall s (median)", "sqld cpu s (median)", "rows/s", "x best"], rows))
    print(f"* measured on {max(1, ROWS // SLOW_DIV)} rows (one statement per row is slow), "
          f"times scaled x{ROWS / max(1, ROWS // SLOW_DIV):g} to {ROWS} rows")
    print(f"medians of {REPEAT} interleaved runs, {PER_STMT} rows per multi-row statement; {ver}")

    # conclusion: counterparts compared on wall time (sqld CPU in parentheses); >10 % counts
    by = {i + 1: v for i, v in enumerate(variants)}
    pairs = [("v3 protobuf vs v2 JSON, placeholders", 1, 3), ("v3 protobuf vs v2 JSON, JSON rows", 6, 7),
             ("v3 vs v2 JSON, placeholders", 1, 2), ("store_sql vs SQL text, one statement per row", 4, 5)]
    parts, winners = [], []
    for label, base, other in pairs:
        w, c = gain(by, base, other)
        parts.append(f"{label} {w:+.1%} wall ({round(c, 2) + 0.0:+.0%} cpu)")
        if w > 0.10:
            winners.append(label)
    fastest = min(variants, key=lambda v: v.wall)
    current = by[6]  # what pgturso sends for a transaction that fits one request
    if fastest is current or fastest.wall > 0.9 * current.wall:
        keep = f"'{current.name}' (what pgturso sends) is fastest or within 10% of it, so keep it"
    else:
        keep = f"'{fastest.name}' beats what pgturso sends by {1 - fastest.wall / current.wall:.1%}"
    print(f"Conclusion: fastest is '{fastest.name}' ({fastest.wall:.3f} s); gains (+ = faster): "
          f"{'; '.join(parts)}; more than 10%: {', '.join(winners) or 'none'}; {keep}.")


def versions(db):
    sqlite = db.execute("SELECT sqlite_version()")[0][0]
    sqld = "sqld --version: unavailable"
    binary = os.environ.get("SQLD_BIN")
    if binary:
        try:
            out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
            if out.returncode == 0 and out.stdout.strip():
                sqld = out.stdout.strip().splitlines()[0]
        except OSError:
            pass
    return f"SQLite {sqlite}, {sqld}"


def main():
    if ROWS < 1 or REPEAT < 1:
        raise BenchError("PGTURSO_PROTO_ROWS and PGTURSO_PROTO_REPEAT must be positive")
    url, token = os.environ["SQLD_URL"], os.environ["TURSO_TOKEN"]
    db = Sqld(url, token)
    pid = sqld_pid(db.port)
    ver = versions(db)
    print(f"building request bodies for {ROWS} rows ...", flush=True)
    variants = build_variants()
    for rep in range(REPEAT):
        walls = []
        for v in variants:
            wall, cpu = run_once(db, pid, v)
            v.walls.append(wall)
            v.cpus.append(cpu)
            walls.append(f"{wall:.2f}")
        print(f"run {rep + 1}/{REPEAT} wall s (variants 1-{len(variants)}): {' '.join(walls)}", flush=True)
    db.execute(f"DROP TABLE IF EXISTS {TABLE}")
    print()
    report(variants, ver)


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Exception:  # noqa: BLE001 - any failure is an error of the run
        traceback.print_exc()
        sys.exit(2)
