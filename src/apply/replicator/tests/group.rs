//! Tests of group commit: several decoded transactions in one Turso transaction, guarded by the
//! first and recording the progress of the last.

use super::*;

fn progress_args(req: &Json) -> Vec<Json> {
    all_steps(req)
        .into_iter()
        .filter(|s| {
            let sql = s["stmt"]["sql"].as_str().unwrap();
            sql.contains("_pgturso_progress") && !sql.starts_with(GUARD_PREFIX)
        })
        .map(|s| s["stmt"]["args"].clone())
        .collect()
}

/// A grouping replicator holding two decoded transactions (0/100 and 0/200, one row each).
fn two_held(fake: &mut Fake) -> Replicator<&mut Fake> {
    let mut r =
        Replicator::new(fake, "sys".into(), "slot".into(), Limits::default()).with_group_commit();
    for lsn in [0x100u64, 0x200] {
        r.begin(lsn, 1).unwrap();
        r.change(&table(), insert(lsn as i64)).unwrap();
        r.commit().unwrap();
    }
    r
}

#[test]
fn a_group_is_one_turso_transaction_guarded_by_its_first_and_recording_its_last() {
    let mut fake = Fake::default();
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), Limits::default())
        .with_group_commit();
    for (i, lsn) in [0x100u64, 0x200, 0x300].into_iter().enumerate() {
        r.begin(lsn, i as u32 + 1).unwrap();
        assert!(r.change(&table(), insert(i as i64)).unwrap());
        assert_eq!(
            r.commit().unwrap(),
            Some(format!("COMMIT {}: 1 change", format_lsn(lsn)))
        );
    }
    // A transaction with nothing to send leaves the group as it is.
    r.begin(0x400, 9).unwrap();
    assert_eq!(r.commit().unwrap(), None);
    assert_eq!(r.finish_group().unwrap(), Some(0x300));
    assert_eq!(r.finish_group().unwrap(), None, "nothing held any more");
    drop(r);
    let all = txns(&fake);
    assert_eq!(all.len(), 1, "one Turso transaction: {all:#?}");
    let req = &all[0].1;
    let guard = all_steps(req)
        .into_iter()
        .find(|s| s["stmt"]["sql"].as_str().unwrap().starts_with(GUARD_PREFIX))
        .expect("the group is guarded");
    assert!(
        guard["stmt"]["args"].to_string().contains("\"256\""),
        "by its first transaction, 0/100: {guard}"
    );
    let progress = progress_args(req);
    assert_eq!(progress.len(), 1);
    assert_eq!(progress[0][2], json!({"type": "integer", "value": "768"}));
    assert_eq!(
        progress[0][4],
        json!({"type": "integer", "value": "3"}),
        "xid of 0/300"
    );
    let rows: usize = steps(req)
        .iter()
        .filter(|s| {
            s["stmt"]["sql"]
                .as_str()
                .unwrap()
                .starts_with("INSERT INTO \"t\"")
        })
        .map(|s| {
            let json: Json =
                serde_json::from_str(s["stmt"]["args"][0]["value"].as_str().unwrap()).unwrap();
            json.as_array().unwrap().len()
        })
        .sum();
    assert_eq!(rows, 3, "the three transactions' rows");
    assert_eq!(req["requests"][1]["type"], "close");
}

#[test]
fn a_group_turso_has_in_part_is_an_error_and_rolled_back() {
    // Another attempt of this group lands between the progress read and the group's request.
    let mut fake = Fake {
        progress: Some(0x50),
        progress_after_read: Some(0x100),
        ..Default::default()
    };
    let mut r = two_held(&mut fake);
    let err = r.finish_group().unwrap_err();
    assert!(err.to_string().contains("part of this group"), "{err}");
    drop(r);
    assert_eq!(fake.refused, 1);
    assert_eq!(
        fake.progress,
        Some(0x100),
        "nothing of the group applied twice"
    );
}

