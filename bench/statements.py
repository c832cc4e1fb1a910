#!/usr/bin/env python3
"""Instructions sqld executes for forms of pgturso's JSON-rows statement (standard library only);
started by bench/statements.sh, which runs sqld under valgrind's callgrind.

Question: how much does the way a JSON-rows statement reads its rows cost sqld? Wall and CPU time
on these shared machines swing by 30% from run to run; instruction counts do not, so small
differences between statement forms show.

Every variant applies ROWS rows (id, v, n, f) as statements of 2,000 rows in ONE Turso transaction
(one request), like W1 (insert into an empty table) and W3 (upsert of rows that all exist); then
ROWS of 2*ROWS rows are deleted by key (like W4), with the keys as one-element rows and as a flat
array. Only
that request is counted: callgrind's instrumentation is switched on just before it is sent and off
after its answer. After every run the table is read back and checked value by value (f exactly).

Environment: SQLD_URL, TURSO_TOKEN, SQLD_PID (the sqld process under callgrind), CG_OUT (its
--callgrind-out-file), PGTURSO_STMT_ROWS (default 20000).
Exit status: 0 when every variant ran and verified, 2 on any error.
"""

import json
import os
import subprocess
import sys
import time
import traceback

from bench import float_parts
from protocols import (BenchError, JSON_CT, Sqld, check_results, json_body, json_results, jbatch,
                       jstmt)

ROWS = int(os.environ.get("PGTURSO_STMT_ROWS", "20000"))
PER_STMT = 2000
DDL = 'CREATE TABLE "t" ("id" INTEGER NOT NULL, "v" TEXT, "n" INTEGER, "f" REAL, PRIMARY KEY ("id"))'
INSERT = 'INSERT INTO "t" ("id", "v", "n", "f") '
UPSERT = ' ON CONFLICT ("id") DO UPDATE SET "v" = excluded."v", "n" = excluded."n", "f" = excluded."f"'


def cells(row):
    return (f"{row} ->> 0, {row} ->> 1, {row} ->> 2, "
            f"({row} ->> '$[3][0]') * power(2.0, {row} ->> '$[3][1]')")


FLAT = INSERT + "SELECT " + cells("value") + " FROM json_each(?) WHERE true"
CO = (INSERT + "SELECT " + cells("r.j")
      + " FROM (SELECT value AS j FROM json_each(?) LIMIT -1 OFFSET 0) AS r WHERE true")
CO_ORDERED = (INSERT + "SELECT " + cells("r.j") + " FROM (SELECT value AS j FROM json_each(?) "
              'ORDER BY "key" LIMIT -1 OFFSET 0) AS r WHERE true')
# (name, statement, what it is)
FORMS = [
    ("flat+order", FLAT + ' ORDER BY "key"',
     "pgturso before the co-routine: json_each flattened into the SELECT, ORDER BY key"),
    ("flat", FLAT, "flattened, no ORDER BY"),
    ("co+order", CO_ORDERED, "co-routine subquery, ORDER BY key inside it"),
    ("co", CO, "pgturso now: co-routine subquery, no ORDER BY (keys distinct per statement)"),
]


DELETE_FORMS = [
    ("rows", 'DELETE FROM "t" WHERE "id" IN (SELECT r.j ->> 0 FROM (SELECT value AS j FROM '
     'json_each(?) LIMIT -1 OFFSET 0) AS r)', lambda k: [k], "keys as one-element rows (any key)"),
    ("flat", 'DELETE FROM "t" WHERE "id" IN (SELECT value FROM json_each(?))', lambda k: k,
     "pgturso now for a single-column integer or text key: one flat array"),
]


def rows_for(generation):
    return [(i, f"row {i} g{generation}", (i + generation) % 1000, (i + generation) / 7)
            for i in range(1, ROWS + 1)]


def request(sql, rows):
    stmts = []
    for k in range(0, len(rows), PER_STMT):
        arg = json.dumps([[i, v, n, list(float_parts(f))] for i, v, n, f in rows[k:k + PER_STMT]],
                         separators=(",", ":"))
        stmts.append(jstmt(sql, [arg]))
    batch, ok_steps = jbatch(stmts)
    return json_body([batch, {"type": "close"}]), ok_steps


