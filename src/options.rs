//! Plugin options (`url`, `auth`, `table_name`, `ca_file`, `timeout_ms`, `retry_ms`,
//! `keepalive_ms`, `max_request_records`, `max_request_bytes`, `streaming`,
//! `decoding_work_mem`) -> a validated [`Options`].
//!
//! `plugin.rs` walks the DefElem list into `(name, value)` pairs; everything here is plain Rust.

use std::time::Duration;

use crate::error::PgTursoError;

/// Default per-request timeout.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;

/// The `logical_decoding_work_mem` pgturso decodes with when streaming and `decoding_work_mem` is
/// not given (unless the server's setting is lower): transactions larger than this are sent to
/// Turso while PostgreSQL decodes them, and PostgreSQL's memory for decoding stays near it.
pub const DEFAULT_DECODING_WORK_MEM_KB: u32 = 4096;

/// A `table_name` filter: schema (default `public`) and table, as PostgreSQL resolves them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFilter {
    pub schema: String,
    pub name: String,
}

impl TableFilter {
    pub fn matches(&self, schema: &str, name: &str) -> bool {
        self.schema == schema && self.name == name
    }
}

/// The snapshot an initial copy was read with: transactions it sees are already in Turso.
/// Text form `xmin:xmax:xip,xip,...` (32-bit transaction ids, as the copy reports them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipSnapshot {
    pub xmin: u32,
    pub xmax: u32,
    pub xip: Vec<u32>,
}

/// `a` comes before `b` in transaction-id order (modulo 2^32, as PostgreSQL compares them).
fn xid_precedes(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

impl SkipSnapshot {
    pub fn parse(v: &str) -> Option<SkipSnapshot> {
        let mut parts = v.trim().splitn(3, ':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let xip = match parts.next() {
            None | Some("") => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|x| x.parse().ok())
                .collect::<Option<_>>()?,
        };
        Some(SkipSnapshot { xmin, xmax, xip })
    }

    /// Whether the committed top-level transaction `xid` is visible in this snapshot.
    pub fn sees(&self, xid: u32) -> bool {
        if xid_precedes(xid, self.xmin) {
            return true;
        }
        xid_precedes(xid, self.xmax) && !self.xip.contains(&xid)
    }
}

/// How long a group of transactions stays open by default (`group_max_ms`).
pub const DEFAULT_GROUP_MAX: Duration = Duration::from_millis(200);

/// Validated plugin options.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Server base URL, `http://` or `https://` (a `libsql://` URL is turned into `https://`).
    pub base_url: String,
    /// The token without any `Bearer ` prefix.
    pub token: Option<String>,
    pub table: Option<TableFilter>,
    /// `table_oid`: only the tables with these OIDs (one, or several separated by commas) and
    /// their partitions, whatever their names when each change was made; what the SQL API passes
    /// (the tables it replicates into one Turso database), so that a rename between a change and
    /// its decoding loses nothing.
    pub table_oid: Option<Vec<u32>>,
    /// `publication_names`: only tables of these publications, and only the kinds of change they
    /// publish (as pgoutput does).
    pub publications: Option<Vec<String>>,
    /// PEM file of extra CA certificates trusted for `https://` (a self-hosted sqld behind TLS).
    pub ca_file: Option<String>,
    /// Skip transactions an initial copy already contains (set by the SQL API).
    pub skip_snapshot: Option<SkipSnapshot>,
    /// Per relation (by OID): skip its changes in transactions its initial copy already contains
    /// (set by `turso_start`, whose tables are copied one after another).
    pub skip_snapshots: std::collections::HashMap<u32, SkipSnapshot>,
    pub timeout: Duration,
    /// Request size limits; larger transactions span several requests of one Turso transaction.
    pub limits: Limits,
    /// Take large transactions from PostgreSQL while they are decoded (streaming of in-progress
    /// transactions) instead of after PostgreSQL has spilled them to disk.
    pub streaming: bool,
    /// Group commit (`group_commit`): decoded transactions go to Turso together at the end of
    /// the decoding call (or earlier, see `group_max`). Only for pgturso's publication worker
    /// and SQL API, which decode with `pg_logical_slot_peek_changes` and advance the slot once
    /// Turso has committed.
    pub group_commit: bool,
    /// `group_max_ms`: with group commit, a group open this long is committed at the next
    /// source commit (the next one starts another).
    pub group_max: Duration,
    /// `drop_tables`: a replicated table dropped in PostgreSQL is dropped in Turso too (needs
    /// the extension in the database, whose event trigger announces drops in the WAL).
    pub drop_tables: bool,
    /// `logical_decoding_work_mem` (kB) for this decoding session, when given.
    pub decoding_work_mem_kb: Option<u32>,
}

