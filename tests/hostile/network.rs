//! Hostile-input tests, 2: unreachable servers and servers that do not speak Hrana.

use super::*;

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
