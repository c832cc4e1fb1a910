//! Unit tests of option parsing: every option, its bounds, and messages that never echo a secret.

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
fn publication_names_are_a_comma_separated_identifier_list() {
    let pubs = |v: &str| {
        opts(&[("url", Some("http://h/")), ("publication_names", Some(v))])
            .map(|o| o.publications.unwrap())
    };
    assert_eq!(pubs("app").unwrap(), vec!["app"]);
    assert_eq!(
        pubs(" App , \"My, Pub\",x").unwrap(),
        vec!["app", "My, Pub", "x"]
    );
    for bad in ["", "a,,b", "a,", "\"unterminated", "a b"] {
        let err = pubs(bad).unwrap_err();
        assert!(
            matches!(err, PgTursoError::InvalidOption { ref name, .. } if name == "publication_names"),
            "{bad}: {err:?}"
        );
    }
}

#[test]
fn table_names_follow_identifier_rules() {
    let t =
        |v| opts(&[("url", Some("http://h/")), ("table_name", Some(v))]).map(|o| o.table.unwrap());
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
    let o = opts(&[
        ("url", Some("http://h/")),
        (
            "skip_snapshots",
            Some(r#"{"16384": "5:9:", "16390": "7:12:8,10"}"#),
        ),
    ])
    .unwrap();
    assert_eq!(o.skip_snapshots[&16384].xmax, 9);
    assert!(o.skip_snapshots[&16390].sees(9) && !o.skip_snapshots[&16390].sees(10));
    for bad in [r#"{"x": "5:9:"}"#, r#"{"1": "nope"}"#, "[]", ""] {
        assert!(
            opts(&[("url", Some("http://h/")), ("skip_snapshots", Some(bad))]).is_err(),
            "{bad}"
        );
    }
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
        let e = opts(&[("url", Some("http://h/")), ("decoding_work_mem", Some(bad))]).unwrap_err();
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

#[test]
fn table_oid_is_a_positive_oid() {
    let o = opts(&[("url", Some("http://h/")), ("table_oid", Some(" 16384 "))]).unwrap();
    assert_eq!(o.table_oid, Some(vec![16384]));
    let o = opts(&[
        ("url", Some("http://h/")),
        ("table_oid", Some("16384, 16390")),
    ])
    .unwrap();
    assert_eq!(o.table_oid, Some(vec![16384, 16390]));
    for bad in ["0", "-1", "t", "", "16384,", "16384,0", "1;2"] {
        let e = opts(&[("url", Some("http://h/")), ("table_oid", Some(bad))]).unwrap_err();
        assert!(e.to_string().contains("table_oid"), "{bad}: {e}");
    }
}

#[test]
fn group_max_ms_bounds_a_group_s_age() {
    let o = opts(&[("url", Some("http://h/"))]).unwrap();
    assert_eq!(o.group_max, DEFAULT_GROUP_MAX);
    let o = opts(&[("url", Some("http://h/")), ("group_max_ms", Some("50"))]).unwrap();
    assert_eq!(o.group_max, Duration::from_millis(50));
    for bad in ["0", "-1", "x", "3600001"] {
        let e = opts(&[("url", Some("http://h/")), ("group_max_ms", Some(bad))]).unwrap_err();
        assert!(e.to_string().contains("group_max_ms"), "{bad}: {e}");
    }
}