impl Options {
    /// Strings that must never appear in any message.
    pub fn secrets(&self) -> Vec<&str> {
        self.token.as_deref().into_iter().collect()
    }
}

fn invalid(name: &str, value: &str, hint: &str) -> PgTursoError {
    PgTursoError::InvalidOption {
        name: name.to_string(),
        value: value.to_string(),
        hint: hint.to_string(),
    }
}

/// Option names whose values might be credentials: never echoed in errors.
fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "auth", "token", "secret", "password", "key", "bearer", "jwt",
    ]
    .iter()
    .any(|s| n.contains(s))
}

/// Parses the options given to `pg_logical_slot_get_changes` or `START_REPLICATION`.
pub fn parse(raw: &[(String, Option<String>)]) -> Result<Options, PgTursoError> {
    let mut seen: Vec<&str> = Vec::new();
    let mut url = None;
    let mut token = None;
    let mut table = None;
    let mut publications = None;
    let mut ca_file = None;
    let mut skip_snapshot = None;
    let mut skip_snapshots = std::collections::HashMap::new();
    let mut timeout = Duration::from_millis(DEFAULT_TIMEOUT_MS);
    let mut limits = Limits::default();
    let mut streaming = true;
    let mut group_commit = false;
    let mut group_max = DEFAULT_GROUP_MAX;
    let mut decoding_work_mem_kb = None;
    let mut table_oid = None;
    let mut drop_tables = false;
    for (name, value) in raw {
        if seen.contains(&name.as_str()) {
            return Err(PgTursoError::RedundantOption { name: name.clone() });
        }
        seen.push(name);
        let val = value.as_deref();
        match name.as_str() {
            "url" => url = Some(parse_url(val.unwrap_or(""))?),
            "auth" | "auth_file" if seen.contains(&"auth") && seen.contains(&"auth_file") => {
                return Err(invalid(
                    name,
                    "***",
                    "Give the token either with auth or with auth_file, not both.",
                ));
            }
            "auth" => token = parse_token(val.unwrap_or(""))?,
            "auth_file" => {
                token = read_token_file(val.unwrap_or(""), std::path::Path::new(TOKEN_DIR))?
            }
            "table_name" => table = Some(parse_table(val.unwrap_or(""))?),
            "table_oid" => {
                let v = val.unwrap_or("");
                table_oid = Some(parse_oids(v).ok_or_else(|| {
                    invalid(
                        name,
                        v,
                        "Give the table's OID, e.g. 't'::regclass::oid, or several separated by commas.",
                    )
                })?);
            }
            "publication_names" => {
                let v = val.unwrap_or("");
                publications = Some(split_identifiers(v, ',').ok_or_else(|| {
                    invalid(
                        name,
                        v,
                        "Give publication names separated by commas, e.g. 'app' or 'app, \"Other\"'.",
                    )
                })?);
            }
            "skip_snapshot" => {
                let v = val.unwrap_or("");
                skip_snapshot = Some(SkipSnapshot::parse(v).ok_or_else(|| {
                    invalid(
                        name,
                        v,
                        "skip_snapshot takes xmin:xmax:xip,... as reported by an initial copy.",
                    )
                })?);
            }
            "skip_snapshots" => {
                let v = val.unwrap_or("");
                skip_snapshots = parse_skip_snapshots(v).ok_or_else(|| {
                    invalid(
                        name,
                        v,
                        "skip_snapshots takes a JSON object of relation OIDs and snapshots, as turso_start records them.",
                    )
                })?;
            }
            "ca_file" => {
                let v = val.unwrap_or("").trim();
                if v.is_empty() {
                    return Err(invalid(
                        name,
                        v,
                        "ca_file takes the path of a PEM file of CA certificates.",
                    ));
                }
                ca_file = Some(v.to_string());
            }
            "timeout_ms" => {
                let ms = parse_int(name, val, 1, 3_600_000, "milliseconds")?;
                timeout = Duration::from_millis(ms as u64);
            }
            "group_max_ms" => {
                let ms = parse_int(name, val, 1, 3_600_000, "milliseconds")?;
                group_max = Duration::from_millis(ms as u64);
            }
            "max_request_records" => {
                limits.max_records = parse_int(name, val, 1, 1_000_000, "records")?;
            }
            "max_request_bytes" => {
                limits.max_bytes = parse_int(name, val, 1024, 1 << 30, "bytes")?;
            }
            "retry_ms" => {
                let ms = parse_int(name, val, 0, 3_600_000, "milliseconds")?;
                limits.retry_for = Duration::from_millis(ms as u64);
            }
            "keepalive_ms" => {
                let ms = parse_int(name, val, 1, 3_600_000, "milliseconds")?;
                limits.keep_alive = Duration::from_millis(ms as u64);
            }
            "streaming" => streaming = parse_bool(name, val)?,
            "group_commit" => group_commit = parse_bool(name, val)?,
            "drop_tables" => drop_tables = parse_bool(name, val)?,
            "decoding_work_mem" => decoding_work_mem_kb = Some(parse_kb(name, val)?),
            _ => {
                let shown = match val {
                    Some(_) if looks_secret(name) => "***".to_string(),
                    Some(v) => v.to_string(),
                    None => "(null)".to_string(),
                };
                return Err(PgTursoError::UnknownOption {
                    name: name.clone(),
                    value: shown,
                });
            }
        }
    }
    let (base_url, url_token) = url.ok_or(PgTursoError::MissingUrl)?;
    Ok(Options {
        base_url,
        // `libsql://host?authToken=…` carries the token in the URL; an `auth` option wins.
        token: token.or(url_token),
        table,
        table_oid,
        publications,
        ca_file,
        skip_snapshot,
        skip_snapshots,
        timeout,
        limits,
        streaming,
        group_commit,
        group_max,
        drop_tables,
        decoding_work_mem_kb,
    })
}

