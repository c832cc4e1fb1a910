//! Hostile-input tests, 6: identifiers chosen to break quoting, which must replicate under their
//! documented names.

use super::*;

#[test]
fn hostile_identifiers_replicate_under_their_documented_names() {
    let _g = group();
    let sqld = Sqld::start("h_ident", false);
    let (mut c, slot) = setup("h_ident");
    let long_table = format!("{}x", "é".repeat(31));
    let long_col = format!("{}z", "ü".repeat(31));
    assert_eq!((long_table.len(), long_col.len()), (63, 63));
    // (schema or "", table, columns: the first is the int key, the others text) -> Turso name.
    let specs: Vec<(&str, String, Vec<String>, String)> = vec![
        (
            "",
            "we\"ird".into(),
            vec!["co\"l".into(), "it's".into()],
            "we\"ird".into(),
        ),
        (
            "",
            "it's a table".into(),
            vec!["id".into(), "a.b".into(), "sp ace".into(), "  lead".into()],
            "it's a table".into(),
        ),
        (
            "",
            "a.b".into(),
            vec!["id".into(), "v".into()],
            "a.b".into(),
        ),
        (
            "",
            "tâblé_ñ".into(),
            vec!["名前".into(), "🦀".into()],
            "tâblé_ñ".into(),
        ),
        (
            "",
            "🦀🚀".into(),
            vec!["id".into(), "🎉".into()],
            "🦀🚀".into(),
        ),
        (
            "",
            long_table.clone(),
            vec![long_col.clone(), "v".into()],
            long_table.clone(),
        ),
        (
            "",
            "select".into(),
            [
                "order", "table", "from", "where", "group", "values", "excluded", "rowid",
                "primary",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            "select".into(),
        ),
        (
            "",
            "params".into(),
            ["?", "?1", ":a", "$1", "--", "/*", "@x", "*/"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            "params".into(),
        ),
        (
            "",
            "MixedCase".into(),
            vec!["Id".into(), "vAlUe".into()],
            "MixedCase".into(),
        ),
        (
            "my.schema",
            "T t".into(),
            vec!["id".into(), "v".into()],
            "my.schema.T t".into(),
        ),
        (
            "Sch\"ema'",
            "x".into(),
            vec!["id".into(), "v".into()],
            "Sch\"ema'.x".into(),
        ),
        (
            "ünï",
            "ταβλε".into(),
            vec!["id".into(), "v".into()],
            "ünï.ταβλε".into(),
        ),
    ];
    let qualified = |schema: &str, table: &str| {
        if schema.is_empty() {
            pq(table)
        } else {
            format!("{}.{}", pq(schema), pq(table))
        }
    };
    let mut ddl = String::new();
    for (schema, table, cols, _) in &specs {
        if !schema.is_empty() {
            ddl.push_str(&format!("CREATE SCHEMA IF NOT EXISTS {};", pq(schema)));
        }
        let defs: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, c)| {
                format!(
                    "{} {}",
                    pq(c),
                    if i == 0 { "int primary key" } else { "text" }
                )
            })
            .collect();
        ddl.push_str(&format!(
            "CREATE TABLE {} ({});",
            qualified(schema, table),
            defs.join(", ")
        ));
    }
    ddl.push_str(&format!(
        "CREATE TABLE {} ({} int, {} text, v text, PRIMARY KEY ({}, {}));",
        pq("comp\"key"),
        pq("a b"),
        pq("c\"d"),
        pq("a b"),
        pq("c\"d")
    ));
    exec(&mut c, &ddl);
    // Transaction 1: three rows per table. Transaction 2: update, key change, delete.
    let mut t1 = String::from("BEGIN;");
    let mut t2 = String::from("BEGIN;");
    for (ti, (schema, table, cols, _)) in specs.iter().enumerate() {
        let q = qualified(schema, table);
        for id in 1..=3 {
            let vals: Vec<String> = (1..cols.len())
                .map(|ci| lit(&format!("{ti}.{ci}.{id} it's \"q\" {}", cols[ci])))
                .collect();
            let mut all = vec![id.to_string()];
            all.extend(vals);
            t1.push_str(&format!("INSERT INTO {q} VALUES ({});", all.join(", ")));
        }
        let key = pq(&cols[0]);
        let sets: Vec<String> = cols[1..]
            .iter()
            .map(|c| format!("{} = 'upd ' || {}", pq(c), pq(c)))
            .collect();
        t2.push_str(&format!(
            "UPDATE {q} SET {} WHERE {key} = 2;",
            sets.join(", ")
        ));
        t2.push_str(&format!("UPDATE {q} SET {key} = 30 WHERE {key} = 3;"));
        t2.push_str(&format!("DELETE FROM {q} WHERE {key} = 1;"));
    }
    let ck = pq("comp\"key");
    t1.push_str(&format!(
        "INSERT INTO {ck} VALUES (1, 'x\"', 'one'), (1, 'y''', 'two'), (2, 'x\"', 'three');"
    ));
    t2.push_str(&format!(
        "DELETE FROM {ck} WHERE {} = 1 AND {} = 'y''';UPDATE {ck} SET {} = 'z' WHERE {} = 2;",
        pq("a b"),
        pq("c\"d"),
        pq("c\"d"),
        pq("a b")
    ));
    t1.push_str("COMMIT;");
    t2.push_str("COMMIT;");
    exec(&mut c, &t1);
    exec(&mut c, &t2);
    let out = changes(&mut c, &slot, &[("url", &sqld.url())]).unwrap();
    assert_eq!(out.len(), 2, "{out:?}");
    let mut k = Cases::new("identifiers");
    k.run("Turso table names", || {
        let mut expected_tables: Vec<String> = specs.iter().map(|s| s.3.clone()).collect();
        expected_tables.push("comp\"key".into());
        expected_tables.sort();
        assert_eq!(turso_tables(&sqld), expected_tables, "Turso table names");
    });
    for (schema, table, cols, turso) in &specs {
        let q = qualified(schema, table);
        k.run(&format!("table {q} -> Turso {turso:?}"), || {
            let pg_side = pg_rows(&mut c, &format!("SELECT * FROM {q} ORDER BY 1"));
            assert_eq!(pg_side.len(), 2, "{q}");
            let turso_side = turso_text(&sqld, &format!("SELECT * FROM {} ORDER BY 1", qi(turso)));
            assert_eq!(turso_side, pg_side, "rows of {q} (Turso {turso:?})");
            let names: Vec<String> = sqld
                .query(&format!(
                    "SELECT name FROM pragma_table_info({}) ORDER BY cid",
                    lit(turso)
                ))
                .into_iter()
                .map(|r| r[0].as_str().unwrap().to_string())
                .collect();
            assert_eq!(&names, cols, "column names of {q}");
        });
    }
    k.run("composite key with hostile column names", || {
        assert_eq!(
            turso_text(
                &sqld,
                &format!("SELECT * FROM {} ORDER BY 1, 2", qi("comp\"key"))
            ),
            pg_rows(&mut c, &format!("SELECT * FROM {ck} ORDER BY 1, 2")),
        );
    });
    k.run("table_name filter with quoted hostile names", || {
        exec(&mut c, &format!(
            "INSERT INTO {} VALUES (100, 'filtered in'); INSERT INTO {} VALUES (100, 'filtered out');",
            qualified("my.schema", "T t"), pq("a.b")
        ));
        let out = changes(&mut c, &slot, &[("url", &sqld.url()), ("table_name", "\"my.schema\".\"T t\"")]).unwrap();
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(sqld.query("SELECT v FROM \"my.schema.T t\" WHERE id = 100"), vec![vec![json!("filtered in")]]);
        assert!(sqld.query("SELECT v FROM \"a.b\" WHERE id = 100").is_empty());
    });
    k.finish();
}

