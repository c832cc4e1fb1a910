//! Hostile-input end-to-end tests: malformed options, servers that are not (quite) Turso, bad
//! tokens, Turso tables that do not match, and identifiers and values chosen to break quoting,
//! encoding or size limits.
//!
//! Every failing case asserts its SQLSTATE and message, that nothing secret is echoed, that the
//! slot did not advance, and that the backend survived (the same connection still answers). Every
//! case that must work asserts the exact data in Turso. `zz_server_log_is_clean` runs last and
//! checks the server log for crashes, panics and Turso tokens.

mod common;

use common::setup_slot as setup;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use common::proxy::{Action, Proxy};
use common::{confirmed_lsn, db_error, free_port, pg, pg_rows, Sqld};
use postgres::Client;
use serde_json::{json, Value as Json};

// ---------------------------------------------------------------------------------------------
// Suite bookkeeping: the final log check waits for the other groups and knows their tokens.

static STARTED: AtomicUsize = AtomicUsize::new(0);
static FINISHED: AtomicUsize = AtomicUsize::new(0);
static TOKENS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Group;

fn group() -> Group {
    STARTED.fetch_add(1, Ordering::SeqCst);
    Group
}

impl Drop for Group {
    fn drop(&mut self) {
        FINISHED.fetch_add(1, Ordering::SeqCst);
    }
}