/// A boolean with PostgreSQL's spellings (`parse_bool`); no value means true.
fn parse_bool(name: &str, val: Option<&str>) -> Result<bool, PgTursoError> {
    let Some(v) = val else { return Ok(true) };
    match v.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "t" | "yes" | "y" | "1" => Ok(true),
        "off" | "false" | "f" | "no" | "n" | "0" => Ok(false),
        _ => Err(invalid(
            name,
            v,
            &format!("{name} takes a boolean: on or off, true or false, yes or no, 1 or 0."),
        )),
    }
}

/// A memory size as PostgreSQL writes one: kilobytes, or a number with kB, MB or GB.
fn parse_kb(name: &str, val: Option<&str>) -> Result<u32, PgTursoError> {
    const MIN_KB: u64 = 64;
    let v = val.unwrap_or("");
    let t = v.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "kb" => Some(1u64),
        "mb" => Some(1024),
        "gb" => Some(1024 * 1024),
        _ => None,
    };
    digits
        .parse::<u64>()
        .ok()
        .zip(scale)
        .and_then(|(n, s)| n.checked_mul(s))
        .filter(|kb| (MIN_KB..=i32::MAX as u64).contains(kb))
        .map(|kb| kb as u32)
        .ok_or_else(|| {
            invalid(
                name,
                v,
                &format!("{name} takes a memory size from {MIN_KB}kB, e.g. '4MB' or '65536' (kilobytes)."),
            )
        })
}

/// An integer option within `min..=max`.
fn parse_int(
    name: &str,
    val: Option<&str>,
    min: usize,
    max: usize,
    unit: &str,
) -> Result<usize, PgTursoError> {
    let v = val.unwrap_or("");
    v.trim()
        .parse()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            invalid(
                name,
                v,
                &format!("{name} takes {unit} from {min} to {max}."),
            )
        })
}

/// A URL as it may be shown in a message: query string (which may hold a token) and user
/// information replaced by `***`.
fn shown_url(v: &str) -> String {
    crate::error::redact(v, &[])
}

/// `http://`/`https://` as given; `libsql://host` means `https://host`. Returns the base URL and
/// the token of an `?authToken=…` query (Turso's libsql URL form), the only query accepted.
fn parse_url(v: &str) -> Result<(String, Option<String>), PgTursoError> {
    const HINT: &str = "The url must look like http://host:port/, https://host/ or libsql://host (meaning https); the only query parameter accepted is authToken.";
    let bad = || invalid("url", &shown_url(v), HINT);
    let trimmed = v.trim();
    let mut parsed = reqwest::Url::parse(trimmed).map_err(|_| bad())?;
    let https = match parsed.scheme() {
        "http" => false,
        "https" | "libsql" => true,
        _ => return Err(bad()),
    };
    if parsed.host_str().is_none_or(str::is_empty) || parsed.fragment().is_some() {
        return Err(bad());
    }
    let mut token = None;
    for (k, val) in parsed.query_pairs() {
        if k != "authToken" || token.is_some() {
            return Err(bad());
        }
        token = parse_token(&val)?;
    }
    parsed.set_query(None);
    let base = parsed.as_str().to_string();
    if https && parsed.scheme() == "libsql" {
        return Ok((format!("https{}", &base["libsql".len()..]), token));
    }
    Ok((base, token))
}

/// The token, with any leading `Bearer ` removed; empty means no token.
/// Where option `auth_file` finds its files: relative to the server's data directory (the
/// working directory of every backend).
pub const TOKEN_DIR: &str = "pgturso";

