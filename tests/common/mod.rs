//! End-to-end harness: a real PostgreSQL cluster (started once per test binary, stopped by a
//! watchdog when the binary exits) and a real sqld per test, both on loopback, plus a tiny HTTP
//! client and a fault-injecting proxy for failures sqld cannot produce by itself.
#![allow(dead_code)]

pub mod proxy;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value as Json};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

fn pg_bin(name: &str) -> PathBuf {
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("pg_config on PATH");
    Path::new(String::from_utf8(out.stdout).unwrap().trim()).join(name)
}

/// Runs a command as the postgres user when we are root (initdb and pg_ctl refuse root).
fn as_pg_user(bin: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn work_dir() -> PathBuf {
    let base = std::env::var("PGTURSO_TEST_DIR").unwrap_or_else(|_| "/tmp".into());
    let dir = Path::new(&base).join(format!("pgturso-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The shared PostgreSQL cluster.
pub struct Pg {
    pub port: u16,
    pub data: PathBuf,
    pub log: PathBuf,
}

static PG: OnceLock<Pg> = OnceLock::new();

pub fn pg() -> &'static Pg {
    PG.get_or_init(start_pg)
}

fn start_pg() -> Pg {
    let dir = work_dir().join("pg");
    std::fs::create_dir_all(&dir).unwrap();
    if is_root() {
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir));
        run(Command::new("chmod")
            .args(["755"])
            .arg(dir.parent().unwrap()));
    }
    let data = dir.join("data");
    let log = dir.join("server.log");
    let port = free_port();
    run(as_pg_user(&pg_bin("initdb")).args(["-D"]).arg(&data).args([
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--locale=C",
    ]));
    let has_opl = Command::new(pg_bin("postgres"))
        .arg("--describe-config")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("output_plugin_libraries"))
        .unwrap_or(false);
    let libdir = String::from_utf8(
        Command::new("pg_config")
            .arg("--pkglibdir")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let has_cron = Path::new(libdir.trim()).join("pg_cron.so").exists();
    let mut conf = format!(
        "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
         wal_level = logical\nmax_replication_slots = 64\nmax_wal_senders = 32\n\
         max_connections = 100\nfsync = off\nlog_line_prefix = '%m [%p] '\n",
        dir.display()
    );
    if has_opl {
        conf.push_str("output_plugin_libraries = 'pgoutput, test_decoding, pgturso'\n");
    }
    if has_cron {
        conf.push_str(
            "shared_preload_libraries = 'pg_cron'\ncron.database_name = 'postgres'\ncron.use_background_workers = on\nmax_worker_processes = 32\n",
        );
    }
    let conf_path = data.join("postgresql.auto.conf");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&conf_path)
        .unwrap();
    f.write_all(conf.as_bytes()).unwrap();
    run(as_pg_user(&pg_bin("pg_ctl"))
        .args(["-D"])
        .arg(&data)
        .args(["-l"])
        .arg(&log)
        .args(["-w", "-t", "60", "start"])
        .env_remove("RUST_BACKTRACE"));
    watch(&data, Some(&work_dir()));
    Pg { port, data, log }
}

/// Stops the cluster of `data` when this test binary exits, however it exits, then removes
/// `remove`.
fn watch(data: &Path, remove: Option<&Path>) {
    let pg_ctl = pg_bin("pg_ctl");
    let stop = if is_root() {
        format!(
            "runuser -u postgres -- '{}' -D '{}' stop -m immediate",
            pg_ctl.display(),
            data.display()
        )
    } else {
        format!(
            "'{}' -D '{}' stop -m immediate",
            pg_ctl.display(),
            data.display()
        )
    };
    let remove = remove
        .map(|d| format!("; rm -rf '{}'", d.display()))
        .unwrap_or_default();
    let watchdog = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop}{remove}",
        pid = std::process::id(),
    );
    // The watchdog must outlive this process to stop the cluster after it, so it is never waited for.
    #[allow(clippy::zombie_processes)]
    Command::new("setsid")
        .args(["sh", "-c", &watchdog])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start watchdog");
}