fn remember_secret(s: &str) {
    TOKENS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(s.to_string());
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// `pg_logical_slot_get_changes` with the options as a bound parameter, so that tokens never
/// enter the statement text (PostgreSQL logs statement text with its own errors).
fn changes(
    c: &mut Client,
    slot: &str,
    opts: &[(&str, &str)],
) -> Result<Vec<String>, postgres::Error> {
    let arr: Vec<String> = opts
        .iter()
        .flat_map(|(k, v)| [k.to_string(), v.to_string()])
        .collect();
    c.query(
        "SELECT data FROM pg_logical_slot_get_changes($1, NULL, NULL, VARIADIC $2::text[])",
        &[&slot, &arr],
    )
    .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

fn exec(c: &mut Client, sql: &str) {
    c.batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e} {:?}", e.as_db_error()));
}

/// The backend is still there: no crash, no FATAL.
fn assert_alive(c: &mut Client, what: &str) {
    let rows = c
        .simple_query("SELECT 1")
        .unwrap_or_else(|e| panic!("{what}: the backend did not survive: {e}"));
    assert!(!rows.is_empty(), "{what}: SELECT 1 returned nothing");
}

/// A PostgreSQL identifier, quoted.
fn pq(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A SQLite identifier, quoted.
fn qi(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A SQL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

enum Msg {
    Is(String),
    Has(Vec<String>),
}

fn is(s: impl Into<String>) -> Msg {
    Msg::Is(s.into())
}

fn has(parts: &[&str]) -> Msg {
    Msg::Has(parts.iter().map(|s| s.to_string()).collect())
}

/// Asserts a clean failure: SQLSTATE, message, hint parts, no secret in any field, the backend
/// alive and the slot where it was. Returns (code, message, detail, hint).
#[allow(clippy::too_many_arguments)]
fn assert_fails(
    c: &mut Client,
    slot: &str,
    before: &str,
    what: &str,
    res: Result<Vec<String>, postgres::Error>,
    code: &str,
    msg: &Msg,
    hint: &[&str],
    secrets: &[&str],
) -> (String, String, String, String) {
    let err = match res {
        Ok(out) => panic!("{what}: expected an error, got {out:?}"),
        Err(e) => e,
    };
    assert!(
        err.as_db_error().is_some(),
        "{what}: not a database error (did the backend crash?): {err}"
    );
    let (got, m, d, h) = db_error(&err);
    assert_eq!(
        got, code,
        "{what}: SQLSTATE\n  message: {m}\n  detail: {d}\n  hint: {h}"
    );
    match msg {
        Msg::Is(s) => assert_eq!(&m, s, "{what}: message"),
        Msg::Has(parts) => {
            for p in parts {
                assert!(m.contains(p.as_str()), "{what}: message {m:?} lacks {p:?}");
            }
        }
    }
    for p in hint {
        assert!(h.contains(p), "{what}: hint {h:?} lacks {p:?}");
    }
    for s in secrets {
        for f in [&m, &d, &h] {
            assert!(!f.contains(s), "{what}: secret {s:?} echoed in {f:?}");
        }
    }
    assert_alive(c, what);
    assert_eq!(confirmed_lsn(c, slot), before, "{what}: the slot advanced");
    (got, m, d, h)
}

/// Runs the cases of a group to the end and reports every failing case at once.
struct Cases {
    group: &'static str,
    passed: Vec<String>,
    failed: Vec<String>,
}

impl Cases {
    fn new(group: &'static str) -> Cases {
        Cases {
            group,
            passed: Vec::new(),
            failed: Vec::new(),
        }
    }

    fn run(&mut self, what: &str, f: impl FnOnce()) {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(()) => self.passed.push(what.to_string()),
            Err(p) => {
                let text = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                self.failed.push(format!("[{what}] {text}"));
            }
        }
    }

    fn finish(self) {
        eprintln!(
            "{}: {} cases passed, {} failed: {:?}",
            self.group,
            self.passed.len(),
            self.failed.len(),
            self.passed
        );
        assert!(
            self.failed.is_empty(),
            "{}: {} of {} cases failed:\n{}",
            self.group,
            self.failed.len(),
            self.failed.len() + self.passed.len(),
            self.failed.join("\n\n")
        );
    }
}

/// sqld rows rendered as text like `pg_rows` does (blobs as `blob:<base64>`).
fn turso_text(sqld: &Sqld, sql: &str) -> Vec<Vec<Option<String>>> {
    sqld.query_text(sql)
}

fn turso_tables(sqld: &Sqld) -> Vec<String> {
    let mut names: Vec<String> = sqld
        .query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_pgturso\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE 'libsql\\_%' ESCAPE '\\'")
        .into_iter()
        .map(|r| r[0].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// Base64 as sqld's Hrana answers carry it (standard alphabet, no padding).
fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

/// A JWT with `claims`, signed with `sqld`'s key (as `common::make_auth` does).
fn sign_jwt(sqld: &Sqld, claims: &Json, tag: &str) -> String {
    let url_b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let input = format!(
        "{}.{}",
        url_b64(br#"{"alg":"EdDSA","typ":"JWT"}"#),
        url_b64(claims.to_string().as_bytes())
    );
    let file = sqld.dir.join(format!("jwt-input-{tag}"));
    std::fs::write(&file, &input).unwrap();
    let out = Command::new("openssl")
        .args(["pkeyutl", "-sign", "-inkey"])
        .arg(sqld.dir.join("jwt-private.pem"))
        .arg("-rawin")
        .arg("-in")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl sign failed");
    format!("{input}.{}", url_b64(&out.stdout))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Runs pg_recvlogical once (no reconnect loop) with `-o` options; returns (exit ok, stderr).
fn recvlogical(db: &str, slot: &str, opts: &[&str]) -> (bool, String) {
    let opts: Vec<String> = opts.iter().map(|o| o.to_string()).collect();
    let mut cmd = common::recvlogical_cmd(db, slot, &opts);
    cmd.args(["-f", "-"]);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return (
                status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "pg_recvlogical {opts:?} did not exit: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_slot_inactive(c: &mut Client, slot: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let active = pg_rows(
            c,
            &format!("SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'"),
        )[0][0]
            .clone();
        if active.as_deref() == Some("f") {
            return;
        }
        assert!(Instant::now() < deadline, "slot {slot} stays active");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Skips everything pending on the slot (what an operator does with a poisoned transaction).
fn skip_pending(c: &mut Client, slot: &str) {
    exec(
        c,
        &format!("SELECT pg_replication_slot_advance('{slot}', pg_current_wal_lsn())"),
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Options

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

// ---------------------------------------------------------------------------------------------
// 2. Network: unreachable servers and servers that do not speak Hrana

#[test]
fn network_and_non_turso_servers_fail_cleanly() {
    let _g = group();
    let sqld = Sqld::start("h_net", false);
    let (mut c, slot) = setup("h_net");
    exec(
        &mut c,
        "CREATE TABLE t(id int primary key, v text); INSERT INTO t VALUES (1, 'one')",
    );
    let before = confirmed_lsn(&mut c, &slot);
    let progress =
        format!("could not read the replication progress of slot \"{slot}\" from Turso: ");
    let reach = "Check that Turso is reachable";
    let not_turso = "Check that the \"url\" option points at a Turso (sqld) server.";
    let rerun = "Re-run the decoding call; nothing is lost.";
    let mut k = Cases::new("network");
    let dead = common::free_port();

    k.run("unreachable port", || {
        let start = Instant::now();
        let res = changes(
            &mut c,
            &slot,
            &[
                ("url", &format!("http://127.0.0.1:{dead}/")),
                ("retry_ms", "200"),
            ],
        );
        let target =
            format!("{progress}could not connect to \"http://127.0.0.1:{dead}/v2/pipeline\"");
        assert_fails(
            &mut c,
            &slot,
            &before,
            "unreachable port",
            res,
            "08006",
            &has(&[&target]),
            &[reach],
            &[],
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "retry_ms 200 took {:?}",
            start.elapsed()
        );
    });
    k.run("unresolvable host", || {
        let res = changes(
            &mut c,
            &slot,
            &[
                ("url", "http://pgturso-hostile.invalid/"),
                ("retry_ms", "0"),
            ],
        );
        assert_fails(
            &mut c,
            &slot,
            &before,
            "unresolvable host",
            res,
            "08006",
            &has(&[&format!(
                "{progress}could not connect to \"http://pgturso-hostile.invalid/v2/pipeline\""
            )]),
            &[reach],
            &[],
        );
    });
    k.run("credentials in the url are not printed", || {
        let res = changes(
            &mut c,
            &slot,
            &[
                ("url", &format!("http://alice:pa55w0rd@127.0.0.1:{dead}/")),
                ("retry_ms", "0"),
            ],
        );
        assert_fails(
            &mut c,
            &slot,
            &before,
            "credentials in the url",
            res,
            "08006",
            &has(&["could not connect to \"http://***@127.0.0.1:"]),
            &[reach],
            &["pa55w0rd", "alice"],
        );
    });
    k.run("https to a plain http port", || {
        let res = changes(
            &mut c,
            &slot,
            &[
                ("url", &format!("https://127.0.0.1:{}/", sqld.port)),
                ("retry_ms", "0"),
            ],
        );
        let (_, m, _, _) = assert_fails(
            &mut c,
            &slot,
            &before,
            "https to a plain http port",
            res,
            "08006",
            &has(&[
                &progress,
                &format!("\"https://127.0.0.1:{}/v2/pipeline\"", sqld.port),
            ]),
            &[reach],
            &[],
        );
        eprintln!("https to http: {m}");
    });
    k.run("wrong path on sqld", || {
        let res = changes(
            &mut c,
            &slot,
            &[
                ("url", &format!("http://127.0.0.1:{}/not/turso/", sqld.port)),
                ("retry_ms", "0"),
            ],
        );
        assert_fails(
            &mut c,
            &slot,
            &before,
            "wrong path on sqld",
            res,
            "08006",
            &has(&[&format!("{progress}Turso answered HTTP 404")]),
            &[],
            &[],
        );
    });

    // Servers that answer, but not with Hrana.
    let hrana_error = r#"{"baton":null,"base_url":null,"results":[{"type":"error","error":{"message":"boom: hostile server","code":"SQLITE_ERROR"}}]}"#;
    let bad_progress = r#"{"baton":null,"base_url":null,"results":[{"type":"ok","response":{"type":"execute","result":{"cols":[],"rows":[],"affected_row_count":0}}},{"type":"ok","response":{"type":"execute","result":{"cols":[{"name":"lsn"}],"rows":[[{"type":"text","value":"garbage"}]],"affected_row_count":0}}},{"type":"ok","response":{"type":"close"}}]}"#;
    let big_body = "E".repeat(1 << 20);
    type ProxyCase<'a> = (&'a str, u16, String, &'a str, Msg, &'a str);
    let proxy_cases: Vec<ProxyCase> = vec![
        (
            "200 with a body that is not JSON",
            200,
            "not json".into(),
            "08P01",
            has(&[
                &format!("{progress}invalid response from Turso: "),
                "in response body \"not json\"",
            ]),
            not_turso,
        ),
        (
            "200 with an HTML page",
            200,
            "<!doctype html><title>It works</title>".into(),
            "08P01",
            has(&[
                &progress,
                "in response body \"<!doctype html><title>It works</title>\"",
            ]),
            not_turso,
        ),
        (
            "200 with an empty JSON object",
            200,
            "{}".into(),
            "08P01",
            has(&[&format!(
                "{progress}invalid response from Turso: missing field `results`"
            )]),
            not_turso,
        ),
        (
            "200 with no results",
            200,
            r#"{"baton":null,"base_url":null,"results":[]}"#.into(),
            "08P01",
            is(format!(
                "{progress}invalid response from Turso: missing result for the progress query"
            )),
            not_turso,
        ),
        (
            "200 with an empty body",
            200,
            String::new(),
            "08P01",
            has(&[
                &format!("{progress}invalid response from Turso: "),
                "in response body \"\"",
            ]),
            not_turso,
        ),
        (
            "200 with a Hrana error result",
            200,
            hrana_error.into(),
            "08006",
            is(format!(
                "{progress}Turso stream error: boom: hostile server"
            )),
            rerun,
        ),
        (
            "200 with a text progress LSN",
            200,
            bad_progress.into(),
            "08P01",
            has(&[&format!(
                "{progress}invalid response from Turso: unexpected progress value"
            )]),
            not_turso,
        ),
        (
            "HTTP 404",
            404,
            "Not Found".into(),
            "08006",
            is(format!("{progress}Turso answered HTTP 404: Not Found")),
            rerun,
        ),
        (
            "HTTP 400",
            400,
            r#"{"error":"bad request"}"#.into(),
            "08006",
            is(format!(
                "{progress}Turso answered HTTP 400: {{\"error\":\"bad request\"}}"
            )),
            rerun,
        ),
        (
            "HTTP 500 with a 1 MB body",
            500,
            big_body,
            "08006",
            has(&[
                &format!("{progress}Turso answered HTTP 500: EEEE"),
                "EEE...",
            ]),
            rerun,
        ),
    ];
    for (what, status, body, code, msg, hint) in proxy_cases {
        k.run(what, || {
            let proxy = Proxy::start(sqld.port, move |_| Action::Respond(status, body.clone()));
            let res = changes(&mut c, &slot, &[("url", &proxy.url()), ("retry_ms", "0")]);
            let (_, m, _, _) =
                assert_fails(&mut c, &slot, &before, what, res, code, &msg, &[hint], &[]);
            assert!(m.len() < 1000, "{what}: message of {} bytes", m.len());
        });
    }

    k.run("request longer than timeout_ms", || {
        let proxy = Proxy::start(sqld.port, |_| Action::Delay(Duration::from_secs(3)));
        let start = Instant::now();
        let res = changes(
            &mut c,
            &slot,
            &[
                ("url", &proxy.url()),
                ("timeout_ms", "300"),
                ("retry_ms", "0"),
            ],
        );
        assert_fails(
            &mut c,
            &slot,
            &before,
            "timeout_ms exceeded",
            res,
            "08006",
            &is(format!(
                "{progress}request to \"{}v2/pipeline\" timed out after 300 ms",
                proxy.url()
            )),
            &[reach],
            &[],
        );
        assert!(
            start.elapsed() < Duration::from_millis(2500),
            "timeout took {:?}",
            start.elapsed()
        );
    });

    // The reads work, the transaction's answer is garbage or lies: the transaction fails, and
    // nothing reaches Turso through this proxy.
    let lying_batch = r#"{"baton":null,"base_url":null,"results":[{"type":"ok","response":{"type":"batch","result":{"step_results":[],"step_errors":[]}}},{"type":"ok","response":{"type":"close"}}]}"#;
    for (what, body, part) in [
        ("transaction answered with non-JSON", "not json at all", "invalid response from Turso: "),
        ("transaction answered with an empty batch result", lying_batch,
            "invalid response from Turso: Turso skipped a step of the transaction without reporting an error"),
    ] {
        k.run(what, || {
            let body = body.to_string();
            let proxy = Proxy::start(sqld.port, move |i| if i < 2 { Action::Forward } else { Action::Respond(200, body.clone()) });
            let res = changes(&mut c, &slot, &[("url", &proxy.url()), ("retry_ms", "0")]);
            let (_, _, detail, _) = assert_fails(&mut c, &slot, &before, what, res, "08P01",
                &has(&["could not replicate transaction ", "to Turso: ", part]), &[not_turso], &[]);
            assert!(detail.contains("the slot did not advance past it"), "{what}: {detail}");
            assert!(turso_tables(&sqld).is_empty(), "{what}: data reached Turso");
        });
    }

    // After all this, a plain call (URL with surrounding whitespace and no trailing slash) works
    // and the row arrives exactly once.
    k.run("recovery with a sloppy but valid url", || {
        let out = changes(
            &mut c,
            &slot,
            &[("url", &format!("  http://127.0.0.1:{}\n", sqld.port))],
        )
        .unwrap();
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(
            sqld.query("SELECT id, v FROM t"),
            vec![vec![json!(1), json!("one")]]
        );
        assert_ne!(confirmed_lsn(&mut c, &slot), before);
    });
    k.finish();
}

// ---------------------------------------------------------------------------------------------
// 3. Authentication

#[test]
fn bad_tokens_fail_cleanly_and_bearer_prefix_works() {
    let _g = group();
    let sqld = Sqld::start("h_auth", true);
    let token = sqld.token().to_string();
    remember_secret(&token);
    let (mut c, slot) = setup("h_auth");
    exec(
        &mut c,
        "CREATE TABLE t(id int primary key); INSERT INTO t VALUES (1)",
    );
    let before = confirmed_lsn(&mut c, &slot);
    let other_dir = sqld.dir.join("other-key");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other_key = common::make_auth(&other_dir).token;
    let expired = sign_jwt(
        &sqld,
        &json!({"a": "rw", "iat": now_secs() - 7200, "exp": now_secs() - 3600}),
        "expired",
    );
    let tampered = format!("{}x", &token[..token.len() - 1]);
    let auth_fail = has(&[&format!("could not read the replication progress of slot \"{slot}\" from Turso: authentication failed (HTTP 401)")]);
    let auth_hint = "Check the \"auth\" option: it must be a valid Turso token for this database.";
    let mut k = Cases::new("auth");
    let cases: Vec<(&str, String)> = vec![
        ("token signed with another key", other_key.clone()),
        ("expired token", expired.clone()),
        ("garbage token", "garbage-token-s3cr3t".into()),
        ("token with its last character changed", tampered.clone()),
        ("empty token against a server with auth", String::new()),
        ("blank token", "   ".into()),
        ("'Bearer ' and nothing else", "Bearer ".into()),
        ("non-ASCII token", "tökén-s3cr3t".into()),
    ];
    for (what, tok) in &cases {
        remember_secret(tok);
        k.run(what, || {
            let res = changes(&mut c, &slot, &[("url", &sqld.url()), ("auth", tok)]);
            let mut secrets = vec![token.as_str()];
            if tok.trim().len() > 8 {
                secrets.push(tok.as_str());
            }
            assert_fails(
                &mut c,
                &slot,
                &before,
                what,
                res,
                "28000",
                &auth_fail,
                &[auth_hint],
                &secrets,
            );
        });
    }
    // A token that cannot be an HTTP header value (a line break in the middle). Expected: an
    // error that points at the "auth" option (22023 or 28000), not a network error after retries.
    k.run("token with a line break", || {
        let broken = format!("{}\r\nX-Injected: 1", &token[..20]);
        let start = Instant::now();
        let res = changes(
            &mut c,
            &slot,
            &[("url", &sqld.url()), ("auth", &broken), ("retry_ms", "500")],
        );
        let err = res.as_ref().err().map(db_error);
        eprintln!(
            "token with a line break: {err:?} after {:?}",
            start.elapsed()
        );
        let code = err.as_ref().map_or("", |e| e.0.as_str()).to_string();
        assert!(
            code == "22023" || code == "28000",
            "want 22023 or 28000 naming the auth option, got {err:?}"
        );
        let (_, m, _, h) = assert_fails(
            &mut c,
            &slot,
            &before,
            "token with a line break",
            res,
            &code,
            &has(&[]),
            &[],
            &[&token[..20], "X-Injected"],
        );
        assert!(
            m.contains("\"auth\"") || h.contains("\"auth\""),
            "{m} / {h}"
        );
    });
    // A read-only token authenticates but cannot write: an authorization error.
    k.run("read-only token", || {
        let ro = sign_jwt(&sqld, &json!({"a": "ro", "iat": now_secs()}), "ro");
        remember_secret(&ro);
        let res = changes(&mut c, &slot, &[("url", &sqld.url()), ("auth", &ro)]);
        let err = res.as_ref().err().map(db_error);
        eprintln!("read-only token: {err:?}");
        let code = err.as_ref().map_or("", |e| e.0.as_str()).to_string();
        assert!(
            code == "28000" || code == "42501",
            "want an authorization error, got {err:?}"
        );
        assert_fails(
            &mut c,
            &slot,
            &before,
            "read-only token",
            res,
            &code,
            &has(&[]),
            &[],
            &[&ro, &token],
        );
    });
    // "Bearer " prefixes (any case, extra blanks) are accepted.
    k.run("token with a 'Bearer ' prefix", || {
        let out = changes(
            &mut c,
            &slot,
            &[("url", &sqld.url()), ("auth", &format!("Bearer {token}"))],
        )
        .unwrap();
        assert_eq!(out.len(), 1, "{out:?}");
    });
    k.run("token with a 'bearer' prefix and extra blanks", || {
        exec(&mut c, "INSERT INTO t VALUES (2)");
        let out = changes(
            &mut c,
            &slot,
            &[
                ("url", &sqld.url()),
                ("auth", &format!("  bearer   {token}  ")),
            ],
        )
        .unwrap();
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(
            sqld.query("SELECT id FROM t ORDER BY id"),
            vec![vec![json!(1)], vec![json!(2)]]
        );
    });
    k.finish();
}

// ---------------------------------------------------------------------------------------------
// 4. Turso tables that do not match, and damaged bookkeeping tables

#[test]
fn turso_side_conflicts_fail_cleanly_and_recover() {
    let _g = group();
    let sqld = Sqld::start("h_conf", false);
    let (mut c, slot) = setup("h_conf");
    let url = sqld.url();
    let stmt_hint = "Check that the Turso table matches the PostgreSQL table";
    let replicate = |c: &mut Client| changes(c, &slot, &[("url", &url), ("retry_ms", "0")]);
    let mut k = Cases::new("turso-side conflicts");

    // Conflicting Turso tables: (what, Turso DDL, PostgreSQL DDL + DML, message parts, fix in Turso).
    let conflicts: [(&str, &str, &str, &[&str], &str); 4] = [
        (
            "Turso table lacks a column",
            "CREATE TABLE mc (id INTEGER PRIMARY KEY)",
            "CREATE TABLE mc(id int primary key, v text); INSERT INTO mc VALUES (1, 'x')",
            &["has no column named v", "(statement: INSERT INTO \"mc\""],
            "DROP TABLE mc",
        ),
        (
            "Turso column is NOT NULL",
            "CREATE TABLE nn (id INTEGER PRIMARY KEY, v TEXT NOT NULL)",
            "CREATE TABLE nn(id int primary key, v text); INSERT INTO nn VALUES (1, NULL)",
            &[
                "NOT NULL constraint failed: nn.v",
                "(statement: INSERT INTO \"nn\"",
            ],
            "DROP TABLE nn",
        ),
        (
            "STRICT Turso table with another type",
            "CREATE TABLE st (id INTEGER PRIMARY KEY, n INTEGER) STRICT",
            "CREATE TABLE st(id int primary key, n text); INSERT INTO st VALUES (1, 'abc')",
            &[
                "cannot store TEXT value in INTEGER column st.n",
                "(statement: INSERT INTO \"st\"",
            ],
            "DROP TABLE st",
        ),
        (
            "a Turso view with the table's name",
            "CREATE VIEW vw AS SELECT 1 AS id, 'x' AS v",
            "CREATE TABLE vw(id int primary key, v text); INSERT INTO vw VALUES (1, 'y')",
            &["vw", "(statement: "],
            "DROP VIEW vw",
        ),
    ];
    for (what, turso_ddl, pg_sql, parts, fix) in conflicts {
        k.run(what, || {
            sqld.query(turso_ddl);
            exec(&mut c, pg_sql);
            let before = confirmed_lsn(&mut c, &slot);
            let res = replicate(&mut c);
            let mut all = vec![
                "could not replicate transaction ",
                "to Turso: statement failed in Turso: ",
            ];
            all.extend_from_slice(parts);
            let (_, m, detail, _) = assert_fails(
                &mut c,
                &slot,
                &before,
                what,
                res,
                "38000",
                &has(&all),
                &[stmt_hint],
                &[],
            );
            eprintln!("{what}: {m}");
            assert!(detail.contains("slot did not advance"), "{what}: {detail}");
            sqld.query(fix);
            let out = replicate(&mut c)
                .unwrap_or_else(|e| panic!("{what}: after the fix: {:?}", db_error(&e)));
            assert_eq!(out.len(), 1, "{what}: {out:?}");
        });
    }
    k.run("data after the fixes", || {
        assert_eq!(
            sqld.query("SELECT id, v FROM mc"),
            vec![vec![json!(1), json!("x")]]
        );
        assert_eq!(
            sqld.query("SELECT id, v FROM nn"),
            vec![vec![json!(1), Json::Null]]
        );
        assert_eq!(
            sqld.query("SELECT id, n FROM st"),
            vec![vec![json!(1), json!("abc")]]
        );
        assert_eq!(
            sqld.query("SELECT id, v FROM vw"),
            vec![vec![json!(1), json!("y")]]
        );
    });

    k.run("unreadable _pgturso_schema row", || {
        exec(&mut c, "INSERT INTO mc VALUES (2, 'y')");
        let saved =
            sqld.query("SELECT source, definition FROM _pgturso_schema WHERE turso_name = 'mc'");
        sqld.query("UPDATE _pgturso_schema SET definition = '{not json' WHERE turso_name = 'mc'");
        let before = confirmed_lsn(&mut c, &slot);
        let res = replicate(&mut c);
        let fixed = format!(
            "UPDATE _pgturso_schema SET definition = {} WHERE turso_name = 'mc'",
            lit(saved[0][1].as_str().unwrap())
        );
        let check = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_fails(
                &mut c,
                &slot,
                &before,
                "unreadable _pgturso_schema row",
                res,
                "08P01",
                &has(&[
                    "from Turso: invalid response from Turso: unreadable _pgturso_schema row for ",
                ]),
                &[],
                &[],
            );
        }));
        sqld.query(&fixed);
        replicate(&mut c).unwrap();
        if let Err(p) = check {
            std::panic::resume_unwind(p);
        }
    });

    k.run("text LSN in _pgturso_progress", || {
        exec(&mut c, "INSERT INTO mc VALUES (3, 'z')");
        let lsn = sqld.query(&format!(
            "SELECT lsn FROM _pgturso_progress WHERE slot = '{slot}'"
        ))[0][0]
            .as_i64()
            .unwrap();
        sqld.query("UPDATE _pgturso_progress SET lsn = 'garbage'");
        let before = confirmed_lsn(&mut c, &slot);
        let res = replicate(&mut c);
        let check = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_fails(
                &mut c,
                &slot,
                &before,
                "text LSN in _pgturso_progress",
                res,
                "08P01",
                &has(&[
                    "could not read the replication progress",
                    "unexpected progress value",
                ]),
                &[],
                &[],
            );
        }));
        sqld.query(&format!("UPDATE _pgturso_progress SET lsn = {lsn}"));
        replicate(&mut c).unwrap();
        if let Err(p) = check {
            std::panic::resume_unwind(p);
        }
    });

    k.run(
        "_pgturso_progress replaced by a table of another shape",
        || {
            exec(&mut c, "INSERT INTO mc VALUES (4, 'w')");
            sqld.query("ALTER TABLE _pgturso_progress RENAME TO saved_progress");
            sqld.query("CREATE TABLE _pgturso_progress (x)");
            let before = confirmed_lsn(&mut c, &slot);
            let res = replicate(&mut c);
            let check = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let err = res.as_ref().err().map(db_error);
                eprintln!("_pgturso_progress of another shape: {err:?}");
                let code = err.as_ref().map_or("", |e| e.0.as_str()).to_string();
                assert!(code == "08006" || code == "38000", "{err:?}");
                assert_fails(
                    &mut c,
                    &slot,
                    &before,
                    "_pgturso_progress of another shape",
                    res,
                    &code,
                    &has(&["could not read the replication progress", "lsn"]),
                    &[],
                    &[],
                );
            }));
            sqld.query("DROP TABLE _pgturso_progress");
            sqld.query("ALTER TABLE saved_progress RENAME TO _pgturso_progress");
            replicate(&mut c).unwrap();
            if let Err(p) = check {
                std::panic::resume_unwind(p);
            }
            assert_eq!(
                sqld.query("SELECT id, v FROM mc ORDER BY id"),
                vec![
                    vec![json!(1), json!("x")],
                    vec![json!(2), json!("y")],
                    vec![json!(3), json!("z")],
                    vec![json!(4), json!("w")]
                ]
            );
        },
    );

    // Cases the Turso side cannot represent: a clean statement error naming the table; the
    // operator then skips the transaction.
    let poisoned: [(&str, &str, &[&str]); 3] = [
        ("PostgreSQL columns that differ only in case (SQLite names are case-insensitive)",
            "CREATE TABLE dup(\"ID\" int primary key, id int); INSERT INTO dup VALUES (1, 2)",
            &["duplicate column name", "\"dup\""]),
        ("a PostgreSQL table named like pgturso's progress table",
            "CREATE TABLE _pgturso_progress(id int primary key); INSERT INTO _pgturso_progress VALUES (1)",
            &["statement failed in Turso: ", "_pgturso_progress"]),
        ("a PostgreSQL table without columns (SQLite tables need one)",
            "CREATE TABLE nocols(); INSERT INTO nocols DEFAULT VALUES",
            &["\"nocols\""]),
    ];
    for (what, pg_sql, parts) in poisoned {
        exec(&mut c, pg_sql);
        k.run(what, || {
            let before = confirmed_lsn(&mut c, &slot);
            let res = replicate(&mut c);
            let mut all = vec!["could not replicate transaction "];
            all.extend_from_slice(parts);
            let (_, m, _, _) = assert_fails(
                &mut c,
                &slot,
                &before,
                what,
                res,
                "38000",
                &has(&all),
                &[stmt_hint],
                &[],
            );
            eprintln!("{what}: {m}");
        });
        skip_pending(&mut c, &slot);
    }
    k.run(
        "the progress table survived a user table of the same name",
        || {
            assert_eq!(
                sqld.query(&format!(
                    "SELECT count(*) FROM _pgturso_progress WHERE slot = '{slot}'"
                )),
                vec![vec![json!(1)]]
            );
        },
    );
    k.finish();
}

