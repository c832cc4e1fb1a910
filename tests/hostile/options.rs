//! Hostile-input tests, 1: options that are malformed, unknown, redundant or out of range, and a URL
//! whose query string carries a token.

use super::*;

#[test]
fn options_are_rejected_cleanly() {
    let _g = group();
    let (mut c, slot) = setup("h_opts");
    exec(
        &mut c,
        "CREATE TABLE t(id int primary key); INSERT INTO t VALUES (1)",
    );
    let before = confirmed_lsn(&mut c, &slot);
    let u = "http://127.0.0.1:1/";
    let url_hint =
        "The url must look like http://host:port/, https://host/ or libsql://host (meaning https); the only query parameter accepted is authToken.";
    let table_hint = "schema-qualified";
    // Newer builds list more options (ca_file): check the stable parts.
    let valid = "Valid options are: url, auth, auth_file, table_name, ";
    let parse = |v: &str, p: &str| {
        is(format!(
            "could not parse value \"{v}\" for parameter \"{p}\""
        ))
    };
    let long_value = "v".repeat(100_000);
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, &'a str)>,
        &'a str,
        Msg,
        Vec<&'a str>,
        Vec<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "unknown option name (case matters)",
            vec![("URL", u)],
            "22023",
            is(format!("option \"URL\" = \"{u}\" is unknown")),
            vec![valid],
            vec![],
        ),
        (
            "empty option name",
            vec![("url", u), ("", "x")],
            "22023",
            is("option \"\" = \"x\" is unknown"),
            vec![valid],
            vec![],
        ),
        (
            "unknown option with a 100 kB value",
            vec![("url", u), ("colour", long_value.as_str())],
            "22023",
            has(&["option \"colour\" = \"vvvv", "\" is unknown"]),
            vec![valid],
            vec![],
        ),
        (
            "repeated auth",
            vec![
                ("url", u),
                ("auth", "first-s3cr3t"),
                ("auth", "second-s3cr3t"),
            ],
            "42601",
            is("conflicting or redundant options"),
            vec![],
            vec!["first-s3cr3t", "second-s3cr3t"],
        ),
        (
            "repeated timeout_ms",
            vec![("url", u), ("timeout_ms", "5"), ("timeout_ms", "5")],
            "42601",
            is("conflicting or redundant options"),
            vec![],
            vec![],
        ),
        (
            "url missing",
            vec![("auth", "missing-url-s3cr3t"), ("timeout_ms", "100")],
            "22023",
            is("option \"url\" is required"),
            vec!["pg_logical_slot_get_changes"],
            vec!["missing-url-s3cr3t"],
        ),
        (
            "no options at all",
            vec![],
            "22023",
            is("option \"url\" is required"),
            vec!["'url', 'http://127.0.0.1:8080/'"],
            vec![],
        ),
        (
            "ftp url with credentials",
            vec![("url", "ftp://alice:pa55word@example.com/")],
            "22023",
            has(&[
                "could not parse value \"ftp://",
                "example.com/\" for parameter \"url\"",
            ]),
            vec![url_hint],
            vec!["pa55word"],
        ),
        (
            "unparsable url",
            vec![("url", "http//127.0.0.1:8080")],
            "22023",
            parse("http//127.0.0.1:8080", "url"),
            vec![url_hint],
            vec![],
        ),
        (
            "url without host",
            vec![("url", "http://")],
            "22023",
            parse("http://", "url"),
            vec![url_hint],
            vec![],
        ),
        (
            "url that is only a path",
            vec![("url", "/v2/pipeline")],
            "22023",
            parse("/v2/pipeline", "url"),
            vec![url_hint],
            vec![],
        ),
        (
            "empty url",
            vec![("url", "")],
            "22023",
            parse("", "url"),
            vec![url_hint],
            vec![],
        ),
        (
            "blank url",
            vec![("url", "   ")],
            "22023",
            parse("   ", "url"),
            vec![url_hint],
            vec![],
        ),
        (
            "libsql url without host",
            vec![("url", "libsql://")],
            "22023",
            parse("libsql://", "url"),
            vec![url_hint],
            vec![],
        ),
        (
            "port out of range",
            vec![("url", "http://127.0.0.1:99999/")],
            "22023",
            parse("http://127.0.0.1:99999/", "url"),
            vec![url_hint],
            vec![],
        ),
        (
            "broken IPv6 literal",
            vec![("url", "http://[::1/")],
            "22023",
            parse("http://[::1/", "url"),
            vec![url_hint],
            vec![],
        ),
        (
            "url with a query string",
            vec![("url", "http://127.0.0.1:8080/?x=1")],
            "22023",
            parse("http://127.0.0.1:8080/?***", "url"),
            vec![url_hint],
            vec![],
        ),
        (
            "javascript: url",
            vec![("url", "javascript:alert(1)")],
            "22023",
            parse("javascript:alert(1)", "url"),
            vec![url_hint],
            vec![],
        ),
        (
            "file url",
            vec![("url", "file:///etc/passwd")],
            "22023",
            parse("file:///etc/passwd", "url"),
            vec![url_hint],
            vec![],
        ),
        (
            "timeout_ms 0",
            vec![("url", u), ("timeout_ms", "0")],
            "22023",
            parse("0", "timeout_ms"),
            vec!["timeout_ms takes milliseconds from 1 to 3600000."],
            vec![],
        ),
        (
            "timeout_ms negative",
            vec![("url", u), ("timeout_ms", "-5")],
            "22023",
            parse("-5", "timeout_ms"),
            vec!["timeout_ms takes milliseconds from 1 to 3600000."],
            vec![],
        ),
        (
            "timeout_ms in float notation",
            vec![("url", u), ("timeout_ms", "1e3")],
            "22023",
            parse("1e3", "timeout_ms"),
            vec!["from 1 to 3600000"],
            vec![],
        ),
        (
            "timeout_ms one too large",
            vec![("url", u), ("timeout_ms", "3600001")],
            "22023",
            parse("3600001", "timeout_ms"),
            vec!["from 1 to 3600000"],
            vec![],
        ),
        (
            "timeout_ms beyond 64 bits",
            vec![("url", u), ("timeout_ms", "99999999999999999999999")],
            "22023",
            parse("99999999999999999999999", "timeout_ms"),
            vec!["from 1 to 3600000"],
            vec![],
        ),
        (
            "timeout_ms empty",
            vec![("url", u), ("timeout_ms", "")],
            "22023",
            parse("", "timeout_ms"),
            vec!["from 1 to 3600000"],
            vec![],
        ),
        (
            "retry_ms negative",
            vec![("url", u), ("retry_ms", "-1")],
            "22023",
            parse("-1", "retry_ms"),
            vec!["retry_ms takes milliseconds from 0 to 3600000."],
            vec![],
        ),
        (
            "max_request_records 0",
            vec![("url", u), ("max_request_records", "0")],
            "22023",
            parse("0", "max_request_records"),
            vec!["max_request_records takes records from 1 to 1000000."],
            vec![],
        ),
        (
            "max_request_records too large",
            vec![("url", u), ("max_request_records", "1000001")],
            "22023",
            parse("1000001", "max_request_records"),
            vec!["from 1 to 1000000"],
            vec![],
        ),
        (
            "max_request_records beyond 64 bits",
            vec![("url", u), ("max_request_records", "18446744073709551616")],
            "22023",
            parse("18446744073709551616", "max_request_records"),
            vec!["from 1 to 1000000"],
            vec![],
        ),
        (
            "max_request_bytes too small",
            vec![("url", u), ("max_request_bytes", "1023")],
            "22023",
            parse("1023", "max_request_bytes"),
            vec!["max_request_bytes takes bytes from 1024 to 1073741824."],
            vec![],
        ),
        (
            "max_request_bytes in hex",
            vec![("url", u), ("max_request_bytes", "0x1000")],
            "22023",
            parse("0x1000", "max_request_bytes"),
            vec!["from 1024 to 1073741824"],
            vec![],
        ),
        (
            "table_name with three quoted parts",
            vec![("url", u), ("table_name", "\"x\".\"y\".\"z\"")],
            "22023",
            parse("\"x\".\"y\".\"z\"", "table_name"),
            vec![table_hint],
            vec![],
        ),
        (
            "table_name with an unbalanced quote",
            vec![("url", u), ("table_name", "\"open.t")],
            "22023",
            parse("\"open.t", "table_name"),
            vec![table_hint],
            vec![],
        ),
        (
            "empty table_name",
            vec![("url", u), ("table_name", "")],
            "22023",
            parse("", "table_name"),
            vec![table_hint],
            vec![],
        ),
        (
            "table_name that is a dot",
            vec![("url", u), ("table_name", ".")],
            "22023",
            parse(".", "table_name"),
            vec![table_hint],
            vec![],
        ),
        (
            "table_name with a trailing dot",
            vec![("url", u), ("table_name", "a.")],
            "22023",
            parse("a.", "table_name"),
            vec![table_hint],
            vec![],
        ),
        (
            "table_name with text after a quote",
            vec![("url", u), ("table_name", "\"a\"b")],
            "22023",
            parse("\"a\"b", "table_name"),
            vec![table_hint],
            vec![],
        ),
        (
            "table_name that is an empty quoted identifier",
            vec![("url", u), ("table_name", "\"\"")],
            "22023",
            parse("\"\"", "table_name"),
            vec![table_hint],
            vec![],
        ),
        (
            "secret-looking unknown option 'token'",
            vec![("url", u), ("token", "sup3r-s3cr3t-value")],
            "22023",
            is("option \"token\" = \"***\" is unknown"),
            vec![valid],
            vec!["sup3r-s3cr3t-value"],
        ),
        (
            "secret-looking unknown option 'api_key'",
            vec![("url", u), ("api_key", "k3y-s3cr3t-value")],
            "22023",
            is("option \"api_key\" = \"***\" is unknown"),
            vec![valid],
            vec!["k3y-s3cr3t-value"],
        ),
        (
            "secret-looking unknown option 'Password'",
            vec![("url", u), ("Password", "hunter2-s3cr3t")],
            "22023",
            is("option \"Password\" = \"***\" is unknown"),
            vec![valid],
            vec!["hunter2-s3cr3t"],
        ),
        (
            "secret-looking unknown option 'authorization'",
            vec![("url", u), ("authorization", "Bearer xyz-s3cr3t")],
            "22023",
            is("option \"authorization\" = \"***\" is unknown"),
            vec![valid],
            vec!["xyz-s3cr3t"],
        ),
        (
            "empty ca_file",
            vec![("url", u), ("ca_file", "")],
            "22023",
            parse("", "ca_file"),
            vec!["ca_file takes the path of a PEM file"],
            vec![],
        ),
    ];
    let mut cases_run = Cases::new("options");
    for (what, opts, code, msg, hint, secrets) in cases {
        cases_run.run(what, || {
            let res = changes(&mut c, &slot, &opts);
            let (_, _, detail, _) = assert_fails(
                &mut c, &slot, &before, what, res, code, &msg, &hint, &secrets,
            );
            if code == "42601" {
                let name = opts.last().unwrap().0;
                assert_eq!(
                    detail,
                    format!("Option \"{name}\" is given more than once."),
                    "{what}"
                );
            }
        });
    }
    // ca_file problems surface with the first request (the HTTP client is built then). A file
    // without any certificate must be refused like an unreadable one (the plugin has an error
    // for it), not silently ignored until TLS verification fails for an unrelated-looking reason.
    let dead = format!("https://127.0.0.1:{}/", common::free_port());
    let tls = "could not set up TLS: ";
    let not_pem = std::env::temp_dir().join(format!(
        "pgturso-hostile-not-a-cert-{}.txt",
        std::process::id()
    ));
    std::fs::write(&not_pem, "this is not a PEM file\n").unwrap();
    let not_pem = not_pem.to_str().unwrap().to_string();
    let not_pem_msg = format!("CA file \"{not_pem}\"");
    let ca_cases: [(&str, &str, &[&str]); 3] = [
        (
            "ca_file that does not exist",
            "/nonexistent/pgturso-ca.pem",
            &[
                tls,
                "could not read CA file \"/nonexistent/pgturso-ca.pem\"",
            ],
        ),
        (
            "ca_file that is a directory",
            "/",
            &[tls, "could not read CA file \"/\""],
        ),
        (
            "ca_file that holds no certificate",
            &not_pem,
            &[tls, &not_pem_msg],
        ),
    ];
    for (what, file, parts) in ca_cases {
        cases_run.run(what, || {
            let res = changes(
                &mut c,
                &slot,
                &[("url", &dead), ("ca_file", file), ("retry_ms", "0")],
            );
            assert_fails(
                &mut c,
                &slot,
                &before,
                what,
                res,
                "22023",
                &has(parts),
                &["\"ca_file\""],
                &[],
            );
        });
    }
    let _ = std::fs::remove_file(&not_pem);
    // NULL values and an odd number of option strings, typed into SQL: PostgreSQL refuses them
    // before the plugin is called; the call must fail cleanly all the same.
    let sql_cases = [
        (
            "option value NULL",
            "'url', NULL",
            "0A000",
            "array must not contain nulls",
        ),
        (
            "option name NULL",
            "NULL, 'http://127.0.0.1:1/'",
            "0A000",
            "array must not contain nulls",
        ),
        (
            "option without a value",
            "'url'",
            "0A000",
            "array must have even number of elements",
        ),
    ];
    for (what, args, code, msg) in sql_cases {
        cases_run.run(what, || {
            let res = c
                .query(
                    format!("SELECT data FROM pg_logical_slot_get_changes('{slot}', NULL, NULL, {args})").as_str(),
                    &[],
                )
                .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect());
            assert_fails(&mut c, &slot, &before, what, res, code, &is(msg), &[], &[]);
        });
    }
    // The replication protocol can pass an option without a value (a NULL DefElem argument):
    // pg_recvlogical -o name. The walsender must report a clean ERROR, not crash.
    exec(
        &mut c,
        "SELECT pg_create_logical_replication_slot('slot_h_opts_walsender', 'pgturso')",
    );
    exec(&mut c, "INSERT INTO t VALUES (2)");
    let ws_before = confirmed_lsn(&mut c, "slot_h_opts_walsender");
    let walsender_cases: [(&str, &[&str], &str); 3] = [
        (
            "walsender: url without a value",
            &["url"],
            "could not parse value \"\" for parameter \"url\"",
        ),
        (
            "walsender: timeout_ms without a value",
            &["url=http://127.0.0.1:1/", "timeout_ms"],
            "could not parse value \"\" for parameter \"timeout_ms\"",
        ),
        (
            "walsender: secret-looking unknown option without a value",
            &["url=http://127.0.0.1:1/", "secret"],
            "option \"secret\" = \"(null)\" is unknown",
        ),
    ];
    for (what, opts, msg) in walsender_cases {
        cases_run.run(what, || {
            let (ok, stderr) = recvlogical("h_opts", "slot_h_opts_walsender", opts);
            assert!(!ok, "{what}: pg_recvlogical succeeded: {stderr}");
            assert!(stderr.contains(msg), "{what}: {stderr}");
            assert!(
                !stderr.contains("server closed the connection unexpectedly"),
                "{what}: {stderr}"
            );
            wait_slot_inactive(&mut c, "slot_h_opts_walsender");
            assert_eq!(
                confirmed_lsn(&mut c, "slot_h_opts_walsender"),
                ws_before,
                "{what}: slot advanced"
            );
            assert_alive(&mut c, what);
        });
    }
    exec(
        &mut c,
        "SELECT pg_drop_replication_slot('slot_h_opts_walsender')",
    );
    cases_run.finish();
}

