//! Tests of exactly-once delivery: the progress guard on every first request, resends after a
//! lost response, retries of transient failures, the copy snapshot, and divergence from the WAL.

use super::*;

fn batches(fake: &Fake) -> usize {
    txns(fake).len()
}

#[test]
fn a_lost_commit_response_is_resent_and_the_guard_refuses_the_second_copy() {
    let mut fake = Fake {
        lose: 1,
        ..Default::default()
    };
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), Limits::default());
    r.begin(0x100, 1).unwrap();
    r.change(&table(), insert(1)).unwrap();
    assert!(r.commit().unwrap().is_some(), "the call succeeds");
    drop(r);
    assert_eq!(batches(&fake), 2, "the transaction is sent again");
    assert_eq!(fake.refused, 1, "and Turso's guard refuses the copy");
    assert_eq!(fake.progress, Some(0x100));
    assert_eq!(fake.pauses, 1);
}

/// Replicates one transaction (LSN 0x100) of `rows` inserts in requests of two records.
fn two_record_requests(fake: &mut Fake, rows: i64) -> Option<String> {
    let limits = Limits {
        max_records: 2,
        ..Limits::default()
    };
    let mut r = Replicator::new(fake, "sys".into(), "slot".into(), limits);
    r.begin(0x100, 1).unwrap();
    for i in 0..rows {
        r.change(&table(), insert(i)).unwrap();
    }
    r.commit().unwrap()
}

#[test]
fn every_first_request_is_guarded_and_progress_only_moves_forward() {
    let mut fake = Fake {
        progress: Some(0x50),
        ..Default::default()
    };
    assert!(two_record_requests(&mut fake, 5).is_some());
    let txns = txns(&fake);
    assert!(txns.len() > 1, "the transaction spans requests");
    let first = all_steps(&txns[0].1);
    assert_eq!(first[0]["stmt"]["sql"], "BEGIN");
    let guard = first[1]["stmt"]["sql"].as_str().unwrap();
    assert!(
        guard.starts_with(GUARD_PREFIX),
        "the guard comes first: {guard}"
    );
    assert_eq!(first[1]["stmt"]["args"][2]["value"], "256");
    for (_, later) in &txns[1..] {
        assert!(
            !all_steps(later)
                .iter()
                .any(|s| s["stmt"]["sql"].as_str().unwrap().starts_with("UPDATE")),
            "only the first request holds the guard"
        );
    }
    let last = all_steps(&txns.last().unwrap().1);
    let upsert = last
        .iter()
        .map(|s| s["stmt"]["sql"].as_str().unwrap())
        .find(|s| s.starts_with("INSERT INTO \"_pgturso_progress\""))
        .unwrap();
    assert!(
        upsert.ends_with("WHERE excluded.\"lsn\" > \"_pgturso_progress\".\"lsn\""),
        "{upsert}"
    );
}

#[test]
fn a_transaction_turso_has_already_is_refused_and_its_stream_rolled_back() {
    // The progress row is read as 0x50, but Turso moves on to 0x100 before the transaction's
    // first request arrives (an earlier, late attempt of it landed meanwhile).
    let mut fake = Fake {
        progress: Some(0x50),
        progress_after_read: Some(0x100),
        ..Default::default()
    };
    assert!(
        two_record_requests(&mut fake, 6).is_none(),
        "nothing replicated"
    );
    assert_eq!(fake.refused, 1);
    assert_eq!(batches(&fake), 1, "nothing more was sent after the refusal");
    let last = &fake.requests.last().unwrap().1;
    assert_eq!(last["requests"][0]["stmt"]["sql"], "ROLLBACK");
    assert_eq!(last["requests"][1]["type"], "close");
    assert_eq!(fake.progress, Some(0x100));
}

#[test]
fn a_busy_database_is_retried() {
    let mut fake = Fake {
        fail_sql: None,
        ..Default::default()
    };
    fake.busy = 2;
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), Limits::default());
    r.begin(0x100, 1).unwrap();
    r.change(&table(), insert(1)).unwrap();
    assert!(r.commit().unwrap().is_some());
    drop(r);
    assert_eq!(batches(&fake), 3, "two busy answers, then applied");
    assert_eq!(fake.pauses, 2);
    assert_eq!(fake.progress, Some(0x100));
}

#[test]
fn a_transient_failure_before_commit_is_resent() {
    let mut fake = Fake {
        status: Some((503, 2)),
        ..Default::default()
    };
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), Limits::default());
    r.begin(0x100, 1).unwrap();
    r.change(&table(), insert(1)).unwrap();
    assert!(r.commit().is_ok());
    drop(r);
    assert_eq!(batches(&fake), 3, "two 503s, then applied once");
    assert_eq!(fake.progress, Some(0x100));
}

