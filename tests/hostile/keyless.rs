//! Hostile-input tests, 5: tables without a key.

use super::*;

#[test]
fn keyless_update_and_delete_fail_with_a_hint_that_works() {
    let _g = group();
    let sqld = Sqld::start("h_nokey", false);
    let (mut c, slot) = setup("h_nokey");
    let url = sqld.url();
    exec(
        &mut c,
        &format!(
            "CREATE TABLE nk(a int, b text); INSERT INTO nk VALUES (1, 'x'), (2, 'y');
         CREATE SCHEMA {s}; CREATE TABLE {s}.{t}(a int); INSERT INTO {s}.{t} VALUES (1);
         CREATE TABLE {p}(a int); INSERT INTO {p} VALUES (1);",
            s = pq("we.ird \"s"),
            t = pq("no key"),
            p = pq("a.b")
        ),
    );
    changes(&mut c, &slot, &[("url", &url)]).unwrap();
    // (what, DML, schema, table, operation)
    let cases: Vec<(&str, String, &str, &str, &str)> = vec![
        (
            "DELETE on a table without key",
            "DELETE FROM nk WHERE a = 2".into(),
            "public",
            "nk",
            "DELETE",
        ),
        (
            "UPDATE on a keyless table in a schema with a dot, a space and a quote",
            format!("UPDATE {}.{} SET a = 2", pq("we.ird \"s"), pq("no key")),
            "we.ird \"s",
            "no key",
            "UPDATE",
        ),
        (
            "DELETE on a keyless public table with a dot in its name",
            format!("DELETE FROM {}", pq("a.b")),
            "public",
            "a.b",
            "DELETE",
        ),
    ];
    let mut k = Cases::new("keyless");
    for (what, dml, schema, name, op) in cases {
        exec(&mut c, &dml);
        let table = format!("{schema}.{name}");
        k.run(what, || {
            let before = confirmed_lsn(&mut c, &slot);
            let res = changes(&mut c, &slot, &[("url", &url)]);
            let (_, _, _, hint) = assert_fails(&mut c, &slot, &before, what, res, "55000",
                &is(format!("cannot replicate {op} on table \"{table}\": it has no replica identity (no primary key, or REPLICA IDENTITY NOTHING)")),
                &["Add a primary key to the table, or run ALTER TABLE ", " REPLICA IDENTITY FULL"],
                &[]);
            // Following the hint must work: the ALTER TABLE it suggests is valid SQL for this table.
            let from = hint.find("ALTER TABLE ").unwrap_or_else(|| panic!("no command in hint {hint:?}"));
            let to = hint[from..].find(" REPLICA IDENTITY FULL").unwrap() + from + " REPLICA IDENTITY FULL".len();
            let alter = hint[from..to].to_string();
            if let Err(e) = c.batch_execute(&alter) {
                panic!("the hint's command `{alter}` fails: {}", e.as_db_error().map_or(e.to_string(), |d| d.message().to_string()));
            }
            let ident: String = c
                .query_one(
                    "SELECT c.relreplident::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
                    &[&schema, &name],
                )
                .unwrap()
                .get(0);
            assert_eq!(ident, "f", "the hint's command did not set REPLICA IDENTITY FULL on {table}");
        });
        skip_pending(&mut c, &slot);
    }
    k.finish();
}
