//! Hostile-input end-to-end tests: malformed options, servers that are not (quite) Turso, bad
//! tokens, Turso tables that do not match, and identifiers and values chosen to break quoting,
//! encoding or size limits.
//!
//! Every failing case asserts its SQLSTATE and message, that nothing secret is echoed, that the
//! slot did not advance, and that the backend survived (the same connection still answers). Every
//! case that must work asserts the exact data in Turso. `zz_server_log_is_clean` runs last and
//! checks the server log for crashes, panics and Turso tokens.

#[path = "../common/mod.rs"]
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
// The groups, one file each (1. options ... 8. size)

mod auth;
mod identifiers;
mod keyless;
mod network;
mod options;
mod size;
mod tables;
mod values;

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
