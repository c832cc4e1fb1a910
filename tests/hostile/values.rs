//! Hostile-input tests, 7: values chosen to break encoding, which must arrive exactly.

use super::*;

#[test]
fn hostile_values_arrive_exactly() {
    let _g = group();
    let sqld = Sqld::start("h_values", false);
    let (mut c, slot) = setup("h_values");
    exec(
        &mut c,
        "CREATE TABLE hv(id int primary key, t text, b bytea);
         CREATE TABLE hk(k text primary key, v text);
         CREATE TABLE big(id int primary key, t text);
         CREATE TABLE ha(id int primary key, a text[], j jsonb);
         CREATE TABLE fk(k float8 primary key, v text);",
    );
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let blob_100k: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let texts: Vec<Option<String>> = vec![
        Some("'); DROP TABLE hv; --".into()),
        Some("\" OR \"1\"=\"1".into()),
        Some("Robert'); DROP TABLE Students;-- ".into()),
        Some("back\\slash \\\\ \\n \\x00 \\u0000 \\'".into()),
        Some("🦀 𝕏 𠜎 😀 4-byte".into()),
        Some("\u{FEFF}BOM \u{202E}RTL override\u{202C} \u{200B}zero width".into()),
        Some("\u{FFFF}\u{FFFE}\u{10FFFF} noncharacters".into()),
        Some("tab\there\r\nCRLF\nLF\rCR".into()),
        Some(String::new()),
        None,
        Some("null".into()),
        Some("{\"type\":\"null\"}".into()),
        Some("?1 ?2 :name $1 @p ?".into()),
        Some("\u{1}\u{1f}\u{7f} control characters".into()),
        Some("x".repeat(1_000_000)),
        Some("é".repeat(100_000)),
        Some("   leading and trailing blanks   ".into()),
    ];
    let blobs: Vec<Option<Vec<u8>>> = vec![
        Some(vec![0]),
        Some(all_bytes.clone()),
        Some(b"\\x00".to_vec()),
        Some(Vec::new()),
        None,
        Some(vec![0xff, 0xfe, 0x00, 0x80]),
        Some(blob_100k.clone()),
    ];
    let n = texts.len().max(blobs.len());
    let mut tx = c.transaction().unwrap();
    for i in 0..n {
        let t = texts.get(i).cloned().flatten();
        let b = blobs.get(i).cloned().flatten();
        tx.execute("INSERT INTO hv VALUES ($1, $2, $3)", &[&(i as i32), &t, &b])
            .unwrap();
    }
    tx.commit().unwrap();
    // Hostile strings as keys, updated, moved and deleted by key.
    let keys = [
        "'); DROP TABLE hk; --",
        "a\"b",
        "back\\slash",
        "🦀",
        "",
        " ",
        "NULL",
        "%_*",
    ];
    let mut tx = c.transaction().unwrap();
    for k in keys {
        tx.execute(
            "INSERT INTO hk VALUES ($1, $2)",
            &[&k, &format!("v of {k}")],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    c.execute(
        "UPDATE hk SET v = $2 WHERE k = $1",
        &[&keys[0], &"updated'; --"],
    )
    .unwrap();
    c.execute(
        "UPDATE hk SET k = $2 WHERE k = $1",
        &[&keys[1], &"moved \"key\""],
    )
    .unwrap();
    c.execute("DELETE FROM hk WHERE k = $1", &[&keys[2]])
        .unwrap();
    c.execute("DELETE FROM hk WHERE k = $1", &[&keys[4]])
        .unwrap();
    // Arrays and JSON holding hostile strings; float keys that JSON cannot carry as numbers.
    exec(
        &mut c,
        r#"INSERT INTO ha VALUES
            (1, ARRAY['a"b', E'c\\d', NULL, '''); DROP TABLE ha; --', '🦀', ''],
                '{"k": "''); DROP TABLE ha; --", "q\"": [null, "\\", 1e300]}'),
            (2, '{}', 'null'),
            (3, ARRAY[ARRAY['x', 'y'], ARRAY['{', '}']], '"just a string"');
        INSERT INTO fk VALUES ('NaN', 'nan'), ('Infinity', 'inf'), ('-Infinity', '-inf'),
            (1e308, 'big'), (5e-324, 'tiny'), (0, 'zero');
        DELETE FROM fk WHERE k = 'NaN';
        UPDATE fk SET v = 'inf2' WHERE k = 'Infinity';
        UPDATE fk SET k = 'NaN' WHERE k = 0;"#,
    );
    // A row larger than max_request_bytes, between small rows of the same transaction.
    exec(
        &mut c,
        "BEGIN; INSERT INTO big VALUES (1, 'a'), (2, 'b'), (3, 'c');
         INSERT INTO big VALUES (4, repeat('0123456789', 30000));
         INSERT INTO big VALUES (5, 'e'), (6, 'f'), (7, 'g'); COMMIT;",
    );
    let out = changes(
        &mut c,
        &slot,
        &[("url", &sqld.url()), ("max_request_bytes", "1024")],
    )
    .unwrap();
    assert_eq!(out.len(), 8, "{out:?}");

    // hv, value by value.
    let turso = sqld.query("SELECT id, t, typeof(t), b, typeof(b) FROM hv ORDER BY id");
    assert_eq!(turso.len(), n);
    for (i, row) in turso.iter().enumerate() {
        assert_eq!(row[0], json!(i as i64));
        let want_t = texts.get(i).cloned().flatten();
        match &want_t {
            None => assert_eq!(
                (&row[1], &row[2]),
                (&Json::Null, &json!("null")),
                "text {i}"
            ),
            Some(s) => {
                let got = row[1]
                    .as_str()
                    .unwrap_or_else(|| panic!("text {i}: {:?}", row[1]));
                assert!(
                    got == s,
                    "text {i} differs: {} chars vs {} chars, starting {:?} vs {:?}",
                    got.chars().count(),
                    s.chars().count(),
                    got.chars().take(40).collect::<String>(),
                    s.chars().take(40).collect::<String>()
                );
                assert_eq!(row[2], json!("text"), "text {i}");
            }
        }
        let want_b = blobs.get(i).cloned().flatten();
        match &want_b {
            None => assert_eq!(
                (&row[3], &row[4]),
                (&Json::Null, &json!("null")),
                "blob {i}"
            ),
            Some(b) => {
                assert_eq!(row[3], json!(format!("blob:{}", b64(b))), "blob {i}");
                assert_eq!(row[4], json!("blob"), "blob {i}");
            }
        }
    }
    // hk: same set of keys and values as PostgreSQL.
    let mut pg_side: Vec<(String, String)> = c
        .query("SELECT k, v FROM hk", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    pg_side.sort();
    let mut turso_side: Vec<(String, String)> = sqld
        .query("SELECT k, v FROM hk")
        .into_iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                r[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    turso_side.sort();
    assert_eq!(turso_side, pg_side, "hostile keys");
    assert_eq!(pg_side.len(), keys.len() - 2);
    // big: every row, the large one intact.
    assert_eq!(
        sqld.query(
            "SELECT id, length(t), substr(t, 1, 12), substr(t, 299991) FROM big ORDER BY id"
        ),
        vec![
            vec![json!(1), json!(1), json!("a"), json!("")],
            vec![json!(2), json!(1), json!("b"), json!("")],
            vec![json!(3), json!(1), json!("c"), json!("")],
            vec![
                json!(4),
                json!(300000),
                json!("012345678901"),
                json!("0123456789")
            ],
            vec![json!(5), json!(1), json!("e"), json!("")],
            vec![json!(6), json!(1), json!("f"), json!("")],
            vec![json!(7), json!(1), json!("g"), json!("")],
        ]
    );
    // Arrays travel as their JSON text, jsonb as its text output.
    assert_eq!(
        turso_text(&sqld, "SELECT id, a, j FROM ha ORDER BY id"),
        pg_rows(
            &mut c,
            "SELECT id, array_to_json(a)::text, j::text FROM ha ORDER BY id"
        ),
        "arrays and JSON"
    );
    // Float keys: NaN and the infinities travel as text and are found again by UPDATE and DELETE.
    let fk = sqld.query("SELECT k, typeof(k), v FROM fk ORDER BY v");
    assert_eq!(
        fk,
        vec![
            vec![json!("-Infinity"), json!("text"), json!("-inf")],
            vec![json!(1e308), json!("real"), json!("big")],
            vec![json!("Infinity"), json!("text"), json!("inf2")],
            vec![json!(5e-324), json!("real"), json!("tiny")],
            vec![json!("NaN"), json!("text"), json!("zero")],
        ],
        "float keys"
    );
    eprintln!(
        "values: {} texts, {} blobs, {} keys, 1 oversized row",
        texts.len(),
        blobs.len(),
        keys.len()
    );
}

/// Text that is not UTF-8 (possible in a SQL_ASCII database) cannot travel as Hrana text: a
/// clean data error naming the column, not a panic and not silently altered data.
#[test]
fn invalid_utf8_in_a_sql_ascii_database_fails_cleanly() {
    let _g = group();
    let sqld = Sqld::start("h_ascii", false);
    let mut admin = pg().connect("postgres");
    admin
        .batch_execute("DROP DATABASE IF EXISTS h_ascii WITH (FORCE)")
        .unwrap();
    admin
        .batch_execute("CREATE DATABASE h_ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
        .unwrap();
    let mut c = pg().connect("h_ascii");
    let slot = "slot_h_ascii";
    exec(&mut c, &format!(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}';
         SELECT pg_create_logical_replication_slot('{slot}', 'pgturso');
         CREATE TABLE t(id int primary key, v text);
         INSERT INTO t VALUES (1, 'plain ascii');"
    ));
    changes(&mut c, slot, &[("url", &sqld.url())]).unwrap();
    exec(&mut c, "INSERT INTO t VALUES (2, E'caf\\xe9 latin-1')");
    let before = confirmed_lsn(&mut c, slot);
    let res = changes(&mut c, slot, &[("url", &sqld.url())]);
    assert_fails(
        &mut c,
        slot,
        &before,
        "Latin-1 byte in a SQL_ASCII text column",
        res,
        "22000",
        &has(&[
            "could not decode a value of column \"v\" of table \"public.t\": ",
            "not valid UTF-8",
        ]),
        &[],
        &[],
    );
    assert_eq!(
        sqld.query("SELECT id, v FROM t"),
        vec![vec![json!(1), json!("plain ascii")]]
    );
}