/// libsql URLs are commonly written with the token in the query string
/// (`libsql://db-org.turso.io?authToken=...`). pgturso rejects such a URL; its error must not
/// print the token into the client's error and the server log.
#[test]
fn url_with_a_token_in_its_query_string_is_not_echoed() {
    let _g = group();
    let (mut c, slot) = setup("h_urlsecret");
    exec(
        &mut c,
        "CREATE TABLE t(id int primary key); INSERT INTO t VALUES (1)",
    );
    let before = confirmed_lsn(&mut c, &slot);
    let secret = "eyJhbGciOiJFZERTQSJ9.URLQUERYS3CR3T.c2lnbmF0dXJl";
    let mut k = Cases::new("token in the url");
    // Turso's `?authToken=` form is accepted as the token: a failure to connect never echoes it.
    let dead = free_port();
    for url in [
        format!("libsql://db-org.turso.invalid?authToken={secret}"),
        format!("http://127.0.0.1:{dead}/?authToken={secret}"),
    ] {
        let what = url.replace(secret, "<token>");
        k.run(&format!("error for {what}"), || {
            let res = changes(&mut c, &slot, &[("url", &url), ("retry_ms", "0")]);
            assert_fails(
                &mut c,
                &slot,
                &before,
                &what,
                res,
                "08006",
                &has(&["could not connect to \""]),
                &["Check that Turso is reachable"],
                &[secret, "URLQUERYS3CR3T"],
            );
        });
    }
    // Any other query is refused, and shown without its value.
    let other = format!("http://127.0.0.1:8080/?token={secret}&x=1");
    k.run("other query parameters", || {
        let res = changes(&mut c, &slot, &[("url", &other)]);
        assert_fails(
            &mut c,
            &slot,
            &before,
            "other query parameters",
            res,
            "22023",
            &is("could not parse value \"http://127.0.0.1:8080/?***\" for parameter \"url\""),
            &["The url must look like"],
            &[secret, "URLQUERYS3CR3T"],
        );
    });
    // And it works against a real sqld with auth.
    let sqld = Sqld::start("h_urltoken", true);
    let with_token = format!("{}?authToken={}", sqld.url(), sqld.token());
    k.run("authToken in the url works", || {
        let out = changes(&mut c, &slot, &[("url", &with_token)]).expect("replicated");
        assert_eq!(out.len(), 1);
        assert_eq!(sqld.query("SELECT id FROM t"), vec![vec![json!(1)]]);
    });
    k.run("server log", || {
        std::thread::sleep(Duration::from_millis(300));
        let log = pg().server_log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("URLQUERYS3CR3T"))
            .collect();
        assert!(
            lines.is_empty(),
            "the token is in the server log: {lines:#?}"
        );
    });
    k.finish();
}