def verify(db, label, rows):
    got = db.execute('SELECT "id", "v", "n", "f" FROM "t" ORDER BY "id"')
    want = [[str(i), v, str(n), f] for i, v, n, f in rows]
    if len(got) != len(want):
        raise BenchError(f"{label}: {len(got)} rows in Turso, {len(want)} expected")
    for g, w in zip(got, want):
        if g != w:
            raise BenchError(f"{label}: row {w[0]} is {g}, expected {w}")


def callgrind(*args):
    subprocess.run(["callgrind_control", *args, os.environ["SQLD_PID"]], check=True,
                   capture_output=True)


DUMPS = 0


def counted(db, body, ok_steps, label):
    """Instructions sqld executes for one request (callgrind dump of just that request)."""
    global DUMPS
    DUMPS += 1
    path = f"{os.environ['CG_OUT']}.{DUMPS}"  # callgrind numbers its dumps 1, 2, ...
    callgrind("-z")
    callgrind("-i", "on")
    try:
        data = db.post("/v2/pipeline", body, JSON_CT)
    finally:
        callgrind("-i", "off")
    callgrind("-d")
    check_results(label, json_results(data)[1], [ok_steps, None])
    # callgrind acts on control commands when sqld next runs, and returns before the dump is
    # written: wake sqld with a trivial request until the dump has its total line.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        db.execute("SELECT 1")
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    if line.startswith("totals:"):
                        return int(line.split()[1])
        time.sleep(0.2)
    raise BenchError(f"{label}: no callgrind dump with an instruction total after 60 s")


def main():
    db = Sqld(os.environ["SQLD_URL"], os.environ["TURSO_TOKEN"])
    print(f"sqld under callgrind, {ROWS} rows per run, {PER_STMT} rows per statement, "
          "one request per run; instructions of that request only", flush=True)
    results = []
    generation = 0
    for name, sql, what in FORMS:
        # W1-like: insert into an empty table.
        db.execute('DROP TABLE IF EXISTS "t"', DDL)
        generation += 1
        rows = rows_for(generation)
        body, ok_steps = request(sql, rows)
        insert = counted(db, body, ok_steps, f"{name} insert")
        verify(db, f"{name} insert", rows)
        # W3-like: upsert every row again, all of them conflicting.
        generation += 1
        rows = rows_for(generation)
        body, ok_steps = request(sql + UPSERT, rows)
        upsert = counted(db, body, ok_steps, f"{name} upsert")
        verify(db, f"{name} upsert", rows)
        results.append((name, what, insert, upsert))
        print(f"  {name}: insert {insert:,} upsert {upsert:,} instructions", flush=True)
    base = results[0]
    print()
    print(f"{'form':<11} {'insert':>14} {'vs first':>9} {'upsert':>14} {'vs first':>9}  what")
    for name, what, insert, upsert in results:
        print(f"{name:<11} {insert:>14,} {insert / base[2] - 1:>+9.1%} "
              f"{upsert:>14,} {upsert / base[3] - 1:>+9.1%}  {what}")
    print(f"(per row: {results[-1][2] / ROWS:,.0f} instructions to insert, "
          f"{results[-1][3] / ROWS:,.0f} to upsert, for the last form)")
    print()
    deletes = []
    for name, sql, shape, what in DELETE_FORMS:
        db.execute('DROP TABLE IF EXISTS "t"', DDL,
                   f"INSERT INTO t SELECT value, 'x', 1, 0.5 FROM generate_series(1, {2 * ROWS})")
        stmts = [jstmt(sql, [json.dumps([shape(k) for k in range(a, a + 2 * PER_STMT, 2)],
                                        separators=(",", ":"))])
                 for a in range(2, 2 * ROWS + 2, 2 * PER_STMT)]
        batch, ok_steps = jbatch(stmts)
        n = counted(db, json_body([batch, {"type": "close"}]), ok_steps, f"{name} delete")
        left = db.execute("SELECT count(*), sum(id % 2) FROM t")
        if left != [[str(ROWS), str(ROWS)]]:
            raise BenchError(f"{name} delete: left {left}, expected {ROWS} odd ids")
        deletes.append((name, what, n))
    print(f"{'delete form':<11} {'instructions':>14} {'vs first':>9}  what")
    for name, what, n in deletes:
        print(f"{name:<11} {n:>14,} {n / deletes[0][2] - 1:>+9.1%}  {what}")


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print(f"statements: {e}", file=sys.stderr)
        sys.exit(2)
    except Exception:  # noqa: BLE001 - any failure is an error exit
        traceback.print_exc()
        sys.exit(2)