impl Pg {
    /// A physical standby of this cluster (pg_basebackup through physical slot `slot`, which must
    /// exist), started on a port of its own with `conf` added to its configuration.
    pub fn standby(&self, name: &str, slot: &str, conf: &str) -> Pg {
        let dir = work_dir().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            run(Command::new("chown").args(["postgres:postgres"]).arg(&dir));
        }
        let data = dir.join("data");
        let log = dir.join("server.log");
        let port = free_port();
        run(as_pg_user(&pg_bin("pg_basebackup"))
            .arg("-D")
            .arg(&data)
            .args(["-X", "stream", "-R", "-S", slot, "-d"])
            .arg(format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres",
                self.port
            )));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.auto.conf"))
            .unwrap();
        writeln!(
            f,
            "port = {port}\nunix_socket_directories = '{}'\n{conf}",
            dir.display()
        )
        .unwrap();
        let standby = Pg { port, data, log };
        standby.start();
        watch(&standby.data, None);
        standby
    }

    pub fn connect(&self, db: &str) -> postgres::Client {
        postgres::Client::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname={db}",
                self.port
            ),
            postgres::NoTls,
        )
        .unwrap_or_else(|e| panic!("connect to {db}: {e}"))
    }

    /// A fresh database for one test.
    pub fn fresh_db(&self, name: &str) -> postgres::Client {
        let mut admin = self.connect("postgres");
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        self.connect(name)
    }

    /// Stops the cluster (fast shutdown: a clean checkpoint, like before a file-level backup).
    pub fn stop(&self) {
        run(as_pg_user(&pg_bin("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", "60", "-m", "fast", "stop"]));
    }

    /// Stops the cluster like a crash (`-m immediate`: no checkpoint; what was not flushed to
    /// disk, such as slots' positions since the last checkpoint, is lost).
    pub fn crash(&self) {
        run(as_pg_user(&pg_bin("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", "60", "-m", "immediate", "stop"]));
    }

    /// Starts the cluster stopped by [`Pg::stop`] again, on the same port.
    pub fn start(&self) {
        run(as_pg_user(&pg_bin("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "60", "start"])
            .env_remove("RUST_BACKTRACE"));
    }

    /// Promotes this standby to a primary and waits until it accepts writes.
    pub fn promote(&self) {
        run(as_pg_user(&pg_bin("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", "60", "promote"]));
    }

    /// Copies the (stopped) cluster's data directory to `to`, owner and modes kept.
    pub fn copy_data(&self, to: &Path) {
        run(Command::new("cp").arg("-a").arg(&self.data).arg(to));
    }

    /// Replaces the (stopped) cluster's data directory with the copy at `from`.
    pub fn restore_data(&self, from: &Path) {
        run(Command::new("rm").arg("-rf").arg(&self.data));
        run(Command::new("cp").arg("-a").arg(from).arg(&self.data));
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A key pair and a signed EdDSA JWT, made with openssl.
pub struct Auth {
    pub public_key: PathBuf,
    pub token: String,
}

pub fn make_auth(dir: &Path) -> Auth {
    let private = dir.join("jwt-private.pem");
    let public = dir.join("jwt-public.pem");
    run(Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&private));
    run(Command::new("openssl")
        .args(["pkey", "-in"])
        .arg(&private)
        .arg("-pubout")
        .arg("-out")
        .arg(&public));
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let signing_input = format!(
        "{}.{}",
        b64(br#"{"alg":"EdDSA","typ":"JWT"}"#),
        b64(json!({"a": "rw", "iat": now}).to_string().as_bytes())
    );
    let input = dir.join("jwt-input");
    std::fs::write(&input, &signing_input).unwrap();
    let sig = Command::new("openssl")
        .args(["pkeyutl", "-sign", "-inkey"])
        .arg(&private)
        .arg("-rawin")
        .arg("-in")
        .arg(&input)
        .output()
        .unwrap();
    assert!(sig.status.success(), "openssl sign failed");
    Auth {
        public_key: public,
        token: format!("{signing_input}.{}", b64(&sig.stdout)),
    }
}

pub fn sqld_bin() -> PathBuf {
    if let Ok(p) = std::env::var("PGTURSO_SQLD") {
        return p.into();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/sqld/sqld")
}

/// A real sqld on loopback, killed on drop.
pub struct Sqld {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    pub auth: Option<Auth>,
}

impl Sqld {
    pub fn start(name: &str, with_auth: bool) -> Sqld {
        let dir = work_dir().join(format!("sqld-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let auth = with_auth.then(|| make_auth(&dir));
        let mut s = Sqld {
            child: None,
            port: free_port(),
            dir,
            auth,
        };
        s.restart();
        s
    }

    /// Starts (again) on the same port and data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.start_on_port(0);
    }

    fn start_on_port(&mut self, attempts: u32) {
        let mut cmd = Command::new(sqld_bin());
        cmd.arg("--http-listen-addr")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--db-path")
            .arg(self.dir.join("data.sqld"))
            .arg("--no-welcome")
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("sqld.log")).unwrap());
        if let Some(a) = &self.auth {
            cmd.arg("--auth-jwt-key-file").arg(&a.public_key);
        }
        self.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("start sqld {:?}: {e}", sqld_bin())),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "sqld did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        // The port answering is not enough: another process may have taken it between
        // free_port() and sqld's bind, and then our sqld has exited. Try another port.
        std::thread::sleep(Duration::from_millis(150));
        let exited = self
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
        if exited {
            let log = std::fs::read_to_string(self.dir.join("sqld.log")).unwrap_or_default();
            assert!(attempts < 5, "sqld keeps exiting: {log}");
            self.child = None;
            self.port = free_port();
            self.start_on_port(attempts + 1);
        }
    }

    /// SIGKILL, like a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn token(&self) -> &str {
        self.auth.as_ref().map_or("", |a| a.token.as_str())
    }

    /// Runs one statement on sqld and returns its rows as JSON values (`null`, numbers, strings).
    pub fn query(&self, sql: &str) -> Vec<Vec<Json>> {
        let body = json!({"baton": null, "requests": [
            {"type": "execute", "stmt": {"sql": sql}}, {"type": "close"}]});
        let (status, resp) = http_post(
            self.port,
            "/v2/pipeline",
            self.auth.as_ref().map(|a| a.token.as_str()),
            &body.to_string(),
        );
        assert_eq!(status, 200, "sqld query failed: {resp}");
        let resp: Json = serde_json::from_str(&resp).unwrap();
        let result = &resp["results"][0];
        assert_eq!(result["type"], "ok", "sqld query {sql} failed: {result}");
        result["response"]["result"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| match v["type"].as_str().unwrap() {
                        "null" => Json::Null,
                        "integer" => json!(v["value"].as_str().unwrap().parse::<i64>().unwrap()),
                        "float" => v["value"].clone(),
                        "text" => v["value"].clone(),
                        "blob" => json!(format!("blob:{}", v["base64"].as_str().unwrap())),
                        other => panic!("unknown value type {other}"),
                    })
                    .collect()
            })
            .collect()
    }

    pub fn table_exists(&self, name: &str) -> bool {
        !self
            .query(&format!(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '{name}'"
            ))
            .is_empty()
    }
}