// ---------------------------------------------------------------------------------------------
// 5. Tables without a key

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

// ---------------------------------------------------------------------------------------------
// 6. Hostile identifiers that must work

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

// ---------------------------------------------------------------------------------------------
// 7. Hostile values that must work

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

// ---------------------------------------------------------------------------------------------
// 8. Size: PostgreSQL's widest table and a 30 MB value

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

// ---------------------------------------------------------------------------------------------
// 9. The server log, once everything else has run

#[test]
fn zz_server_log_is_clean() {
    // Let the other groups start, then wait until every started group has finished.
    std::thread::sleep(Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(600);
    while FINISHED.load(Ordering::SeqCst) < STARTED.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the other groups did not finish");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    let log = pg().server_log();
    for bad in [
        "terminated by signal",
        "PANIC:",
        "panicked at",
        "TRAP:",
        "was terminated",
    ] {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(bad)).collect();
        assert!(lines.is_empty(), "server log has {bad:?}: {lines:#?}");
    }
    let secrets = TOKENS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for s in secrets.iter().filter(|s| s.trim().len() > 8) {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(s.as_str())).collect();
        assert!(
            lines.is_empty(),
            "a secret is in the server log: {lines:#?}"
        );
    }
    eprintln!(
        "server log: {} lines, {} secrets checked",
        log.lines().count(),
        secrets.len()
    );
}