/// The token kept in file `name` of `dir` (option `auth_file`), so that it never appears in a
/// statement's text (`pg_stat_activity`, the server log, `START_REPLICATION`). `name` is a plain
/// file name: only files an administrator put into that directory can be sent as a token.
fn read_token_file(name: &str, dir: &std::path::Path) -> Result<Option<String>, PgTursoError> {
    let hint_create = format!(
        "As the server's operating-system user, put the token into $PGDATA/{TOKEN_DIR}/<name> (mode 600), then pass auth_file '<name>'."
    );
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !plain {
        return Err(invalid(
            "auth_file",
            name,
            &format!("auth_file takes a file name of letters, digits, '_', '-' and '.', not a path. {hint_create}"),
        ));
    }
    let text = std::fs::read_to_string(dir.join(name)).map_err(|e| {
        invalid(
            "auth_file",
            name,
            &format!("Could not read $PGDATA/{TOKEN_DIR}/{name}: {e}. {hint_create}"),
        )
    })?;
    parse_token(&text).map_err(|_| {
        invalid(
            "auth_file",
            name,
            "The file must hold only the token (a trailing line break is fine).",
        )
    })
}

fn parse_token(v: &str) -> Result<Option<String>, PgTursoError> {
    let t = v.trim();
    let t = if t.len() >= 7 && t[..7].eq_ignore_ascii_case("bearer ") {
        t[7..].trim()
    } else {
        t
    };
    if t.chars().any(|c| c.is_control() || c == ' ') {
        // Never echo a token, even a malformed one.
        return Err(invalid(
            "auth",
            "***",
            "The token must not contain spaces, line breaks or other control characters.",
        ));
    }
    Ok((!t.is_empty()).then(|| t.to_string()))
}

/// `16384` or `16384,16390`: positive OIDs, at least one.
fn parse_oids(v: &str) -> Option<Vec<u32>> {
    v.split(',')
        .map(|o| o.trim().parse::<u32>().ok().filter(|&o| o > 0))
        .collect::<Option<Vec<u32>>>()
}

/// `{"<relation OID>": "xmin:xmax:xip,...", ...}`.
fn parse_skip_snapshots(v: &str) -> Option<std::collections::HashMap<u32, SkipSnapshot>> {
    let map: std::collections::HashMap<String, String> = serde_json::from_str(v).ok()?;
    map.into_iter()
        .map(|(rel, snap)| Some((rel.parse().ok()?, SkipSnapshot::parse(&snap)?)))
        .collect()
}

/// `name`, `schema.name`, with PostgreSQL identifier rules (quoted parts keep case).
fn parse_table(v: &str) -> Result<TableFilter, PgTursoError> {
    const HINT: &str =
        "Give a table name, optionally schema-qualified, e.g. 'public.t' or '\"My Schema\".\"T\"'.";
    let parts = split_identifiers(v, '.').ok_or_else(|| invalid("table_name", v, HINT))?;
    match parts.as_slice() {
        [name] => Ok(TableFilter {
            schema: "public".into(),
            name: name.clone(),
        }),
        [schema, name] => Ok(TableFilter {
            schema: schema.clone(),
            name: name.clone(),
        }),
        _ => Err(invalid("table_name", v, HINT)),
    }
}

/// Splits a list of identifiers separated by `sep` (a dotted name, a comma-separated list):
/// unquoted parts are lower-cased and trimmed, quoted parts are kept.
fn split_identifiers(v: &str, sep: char) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = v.trim().chars().peekable();
    loop {
        let mut ident = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        ident.push('"');
                    }
                    '"' => break,
                    c => ident.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == sep || c == '"' || c.is_whitespace() {
                    break;
                }
                // PostgreSQL folds only ASCII letters of unquoted names (in multi-byte encodings).
                ident.push(c.to_ascii_lowercase());
                chars.next();
            }
            ident = ident.trim().to_string();
        }
        if ident.is_empty() {
            return None;
        }
        parts.push(ident);
        while chars.peek().is_some_and(|c| *c != sep && c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => return Some(parts),
            Some(c) if c == sep => {
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                continue;
            }
            Some(_) => return None,
        }
    }
}

/// Limits on one request of a transaction (larger transactions span several requests), and how
/// long transient failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_records: usize,
    pub max_bytes: usize,
    /// Total time spent retrying one request; zero disables retries.
    pub retry_for: Duration,
    /// An open stream that has had no request for this long gets one (see
    /// `Replicator::keep_alive`): sqld expires a stream after about 10 s without requests.
    pub keep_alive: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_records: 2000,
            max_bytes: 5 * 1024 * 1024,
            retry_for: Duration::from_secs(10),
            keep_alive: Duration::from_secs(5),
        }
    }
}

#[cfg(test)]
mod tests;