impl Drop for Sqld {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal HTTP/1.1 POST; returns (status, body).
pub fn http_post(port: u16, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let (status, _headers, body) = proxy::parse_response(&raw).expect("valid HTTP response");
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A fresh database with a pgturso slot named `slot_<name>`.
pub fn setup_slot(name: &str) -> (postgres::Client, String) {
    let mut c = pg().fresh_db(name);
    let slot = format!("slot_{name}");
    c.batch_execute(&format!(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}';
         SELECT pg_create_logical_replication_slot('{slot}', 'pgturso')"
    ))
    .unwrap();
    (c, slot)
}

impl Sqld {
    /// Rows of a query on sqld rendered as text like [`pg_rows`] does (NULL as None).
    pub fn query_text(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        self.query(sql)
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|v| match v {
                        Json::Null => None,
                        Json::String(s) => Some(s),
                        other => Some(other.to_string()),
                    })
                    .collect()
            })
            .collect()
    }
}

/// Every row of `table` in PostgreSQL and in Turso, as text, ordered by the first two columns.
pub fn assert_mirror(c: &mut postgres::Client, sqld: &Sqld, table: &str, cols: &str) {
    assert_mirror_as(c, sqld, table, cols, cols);
}

/// [`assert_mirror`] with the columns written for each side (`pg_cols`, `turso_cols`).
pub fn assert_mirror_as(
    c: &mut postgres::Client,
    sqld: &Sqld,
    table: &str,
    pg_cols: &str,
    turso_cols: &str,
) {
    let pg_side: Vec<String> = pg_rows(c, &format!("SELECT {pg_cols} FROM {table} ORDER BY 1, 2"))
        .into_iter()
        .map(|r| format!("{r:?}"))
        .collect();
    let turso: Vec<String> = sqld
        .query_text(&format!("SELECT {turso_cols} FROM {table} ORDER BY 1, 2"))
        .into_iter()
        .map(|r| format!("{r:?}"))
        .collect();
    assert_eq!(turso.len(), pg_side.len(), "row count of {table}");
    assert!(turso == pg_side, "{table} differs from PostgreSQL");
}