#[test]
fn an_error_in_a_group_rolls_back_the_held_transaction() {
    let mut fake = Fake::default();
    let limits = Limits {
        max_records: 1,
        ..Limits::default()
    };
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), limits).with_group_commit();
    for lsn in [0x100u64, 0x200] {
        r.begin(lsn, 1).unwrap();
        r.change(&table(), insert(lsn as i64)).unwrap();
        r.change(&table(), insert(lsn as i64 + 1)).unwrap();
        r.commit().unwrap();
    }
    // Each group travelled (one record per request), so it closed at its commit; the third
    // transaction is travelling when an error ends the session.
    r.begin(0x300, 3).unwrap();
    r.change(&table(), insert(0x300)).unwrap();
    r.change(&table(), insert(0x301)).unwrap();
    r.change(&table(), insert(0x302)).unwrap();
    r.abort();
    drop(r);
    let last = &fake.requests.last().unwrap().1;
    assert_eq!(last["requests"][0]["stmt"]["sql"], "ROLLBACK", "{last}");
    assert_eq!(
        fake.progress,
        Some(0x200),
        "the closed groups committed, the open transaction rolled back"
    );
}

/// A group that fills a request closes at the next source commit: a long catch-up reaches Turso
/// in steps, each a Turso transaction of whole source transactions with its own progress.
#[test]
fn a_full_group_closes_at_a_source_commit() {
    let mut fake = Fake::default();
    let limits = Limits {
        max_records: 3,
        ..Limits::default()
    };
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), limits).with_group_commit();
    let mut open = vec![];
    for (i, lsn) in (1..=8u64).map(|n| n * 0x100).enumerate() {
        r.begin(lsn, i as u32 + 1).unwrap();
        r.change(&table(), insert(i as i64)).unwrap();
        r.change(&table(), insert(i as i64 + 100)).unwrap();
        r.commit().unwrap();
        open.push(r.held.is_some());
    }
    r.finish_group().unwrap();
    drop(r);
    // Two rows a transaction, three records a request: a group never holds more than two
    // transactions (a second one fills its request), and some hold two.
    let commits: Vec<Json> = txns(&fake)
        .iter()
        .flat_map(|(_, b)| all_steps(b))
        .filter(|s| s["stmt"]["sql"] == "COMMIT")
        .collect();
    assert!(
        (4..8).contains(&commits.len()),
        "{} Turso transactions for 8 source transactions ({open:?})",
        commits.len()
    );
    assert!(
        !open.windows(2).any(|w| w[0] && w[1]),
        "no group stayed open over a full request: {open:?}"
    );
    assert_eq!(fake.progress, Some(0x800));
}

/// A group open for `group_max_ms` closes at the next source commit, however small.
#[test]
fn an_old_group_closes_at_a_source_commit() {
    let mut fake = Fake::default();
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), Limits::default())
        .with_group_commit()
        .with_group_max_age(Duration::from_millis(30));
    r.begin(0x100, 1).unwrap();
    r.change(&table(), insert(1)).unwrap();
    r.commit().unwrap();
    std::thread::sleep(Duration::from_millis(40));
    r.begin(0x200, 2).unwrap();
    r.change(&table(), insert(2)).unwrap();
    r.commit().unwrap();
    r.begin(0x300, 3).unwrap();
    r.change(&table(), insert(3)).unwrap();
    r.commit().unwrap();
    assert_eq!(r.finish_group().unwrap(), Some(0x300));
    drop(r);
    // 0/100 and 0/200 (committed when the group was over 30 ms old), then 0/300.
    assert_eq!(txns(&fake).len(), 2);
    assert_eq!(fake.progress, Some(0x300));
}

#[test]
fn a_group_whose_answer_was_lost_is_resent_and_counted_once() {
    let mut fake = Fake {
        lose: 1,
        ..Default::default()
    };
    let mut r = two_held(&mut fake);
    assert_eq!(
        r.finish_group().unwrap(),
        Some(0x200),
        "the resend's guard refused it: the lost attempt had landed"
    );
    drop(r);
    assert_eq!(fake.refused, 1);
    assert_eq!(fake.progress, Some(0x200));
}