#[test]
fn refused_connections_are_retried_even_mid_stream() {
    let mut fake = Fake::default();
    let limits = Limits {
        max_records: 2,
        ..Limits::default()
    };
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), limits);
    r.begin(0x100, 1).unwrap();
    r.change(&table(), insert(0)).unwrap();
    r.change(&table(), insert(1)).unwrap(); // opens the stream: [BEGIN, CREATE, INSERT]
    r.transport.refuse = 2; // the next request continues the stream: never sent, so resent
    r.change(&table(), insert(2)).unwrap();
    r.change(&table(), insert(3)).unwrap();
    assert!(r.commit().is_ok());
    drop(r);
    assert_eq!(fake.pauses, 2);
    assert_eq!(fake.progress, Some(0x100));
}

#[test]
fn unknown_outcome_mid_stream_is_an_error_not_a_resend() {
    let mut fake = Fake::default();
    let limits = Limits {
        max_records: 2,
        ..Limits::default()
    };
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), limits);
    r.begin(0x100, 1).unwrap();
    r.change(&table(), insert(0)).unwrap();
    r.change(&table(), insert(1)).unwrap();
    r.transport.lose = 1;
    // The request that continues the stream loses its response: whichever call sends it fails.
    let err = r
        .change(&table(), insert(2))
        .and_then(|_| r.change(&table(), insert(3)))
        .and_then(|_| r.commit().map(|_| true))
        .unwrap_err()
        .to_string();
    assert!(err.contains("connection reset"), "{err}");
    drop(r);
    assert_eq!(fake.pauses, 0);
}

#[test]
fn permanent_failures_and_zero_retry_fail_at_once() {
    let mut fake = Fake {
        status: Some((401, 5)),
        ..Default::default()
    };
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), Limits::default());
    r.begin(0x100, 1).unwrap();
    r.change(&table(), insert(1)).unwrap();
    assert!(r.commit().is_err());
    drop(r);
    assert_eq!(batches(&fake), 1);
    let mut fake = Fake {
        status: Some((503, 5)),
        ..Default::default()
    };
    let limits = Limits {
        retry_for: std::time::Duration::ZERO,
        ..Limits::default()
    };
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), limits);
    r.begin(0x100, 1).unwrap();
    r.change(&table(), insert(1)).unwrap();
    assert!(r.commit().is_err());
    drop(r);
    assert_eq!(batches(&fake), 1);
}

#[test]
fn backoff_grows_and_is_capped() {
    let first = super::backoff(0);
    assert!(
        first >= std::time::Duration::from_millis(75)
            && first <= std::time::Duration::from_millis(125)
    );
    for attempt in 0..20 {
        assert!(super::backoff(attempt) <= std::time::Duration::from_millis(2500));
    }
    assert!(super::backoff(6) >= std::time::Duration::from_millis(1500));
}

#[test]
fn the_progress_read_is_retried_on_transient_failures() {
    struct Flaky<'a>(&'a mut Fake, usize);
    impl Transport for Flaky<'_> {
        fn pipeline(
            &mut self,
            base_url: Option<&str>,
            request: &PipelineRequest,
        ) -> Result<PipelineResponse, ClientError> {
            if self.1 > 0 {
                self.1 -= 1;
                return Err(ClientError::Timeout {
                    url: "u".into(),
                    ms: 1,
                });
            }
            let mut inner: &mut Fake = self.0;
            inner.pipeline(base_url, request)
        }
        fn pause(&mut self, _d: std::time::Duration) {}
    }
    let mut fake = Fake {
        progress: Some(0x500),
        ..Default::default()
    };
    let mut r = Replicator::new(
        Flaky(&mut fake, 2),
        "sys".into(),
        "slot".into(),
        Limits::default(),
    );
    r.begin(0x400, 1).unwrap();
    assert!(
        !r.change(&table(), insert(1)).unwrap(),
        "skipped: progress was read after two timeouts"
    );
}

#[test]
fn transactions_seen_by_the_copy_snapshot_are_skipped() {
    let mut fake = Fake::default();
    let snap = crate::options::SkipSnapshot::parse("100:110:105").unwrap();
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), Limits::default())
        .with_skip_snapshot(Some(snap));
    r.begin(0x100, 104).unwrap(); // committed before the copy's snapshot: in the copy
    assert!(!r.change(&table(), insert(1)).unwrap());
    assert_eq!(r.commit().unwrap(), None);
    r.begin(0x200, 105).unwrap(); // running when the copy started: not in it
    assert!(r.change(&table(), insert(2)).unwrap());
    assert!(r.commit().unwrap().is_some());
    r.begin(0x300, 111).unwrap(); // after the snapshot
    assert!(r.change(&table(), insert(3)).unwrap());
    assert!(r.commit().unwrap().is_some());
    drop(r);
    assert_eq!(batches(&fake), 2);
}

