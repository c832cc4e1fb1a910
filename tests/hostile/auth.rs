//! Hostile-input tests, 3: bad, expired and foreign tokens, and the `Bearer` prefix.

use super::*;

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
