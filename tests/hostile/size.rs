//! Hostile-input tests, 8: PostgreSQL's widest table and values beyond what sqld stores.

use super::*;

/// The widest PostgreSQL table, and values near and far beyond what sqld stores.
///
/// sqld 0.24 refuses any string, blob or row above about 5,000,000 bytes ("string or blob too
/// big", SQLite's SQLITE_MAX_LENGTH as sqld builds it), so a 30 MB value cannot be stored in Turso
/// at all: it must fail cleanly and keep the slot. A row of a 2 MiB text and a 2 MB bytea (4.1 MB,
/// just under the limit, and over a small max_request_bytes) must arrive intact.
#[test]
fn widest_table_and_huge_values() {
    let _g = group();
    let sqld = Sqld::start("h_size", false);
    let (mut c, slot) = setup("h_size");
    let mut k = Cases::new("size");
    // 1600 columns (PostgreSQL's maximum; SQLite's default maximum is 2000). 50 rows in one
    // transaction: at most 20 rows fit one statement (32,766 parameters).
    let cols: Vec<String> = (1..=1600)
        .map(|k| format!("c{k} int{}", if k == 1 { " primary key" } else { "" }))
        .collect();
    exec(&mut c, &format!("CREATE TABLE wide ({})", cols.join(", ")));
    let exprs: Vec<String> = (1..=1600)
        .map(|k| {
            if k == 1 {
                "g".to_string()
            } else {
                format!("g * 10000 + {k}")
            }
        })
        .collect();
    exec(
        &mut c,
        &format!(
            "INSERT INTO wide SELECT {} FROM generate_series(1, 50) g",
            exprs.join(", ")
        ),
    );
    exec(
        &mut c,
        "BEGIN; UPDATE wide SET c1600 = -1 WHERE c1 = 7; DELETE FROM wide WHERE c1 = 50; COMMIT;",
    );
    // 2 MiB of poorly compressible text and 2,000,000 random-looking bytes in one row.
    exec(&mut c, "CREATE TABLE huge(id int primary key, t text, b bytea);
         INSERT INTO huge SELECT 1,
             (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 65536) g),
             (SELECT decode(string_agg(md5('b' || g), ''), 'hex') FROM generate_series(1, 125000) g);");
    let start = Instant::now();
    let out = changes(
        &mut c,
        &slot,
        &[("url", &sqld.url()), ("max_request_bytes", "65536")],
    );
    eprintln!("1600 columns x 50 rows + a 4 MB row: {:?}", start.elapsed());
    k.run(
        "1600 columns and a 2 MiB text + 2 MB bytea row replicate",
        || {
            let out = out.unwrap_or_else(|e| panic!("{:?}", e.as_db_error()));
            assert_eq!(out.len(), 3, "{out:?}");
        },
    );
    k.run("1600-column table arrives exactly", || {
        assert_eq!(
            sqld.query("SELECT count(*) FROM pragma_table_info('wide')"),
            vec![vec![json!(1600)]]
        );
        assert_eq!(
            sqld.query("SELECT count(*), sum(c2), sum(c1600) FROM wide"),
            vec![vec![
                json!(49),
                json!((1..=49).map(|g| g * 10000 + 2).sum::<i64>()),
                json!((1..=49)
                    .map(|g| if g == 7 { -1 } else { g * 10000 + 1600 })
                    .sum::<i64>())
            ]]
        );
        for g in [1i64, 20, 21, 40, 41, 49] {
            assert_eq!(
                sqld.query(&format!(
                    "SELECT c1, c2, c799, c1599 FROM wide WHERE c1 = {g}"
                )),
                vec![vec![
                    json!(g),
                    json!(g * 10000 + 2),
                    json!(g * 10000 + 799),
                    json!(g * 10000 + 1599)
                ]],
                "row {g}"
            );
        }
    });
    k.run("2 MiB text and 2 MB bytea arrive intact", || {
        let probes = |hex: &dyn Fn(&str) -> String| {
            format!(
                "SELECT length(t), substr(t, 1, 32), substr(t, 1048577, 32), substr(t, 2097121, 32), length(b), {}, {}, {} FROM huge",
                hex("substr(b, 1, 16)"), hex("substr(b, 1000001, 16)"), hex("substr(b, 1999985, 16)")
            )
        };
        let pg_side = pg_rows(&mut c, &probes(&|e| format!("upper(encode({e}, 'hex'))")));
        assert_eq!(pg_side[0][0].as_deref(), Some("2097152"));
        assert_eq!(pg_side[0][4].as_deref(), Some("2000000"));
        let turso = turso_text(&sqld, &probes(&|e| format!("hex({e})")));
        assert_eq!(turso, pg_side);
    });
    // About 30 MB in one value: beyond sqld's limit.
    exec(&mut c, "INSERT INTO huge SELECT 2, string_agg(md5(g::text), ''), NULL FROM generate_series(1, 983040) g");
    k.run("a 30 MB value fails cleanly and keeps the slot", || {
        let before = confirmed_lsn(&mut c, &slot);
        let start = Instant::now();
        let res = changes(&mut c, &slot, &[("url", &sqld.url())]);
        eprintln!("30 MB value: {:?}", start.elapsed());
        assert_fails(
            &mut c,
            &slot,
            &before,
            "30 MB value",
            res,
            "38000",
            &has(&[
                "could not replicate transaction ",
                "statement failed in Turso: ",
                "string or blob too big",
                "(statement: INSERT INTO \"huge\"",
            ]),
            &[],
            &[],
        );
        assert_eq!(
            sqld.query("SELECT count(*) FROM huge"),
            vec![vec![json!(1)]]
        );
    });
    skip_pending(&mut c, &slot);
    k.finish();
}
