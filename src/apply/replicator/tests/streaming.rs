//! Tests of streamed transactions: applied directly, demoted to their spool, cut back by a
//! subtransaction rollback, skipped when Turso has them.

use super::*;

/// The ids inserted into "t" by a transaction request, in statement order.
fn inserted_ids(req: &Json) -> Vec<i64> {
    let mut ids = vec![];
    for step in steps(req) {
        let sql = step["stmt"]["sql"].as_str().unwrap();
        if !sql.starts_with("INSERT INTO \"t\"") {
            continue;
        }
        let args = step["stmt"]["args"].as_array().unwrap();
        if sql.contains("json_each") {
            let rows: Json = serde_json::from_str(args[0]["value"].as_str().unwrap()).unwrap();
            ids.extend(
                rows.as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r[0].as_i64().unwrap()),
            );
        } else {
            ids.push(args[0]["value"].as_str().unwrap().parse().unwrap());
        }
    }
    ids
}

/// The ids inserted by each transaction Turso committed, in commit order (a transaction starts
/// at a batch with BEGIN, spans requests, and ends at COMMIT or at a rollback request).
fn committed(fake: &Fake) -> Vec<Vec<i64>> {
    let mut out = vec![];
    let mut current: Option<Vec<i64>> = None;
    for (_, b) in &fake.requests {
        if b["requests"][0]["stmt"]["sql"] == "ROLLBACK" {
            current = None;
        }
        if !is_batch(b) {
            continue;
        }
        let sqls = step_sqls(b);
        if sqls.first().map(String::as_str) == Some("BEGIN") {
            current = Some(vec![]);
        }
        current
            .as_mut()
            .expect("a batch inside a transaction")
            .extend(inserted_ids(b));
        if sqls.iter().any(|s| s == "COMMIT") {
            out.push(current.take().unwrap());
        }
    }
    out
}

/// Transaction requests that roll a stream back (`ROLLBACK` + close, not a batch).
fn rollbacks(fake: &Fake) -> usize {
    fake.requests
        .iter()
        .filter(|(_, b)| b["requests"][0]["stmt"]["sql"] == "ROLLBACK")
        .count()
}

fn small() -> Limits {
    Limits {
        max_records: 2,
        ..Limits::default()
    }
}

fn streamed(r: &mut Replicator<&mut Fake>, xid: u32, ids: std::ops::Range<i64>) {
    r.stream_start(xid, 0x10).unwrap();
    for id in ids {
        r.stream_change(xid, xid, &table(), insert(id)).unwrap();
    }
    r.stream_stop(false).unwrap();
}

#[test]
fn a_streamed_transaction_reaches_turso_before_its_commit_and_commits_once() {
    let mut fake = Fake::default();
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), small());
    streamed(&mut r, 7, 1..4);
    streamed(&mut r, 7, 4..6);
    let before = r
        .transport
        .requests
        .iter()
        .filter(|(_, b)| is_batch(b))
        .count();
    assert!(before >= 2, "pieces are sent while streaming: {before}");
    let out = r.stream_commit(7, 0x100, None).unwrap();
    assert_eq!(out.as_deref(), Some("COMMIT 0/100: 5 changes"));
    drop(r);
    assert_eq!(committed(&fake), [[1, 2, 3, 4, 5]]);
    let all = txns(&fake);
    let sqls: Vec<String> = all.iter().flat_map(|(_, b)| step_sqls(b)).collect();
    assert_eq!(sqls.iter().filter(|s| *s == "BEGIN").count(), 1, "{sqls:?}");
    assert_eq!(
        sqls.iter().filter(|s| *s == "COMMIT").count(),
        1,
        "{sqls:?}"
    );
    assert_eq!(fake.progress, Some(0x100));
    assert_eq!(rollbacks(&fake), 0);
}

#[test]
fn a_transaction_committing_first_demotes_the_streamed_one_which_commits_from_its_spool() {
    let mut fake = Fake::default();
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), small());
    streamed(&mut r, 7, 1..4);
    // A small transaction commits while 7 is still running: it goes first.
    r.begin(0x80, 8).unwrap();
    r.change(&table(), insert(100)).unwrap();
    assert!(r.commit().unwrap().is_some());
    streamed(&mut r, 7, 4..6);
    let out = r.stream_commit(7, 0x100, None).unwrap();
    assert_eq!(out.as_deref(), Some("COMMIT 0/100: 5 changes"));
    drop(r);
    assert_eq!(
        rollbacks(&fake),
        1,
        "the direct Turso transaction was rolled back"
    );
    // 7's first pieces were rolled back; 8 committed, then 7 whole from its spool.
    assert_eq!(committed(&fake), [vec![100], vec![1, 2, 3, 4, 5]]);
    assert_eq!(fake.progress, Some(0x100));
}