/// The Turso table has the PostgreSQL table's columns, in order, and the same rows, as text,
/// ordered by the first column.
pub fn assert_same_table(c: &mut postgres::Client, sqld: &Sqld, pg_table: &str, turso_table: &str) {
    let pg_cols: Vec<String> = pg_rows(
        c,
        &format!(
            "SELECT attname FROM pg_attribute WHERE attrelid = '{pg_table}'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        ),
    )
    .into_iter()
    .map(|r| r[0].clone().unwrap())
    .collect();
    let turso_cols: Vec<String> = sqld
        .query(&format!(
            "SELECT name FROM pragma_table_info('{turso_table}') ORDER BY cid"
        ))
        .into_iter()
        .map(|r| r[0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(turso_cols, pg_cols, "columns of {turso_table}");
    let list = pg_cols
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let pg_side = pg_rows(c, &format!("SELECT {list} FROM {pg_table} ORDER BY 1"));
    let turso = sqld.query_text(&format!("SELECT {list} FROM \"{turso_table}\" ORDER BY 1"));
    assert_eq!(turso, pg_side, "rows of {turso_table}");
}

/// Rows of a PostgreSQL query, each column rendered as text (NULL as None).
pub fn pg_rows(c: &mut postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    c.simple_query(sql)
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

/// `pg_logical_slot_get_changes` with the given options; returns the data column or the error.
pub fn get_changes(
    c: &mut postgres::Client,
    slot: &str,
    opts: &[(&str, &str)],
) -> Result<Vec<String>, postgres::Error> {
    let mut sql = format!("SELECT data FROM pg_logical_slot_get_changes('{slot}', NULL, NULL");
    for (k, v) in opts {
        sql.push_str(&format!(
            ", '{}', '{}'",
            k.replace('\'', "''"),
            v.replace('\'', "''")
        ));
    }
    sql.push(')');
    c.query(sql.as_str(), &[])
        .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

/// The message, detail and hint of a database error, for assertions.
pub fn db_error(e: &postgres::Error) -> (String, String, String, String) {
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("not a database error: {e}"));
    (
        db.code().code().to_string(),
        db.message().to_string(),
        db.detail().unwrap_or_default().to_string(),
        db.hint().unwrap_or_default().to_string(),
    )
}

/// The slot's confirmed_flush_lsn, as text.
pub fn confirmed_lsn(c: &mut postgres::Client, slot: &str) -> String {
    pg_rows(
        c,
        &format!("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{slot}'"),
    )[0][0]
        .clone()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// PRNG

/// SplitMix64: tiny, seedable, good enough for a workload.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 0..n
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// lo..=hi
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        lo.wrapping_add(self.below((hi - lo) as u64 + 1) as i64)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64) / ((1u64 << 53) as f64) < p
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }

    /// An index drawn with the given weights.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut x = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if x < u64::from(w) {
                return i;
            }
            x -= u64::from(w);
        }
        weights.len() - 1
    }
}