#[test]
fn a_refused_batch_is_a_statement_error_unless_it_is_about_the_stream() {
    let layout = hrana::BatchLayout {
        first_stmt: 1,
        stmts: 2,
        commit_step: None,
    };
    let sqls = vec![
        "CREATE TABLE IF NOT EXISTS \"t\" (\"id\" INTEGER)".to_string(),
        "INSERT INTO \"t\" (\"id\") VALUES (?)".to_string(),
    ];
    let err = |code: &str| hrana::HranaError {
        message: "boom".into(),
        code: Some(code.into()),
    };
    match super::batch_error(err("SQL_PARSE_ERROR"), &layout, &sqls) {
        ClientError::Statement { sql, .. } => assert!(sql.starts_with("CREATE TABLE"), "{sql}"),
        other => panic!("{other:?}"),
    }
    assert!(!super::batch_error(err("SQL_PARSE_ERROR"), &layout, &sqls).is_retryable());
    let expired = super::batch_error(err("STREAM_EXPIRED"), &layout, &sqls);
    assert!(matches!(expired, ClientError::Stream { .. }) && expired.is_retryable());
}

#[test]
fn a_table_going_back_to_an_earlier_shape_is_altered_back() {
    let mut fake = Fake::default();
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), Limits::default());
    let mut renamed = table();
    renamed.columns[1].name = "w".into();
    for (lsn, t) in [(0x100, table()), (0x200, renamed), (0x300, table())] {
        r.begin(lsn, 1).unwrap();
        r.change(&t, insert(lsn as i64)).unwrap();
        r.commit().unwrap();
    }
    drop(r);
    let alters: Vec<String> = txns(&fake)
        .iter()
        .flat_map(|(_, b)| steps(b))
        .map(|s| s["stmt"]["sql"].as_str().unwrap().to_string())
        .filter(|s| s.starts_with("ALTER TABLE"))
        .collect();
    assert_eq!(
        alters,
        [
            "ALTER TABLE \"t\" RENAME COLUMN \"v\" TO \"_pgturso_renaming_2\"",
            "ALTER TABLE \"t\" RENAME COLUMN \"_pgturso_renaming_2\" TO \"w\"",
            "ALTER TABLE \"t\" RENAME COLUMN \"w\" TO \"_pgturso_renaming_2\"",
            "ALTER TABLE \"t\" RENAME COLUMN \"_pgturso_renaming_2\" TO \"v\"",
        ]
    );
}

fn diverged_after(commit_at: CommitAt, confirmed: u64) -> Result<Option<String>, PgTursoError> {
    let mut fake = Fake {
        progress: Some(0x100),
        progress_xid: Some(5),
        ..Default::default()
    };
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), Limits::default())
        .with_history(confirmed, commit_at);
    r.begin(0x180, 6)?;
    r.change(&table(), insert(1))?;
    r.commit()
}

#[test]
fn progress_past_the_slot_without_its_commit_in_the_wal_is_a_divergence() {
    let err = diverged_after(|_| None, 0x80).unwrap_err();
    assert!(matches!(err, PgTursoError::Diverged { .. }), "{err}");
    // Its SQLSTATE (55000) is asserted in crate::error, where SQLSTATEs are given.
    let detail = err.detail().unwrap();
    assert!(
        detail.contains("no transaction committing at 0/100"),
        "{detail}"
    );
    assert!(err.hint().unwrap().contains("turso_"), "{:?}", err.hint());
}

#[test]
fn another_transaction_at_the_progress_lsn_is_a_divergence() {
    let err = diverged_after(|_| Some((9, 0)), 0x80).unwrap_err();
    assert!(
        err.detail()
            .unwrap()
            .contains("xid 9, where Turso has xid 5"),
        "{:?}",
        err.detail()
    );
}

#[test]
fn progress_matching_the_wal_or_behind_the_slot_is_trusted() {
    assert!(diverged_after(|lsn| (lsn == 0x100).then_some((5, 0)), 0x80)
        .unwrap()
        .is_some());
    assert!(diverged_after(|_| panic!("not read below the slot"), 0x200)
        .unwrap()
        .is_some());
}