#[test]
fn a_rolled_back_subtransaction_is_cut_from_the_spool() {
    let mut fake = Fake::default();
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), small());
    r.stream_start(7, 0x10).unwrap();
    r.stream_change(7, 7, &table(), insert(1)).unwrap();
    r.stream_change(7, 9, &table(), insert(2)).unwrap(); // SAVEPOINT a
    r.stream_change(7, 10, &table(), insert(3)).unwrap(); // SAVEPOINT b inside a
    r.stream_change(7, 10, &table(), insert(4)).unwrap();
    r.stream_stop(false).unwrap();
    r.stream_start(7, 0x10).unwrap();
    r.stream_abort(7, 10).unwrap(); // ROLLBACK TO b
    r.stream_change(7, 9, &table(), insert(5)).unwrap();
    r.stream_change(7, 11, &table(), insert(6)).unwrap(); // SAVEPOINT c, then RELEASE
    r.stream_change(7, 7, &table(), insert(7)).unwrap();
    r.stream_abort(7, 12).unwrap(); // a subtransaction with nothing streamed
    r.stream_stop(false).unwrap();
    let out = r.stream_commit(7, 0x100, None).unwrap();
    assert_eq!(out.as_deref(), Some("COMMIT 0/100: 5 changes"));
    drop(r);
    assert_eq!(rollbacks(&fake), 1);
    assert_eq!(committed(&fake), [[1, 2, 5, 6, 7]]);
}

#[test]
fn rolling_back_a_parent_drops_its_children_streamed_before_it() {
    let mut fake = Fake::default();
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), small());
    r.stream_start(7, 0x10).unwrap();
    r.stream_change(7, 7, &table(), insert(1)).unwrap();
    r.stream_change(7, 10, &table(), insert(2)).unwrap(); // child 10 of 9 writes first
    r.stream_change(7, 9, &table(), insert(3)).unwrap();
    // ROLLBACK TO 9: PostgreSQL aborts 9's committed children too, in either order.
    r.stream_abort(7, 9).unwrap();
    r.stream_abort(7, 10).unwrap();
    r.stream_change(7, 7, &table(), insert(4)).unwrap();
    r.stream_stop(false).unwrap();
    r.stream_commit(7, 0x100, None).unwrap();
    drop(r);
    assert_eq!(committed(&fake), [[1, 4]]);
}

#[test]
fn an_aborted_streamed_transaction_is_rolled_back_and_leaves_nothing() {
    let mut fake = Fake::default();
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), small());
    streamed(&mut r, 7, 1..4);
    r.stream_abort(7, 7).unwrap();
    r.begin(0x200, 8).unwrap();
    r.change(&table(), insert(100)).unwrap();
    r.commit().unwrap();
    drop(r);
    assert_eq!(rollbacks(&fake), 1);
    assert_eq!(committed(&fake), [[100]]);
    assert_eq!(fake.progress, Some(0x200));
}

#[test]
fn a_streamed_transaction_turso_may_have_is_kept_back_and_never_committed() {
    let mut fake = Fake {
        progress: Some(0x100),
        ..Default::default()
    };
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), small());
    // Turso's progress (0x100) is past the transactions' start (0x10): they are decoded again,
    // so none of them is applied directly onto what Turso may hold already.
    streamed(&mut r, 7, 1..4);
    assert_eq!(r.stream_commit(7, 0x100, None).unwrap(), None);
    streamed(&mut r, 8, 1..4);
    r.begin(0x90, 9).unwrap();
    assert!(!r.change(&table(), insert(100)).unwrap());
    assert_eq!(r.commit().unwrap(), None);
    assert_eq!(r.stream_commit(8, 0xF0, None).unwrap(), None);
    drop(r);
    assert_eq!(rollbacks(&fake), 0, "nothing was begun in Turso");
    assert_eq!(txns(&fake).len(), 0, "no transaction request at all");
    assert_eq!(fake.progress, Some(0x100));
}

#[test]
fn a_stream_that_caught_up_with_the_wal_lets_go_of_turso() {
    let mut fake = Fake::default();
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), small());
    r.stream_start(7, 0x10).unwrap();
    for id in 1..4 {
        r.stream_change(7, 7, &table(), insert(id)).unwrap();
    }
    r.stream_stop(true).unwrap();
    assert_eq!(
        r.transport
            .requests
            .iter()
            .filter(|(_, b)| b["requests"][0]["stmt"]["sql"] == "ROLLBACK")
            .count(),
        1
    );
    streamed(&mut r, 7, 4..5);
    r.stream_commit(7, 0x100, None).unwrap();
    drop(r);
    assert_eq!(committed(&fake), [[1, 2, 3, 4]]);
}

#[test]
fn closing_the_session_rolls_back_a_transaction_streamed_in_part() {
    let mut fake = Fake::default();
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), small());
    streamed(&mut r, 7, 1..4);
    r.close();
    drop(r);
    assert_eq!(rollbacks(&fake), 1);
    assert_eq!(fake.progress, None);
}

#[test]
fn two_streamed_transactions_one_direct_one_spooled() {
    let mut fake = Fake::default();
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), small());
    streamed(&mut r, 7, 1..3);
    streamed(&mut r, 8, 10..13);
    streamed(&mut r, 7, 3..4);
    // 8 commits first: 7 is given up, 8 comes from its spool.
    assert!(r.stream_commit(8, 0x100, None).unwrap().is_some());
    streamed(&mut r, 7, 4..5);
    assert!(r.stream_commit(7, 0x200, None).unwrap().is_some());
    drop(r);
    assert_eq!(committed(&fake), [vec![10, 11, 12], vec![1, 2, 3, 4]]);
}

#[test]
fn transactions_the_copy_has_are_not_even_spooled() {
    let mut fake = Fake::default();
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), small())
        .with_skip_snapshot(crate::options::SkipSnapshot::parse("110:120:"));
    streamed(&mut r, 105, 1..4);
    assert_eq!(r.stream_commit(105, 0x100, None).unwrap(), None);
    drop(r);
    assert!(txns(&fake).is_empty());
}