/// PostgreSQL's bin directory (pg_recvlogical, pg_ctl).
pub fn pg_bindir() -> PathBuf {
    let out = Command::new("pg_config").arg("--bindir").output().unwrap();
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// pg_recvlogical on `slot` of database `db`, once (no reconnect loop), with `-o` options and
/// status every second; the caller adds the output file and spawns it.
pub fn recvlogical_cmd(db: &str, slot: &str, opts: &[String]) -> Command {
    let mut cmd = Command::new(pg_bindir().join("pg_recvlogical"));
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &pg().port.to_string(),
        "-U",
        "postgres",
    ])
    .args([
        "-d", db, "--slot", slot, "--start", "-n", "-F", "1", "-s", "1",
    ]);
    for o in opts {
        cmd.args(["-o", o]);
    }
    cmd
}

/// Starts pg_recvlogical on `slot` with `-o` options, output discarded; the caller kills it.
pub fn spawn_recvlogical(db: &str, slot: &str, opts: &[String]) -> Child {
    recvlogical_cmd(db, slot, opts)
        .args(["-f", "/dev/null"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits (up to 60 s) until `table` exists on sqld and `sql` returns one row whose first value
/// is `want`.
pub fn wait_for_sqld(sqld: &Sqld, table: &str, sql: &str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = if sqld.table_exists(table) {
            sqld.query(sql)
        } else {
            Vec::new()
        };
        let got = rows.first().and_then(|r| r[0].as_i64());
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sql} on sqld: {got:?}, want {want}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The first column of the first row of `sql` as text (NULL and no row as None).
pub fn one(c: &mut postgres::Client, sql: &str) -> Option<String> {
    pg_rows(c, sql)
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten())
}

/// Waits (up to `timeout`, checking every 100 ms) until `ok` holds.
pub fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Adds pgturso to `shared_preload_libraries` (each library quoted on its own), effective at the
/// next restart: the launcher then starts the publication workers (tests of restarts and
/// switchovers).
pub fn preload_pgturso(admin: &mut postgres::Client) {
    let preload = one(admin, "SHOW shared_preload_libraries").unwrap_or_default();
    let list: Vec<String> = preload
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .chain(["pgturso"])
        .map(|l| format!("'{l}'"))
        .collect();
    admin
        .batch_execute(&format!(
            "ALTER SYSTEM SET shared_preload_libraries = {}",
            list.join(", ")
        ))
        .unwrap();
}

/// An application writing in a thread of its own: transaction `sql(i)` for i = 0, 1, … (each a
/// string of statements, run as one implicit transaction), one about every `pause`, until
/// stopped. Like an application it carries on through errors, and connects again after the server
/// went away; a transaction whose commit was cut off may or may not have happened, so tests
/// compare Turso with what PostgreSQL holds at the end.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<u64>>,
}

impl Load {
    pub fn start(db: &str, pause: Duration, sql: impl Fn(u64) -> String + Send + 'static) -> Load {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, conninfo) = (
            stop.clone(),
            format!(
                "host=127.0.0.1 port={} user=postgres dbname={db}",
                pg().port
            ),
        );
        let handle = std::thread::spawn(move || {
            let mut client: Option<postgres::Client> = None;
            let mut committed = 0;
            let mut i = 0;
            while !flag.load(Ordering::SeqCst) {
                match client.as_mut() {
                    None => client = postgres::Client::connect(&conninfo, postgres::NoTls).ok(),
                    Some(c) => {
                        if c.batch_execute(&sql(i)).is_ok() {
                            committed += 1;
                        } else if c.is_closed() {
                            client = None;
                        }
                        i += 1;
                    }
                }
                std::thread::sleep(if client.is_some() {
                    pause
                } else {
                    Duration::from_millis(100)
                });
            }
            committed
        });
        Load {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops writing; returns how many transactions reported success.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.handle.take().map_or(0, |h| h.join().unwrap())
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
