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

/// Validated plugin options.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Server base URL, `http://` or `https://` (a `libsql://` URL is turned into `https://`).
    pub base_url: String,
    /// The token without any `Bearer ` prefix.
    pub token: Option<String>,
    pub table: Option<TableFilter>,
    /// PEM file of extra CA certificates trusted for `https://` (a self-hosted sqld behind TLS).
    pub ca_file: Option<String>,
    /// Skip transactions an initial copy already contains (set by the SQL API).
    pub skip_snapshot: Option<SkipSnapshot>,
    pub timeout: Duration,
    /// Request size limits; larger transactions span several requests of one Turso transaction.
    pub limits: Limits,
    /// Take large transactions from PostgreSQL while they are decoded (streaming of in-progress
    /// transactions) instead of after PostgreSQL has spilled them to disk.
    pub streaming: bool,
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
    let mut ca_file = None;
    let mut skip_snapshot = None;
    let mut timeout = Duration::from_millis(DEFAULT_TIMEOUT_MS);
    let mut limits = Limits::default();
    let mut streaming = true;
    let mut decoding_work_mem_kb = None;
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
        ca_file,
        skip_snapshot,
        timeout,
        limits,
        streaming,
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

/// `name`, `schema.name`, with PostgreSQL identifier rules (quoted parts keep case).
fn parse_table(v: &str) -> Result<TableFilter, PgTursoError> {
    const HINT: &str =
        "Give a table name, optionally schema-qualified, e.g. 'public.t' or '\"My Schema\".\"T\"'.";
    let parts = split_identifiers(v).ok_or_else(|| invalid("table_name", v, HINT))?;
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

/// Splits a dotted name into identifiers: unquoted parts are lower-cased, quoted parts are kept.
fn split_identifiers(v: &str) -> Option<Vec<String>> {
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
                if c == '.' || c == '"' {
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
        match chars.next() {
            None => return Some(parts),
            Some('.') => continue,
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
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, Option<&str>)]) -> Result<Options, PgTursoError> {
        let raw: Vec<(String, Option<String>)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect();
        parse(&raw)
    }

    #[test]
    fn minimal_options() {
        let o = opts(&[
            ("url", Some("http://127.0.0.1:8080/")),
            ("auth", Some("s3cr3t")),
        ])
        .unwrap();
        assert_eq!(o.base_url, "http://127.0.0.1:8080/");
        assert_eq!(o.token.as_deref(), Some("s3cr3t"));
        assert_eq!(o.table, None);
        assert_eq!(o.timeout, Duration::from_millis(DEFAULT_TIMEOUT_MS));
    }

    #[test]
    fn bearer_prefix_is_optional() {
        let o = opts(&[("url", Some("http://h/")), ("auth", Some("Bearer abc"))]).unwrap();
        assert_eq!(o.token.as_deref(), Some("abc"));
        let o = opts(&[("url", Some("http://h/")), ("auth", Some(""))]).unwrap();
        assert_eq!(o.token, None);
    }

    #[test]
    fn libsql_means_https() {
        let o = opts(&[("url", Some("libsql://db-org.turso.io"))]).unwrap();
        assert_eq!(o.base_url, "https://db-org.turso.io");
    }

    #[test]
    fn auth_token_in_the_url_is_used_and_never_echoed() {
        let o = opts(&[("url", Some("libsql://db-org.turso.io?authToken=eyJsecret"))]).unwrap();
        assert_eq!(o.base_url, "https://db-org.turso.io");
        assert_eq!(o.token.as_deref(), Some("eyJsecret"));
        let o = opts(&[
            ("url", Some("libsql://db.turso.io?authToken=fromurl")),
            ("auth", Some("fromoption")),
        ])
        .unwrap();
        assert_eq!(o.token.as_deref(), Some("fromoption"));
        let e = opts(&[("url", Some("https://h/?authToken=eyJsecret&x=1"))]).unwrap_err();
        assert!(!e.to_string().contains("eyJsecret"), "{e}");
        assert_eq!(
            e.to_string(),
            "could not parse value \"https://h/?***\" for parameter \"url\""
        );
    }

    #[test]
    fn tokens_with_control_characters_are_refused_without_echo() {
        let e = opts(&[
            ("url", Some("http://h/")),
            ("auth", Some("abc\r\nX-Evil: 1")),
        ])
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "could not parse value \"***\" for parameter \"auth\""
        );
    }

    #[test]
    fn bad_urls_are_rejected_in_postgres_wording() {
        for bad in ["ftp://h/", "not a url", "", "http://", "http://h/#frag"] {
            let e = opts(&[("url", Some(bad))]).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("could not parse value \"{bad}\" for parameter \"url\"")
            );
        }
    }

    #[test]
    fn url_is_required() {
        assert!(matches!(
            opts(&[("auth", Some("x"))]),
            Err(PgTursoError::MissingUrl)
        ));
    }

    #[test]
    fn unknown_and_repeated_options() {
        let e = opts(&[("url", Some("http://h/")), ("foo", Some("bar"))]).unwrap_err();
        assert_eq!(e.to_string(), "option \"foo\" = \"bar\" is unknown");
        let e = opts(&[("url", Some("http://h/")), ("url", Some("http://h/"))]).unwrap_err();
        assert_eq!(e.to_string(), "conflicting or redundant options");
    }

    #[test]
    fn unknown_secret_looking_options_hide_their_value() {
        let e = opts(&[("url", Some("http://h/")), ("token", Some("s3cr3t"))]).unwrap_err();
        assert_eq!(e.to_string(), "option \"token\" = \"***\" is unknown");
    }

    #[test]
    fn table_names_follow_identifier_rules() {
        let t = |v| {
            opts(&[("url", Some("http://h/")), ("table_name", Some(v))]).map(|o| o.table.unwrap())
        };
        assert_eq!(
            t("T").unwrap(),
            TableFilter {
                schema: "public".into(),
                name: "t".into()
            }
        );
        assert_eq!(
            t("s.Tab").unwrap(),
            TableFilter {
                schema: "s".into(),
                name: "tab".into()
            }
        );
        assert_eq!(
            t("\"My S\".\"a.\"\"b\"").unwrap(),
            TableFilter {
                schema: "My S".into(),
                name: "a.\"b".into()
            }
        );
        // Like PostgreSQL in UTF-8: only ASCII letters of an unquoted name are folded.
        assert_eq!(
            t("Ärger.ÉTÉ").unwrap(),
            TableFilter {
                schema: "Ärger".into(),
                name: "ÉtÉ".into()
            }
        );
        assert!(t("a.b.c").is_err());
        assert!(t("").is_err());
        assert!(t("\"open").is_err());
    }

    #[test]
    fn timeout_bounds() {
        let t = |v| opts(&[("url", Some("http://h/")), ("timeout_ms", Some(v))]);
        assert_eq!(t("1500").unwrap().timeout, Duration::from_millis(1500));
        assert!(t("0").is_err());
        assert!(t("abc").is_err());
    }

    #[test]
    fn skip_snapshot_visibility() {
        let s = SkipSnapshot::parse("100:110:103,107").unwrap();
        assert_eq!(
            s,
            SkipSnapshot {
                xmin: 100,
                xmax: 110,
                xip: vec![103, 107]
            }
        );
        assert!(s.sees(99) && s.sees(100) && s.sees(104) && s.sees(109));
        assert!(!s.sees(103) && !s.sees(107) && !s.sees(110) && !s.sees(200));
        // Around the wraparound of 32-bit transaction ids.
        let w = SkipSnapshot::parse("4294967290:5:").unwrap();
        assert!(w.sees(4294967280) && w.sees(4294967295) && w.sees(2));
        assert!(!w.sees(5) && !w.sees(6));
        assert!(SkipSnapshot::parse("1:x:").is_none());
        let o = opts(&[("url", Some("http://h/")), ("skip_snapshot", Some("5:9:"))]).unwrap();
        assert_eq!(o.skip_snapshot.unwrap().xmax, 9);
        assert!(opts(&[("url", Some("http://h/")), ("skip_snapshot", Some("nope"))]).is_err());
    }

    #[test]
    fn ca_file_option() {
        let o = opts(&[
            ("url", Some("https://h/")),
            ("ca_file", Some("/etc/ca.pem")),
        ])
        .unwrap();
        assert_eq!(o.ca_file.as_deref(), Some("/etc/ca.pem"));
        assert!(opts(&[("url", Some("https://h/")), ("ca_file", Some(" "))]).is_err());
        assert_eq!(opts(&[("url", Some("https://h/"))]).unwrap().ca_file, None);
    }

    #[test]
    fn streaming_and_decoding_work_mem() {
        let o = opts(&[("url", Some("http://h/"))]).unwrap();
        assert!(o.streaming);
        assert_eq!(o.decoding_work_mem_kb, None);
        for (v, on) in [
            (None, true),
            (Some("off"), false),
            (Some(" FALSE "), false),
            (Some("yes"), true),
            (Some("0"), false),
        ] {
            let o = opts(&[("url", Some("http://h/")), ("streaming", v)]).unwrap();
            assert_eq!(o.streaming, on, "{v:?}");
        }
        assert!(opts(&[("url", Some("http://h/")), ("streaming", Some("sometimes"))]).is_err());
        for (v, kb) in [
            ("4MB", 4096),
            ("65536", 65536),
            ("64kB", 64),
            ("1 gb", 1 << 20),
        ] {
            let o = opts(&[("url", Some("http://h/")), ("decoding_work_mem", Some(v))]).unwrap();
            assert_eq!(o.decoding_work_mem_kb, Some(kb), "{v}");
        }
        for bad in ["", "63", "4 MiB", "-1", "1.5MB", "3000GB", "MB"] {
            let e =
                opts(&[("url", Some("http://h/")), ("decoding_work_mem", Some(bad))]).unwrap_err();
            assert!(
                matches!(e, PgTursoError::InvalidOption { .. }),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn request_limits() {
        let o = opts(&[("url", Some("http://h/"))]).unwrap();
        assert_eq!(o.limits, Limits::default());
        assert_eq!(o.limits.max_records, 2000);
        assert_eq!(o.limits.max_bytes, 5 * 1024 * 1024);
        let o = opts(&[
            ("url", Some("http://h/")),
            ("max_request_records", Some("10")),
            ("max_request_bytes", Some("65536")),
        ])
        .unwrap();
        assert_eq!(o.limits.max_records, 10);
        assert_eq!(o.limits.max_bytes, 65536);
        let o = opts(&[("url", Some("http://h/")), ("retry_ms", Some("0"))]).unwrap();
        assert_eq!(o.limits.retry_for, Duration::ZERO);
        assert_eq!(o.limits.keep_alive, Duration::from_secs(5));
        let o = opts(&[("url", Some("http://h/")), ("keepalive_ms", Some("250"))]).unwrap();
        assert_eq!(o.limits.keep_alive, Duration::from_millis(250));
        assert!(opts(&[("url", Some("http://h/")), ("keepalive_ms", Some("0"))]).is_err());
        assert!(opts(&[
            ("url", Some("http://h/")),
            ("max_request_records", Some("0"))
        ])
        .is_err());
        assert!(opts(&[
            ("url", Some("http://h/")),
            ("max_request_bytes", Some("12"))
        ])
        .is_err());
    }

    #[test]
    fn auth_file_reads_a_plain_file_name_of_its_directory_only() {
        let dir = std::env::temp_dir().join(format!("pgturso-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("prod"), "s3cr3t-token\n").unwrap();
        assert_eq!(
            read_token_file("prod", &dir).unwrap().as_deref(),
            Some("s3cr3t-token")
        );
        for bad in ["../prod", "/etc/passwd", ".hidden", "", "a/b"] {
            let err = read_token_file(bad, &dir).unwrap_err();
            assert!(err.to_string().contains("auth_file"), "{bad}: {err}");
        }
        let missing = read_token_file("nope", &dir).unwrap_err();
        assert!(
            missing.hint().unwrap().contains("$PGDATA/pgturso/nope"),
            "{:?}",
            missing.hint()
        );
        std::fs::write(dir.join("two"), "a b\n").unwrap();
        let err = read_token_file("two", &dir).unwrap_err();
        assert!(!format!("{err} {:?}", err.hint()).contains("a b"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn auth_and_auth_file_together_are_refused() {
        let raw = |pairs: &[(&str, &str)]| -> Vec<(String, Option<String>)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Some(v.to_string())))
                .collect()
        };
        let err = parse(&raw(&[
            ("url", "http://127.0.0.1:1/"),
            ("auth", "tok"),
            ("auth_file", "prod"),
        ]))
        .unwrap_err();
        assert!(err.hint().unwrap().contains("not both"), "{err}");
    }
}