/// PostgreSQL names that map to one and the same Turso table: `public."s.t"` and `s.t` (the
/// documented schema.table naming), and `"T"` and `t` (SQLite names are case-insensitive). A
/// user expects either separate Turso tables or a clean error, never rows of two PostgreSQL
/// tables mixed into one Turso table.
#[test]
fn distinct_tables_are_never_merged_into_one_turso_table() {
    let _g = group();
    let sqld = Sqld::start("h_collide", false);
    let (mut c, slot) = setup("h_collide");
    exec(&mut c, "CREATE TABLE public.\"s.t\"(id int primary key, v text);
         CREATE SCHEMA s; CREATE TABLE s.t(id int primary key, v text);
         CREATE TABLE \"T\"(id int primary key, v text); CREATE TABLE t(id int primary key, v text);");
    let pairs = [
        ("public.\"s.t\" vs s.t", "public.\"s.t\"", "s.t", "s.t"),
        ("\"T\" vs t", "\"T\"", "t", "t"),
    ];
    let mut k = Cases::new("name collisions");
    for (what, a, b, turso) in pairs {
        let before = confirmed_lsn(&mut c, &slot);
        exec(
            &mut c,
            &format!(
                "INSERT INTO {a} VALUES (1, 'from {a}'); INSERT INTO {b} VALUES (2, 'from {b}')"
            ),
        );
        k.run(what, || {
            match changes(&mut c, &slot, &[("url", &sqld.url())]) {
                Err(e) => {
                    let (code, msg, _, _) = db_error(&e);
                    assert!(code != "XX000", "{code} {msg}");
                    assert_alive(&mut c, what);
                    assert_eq!(confirmed_lsn(&mut c, &slot), before, "slot advanced");
                }
                Ok(_) => {
                    let rows = turso_text(
                        &sqld,
                        &format!("SELECT id, v FROM {} ORDER BY id", qi(turso)),
                    );
                    let of_a = pg_rows(&mut c, &format!("SELECT id, v FROM {a} ORDER BY id"));
                    let of_b = pg_rows(&mut c, &format!("SELECT id, v FROM {b} ORDER BY id"));
                    assert!(
                        rows == of_a || rows == of_b,
                        "Turso table {turso:?} mixes the rows of two PostgreSQL tables: {rows:?}"
                    );
                }
            }
        });
        skip_pending(&mut c, &slot);
    }
    k.finish();
}

/// A keyless REPLICA IDENTITY FULL table with a column named "rowid": in SQLite that name then
/// means the column, not the row id, which the row matching for UPDATE/DELETE relies on.
#[test]
fn keyless_table_with_a_rowid_column_stays_exact() {
    let _g = group();
    let sqld = Sqld::start("h_rowid", false);
    let (mut c, slot) = setup("h_rowid");
    exec(
        &mut c,
        "CREATE TABLE r(\"rowid\" int, v text); ALTER TABLE r REPLICA IDENTITY FULL;
         INSERT INTO r VALUES (1, 'a'), (1, 'b'), (NULL, 'c'), (7, 'd');",
    );
    changes(&mut c, &slot, &[("url", &sqld.url())]).unwrap();
    exec(&mut c, "DELETE FROM r WHERE v = 'b'; UPDATE r SET v = 'c2' WHERE v = 'c'; UPDATE r SET v = 'd2' WHERE v = 'd';");
    changes(&mut c, &slot, &[("url", &sqld.url())]).unwrap();
    let pg_side = pg_rows(&mut c, "SELECT \"rowid\", v FROM r ORDER BY v");
    let turso = turso_text(&sqld, "SELECT \"rowid\", v FROM r ORDER BY v");
    assert_eq!(turso, pg_side, "Turso differs from PostgreSQL");
}
