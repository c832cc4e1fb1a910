//! Mirror test: replication rounds (decoding calls with random limits) and the comparison of every
//! PostgreSQL row with its Turso row.

use super::*;

// ---------------------------------------------------------------------------------------------
// Replication

/// Decodes everything pending, in one call or several (`upto_nchanges`), with random request
/// limits (so transactions span requests) and sometimes the smallest logical_decoding_work_mem
/// (so transactions spill to disk), and the options `extra`. Returns (transactions, changes) the
/// plugin reported.
pub(super) fn sync(
    c: &mut postgres::Client,
    rng: &mut Rng,
    log: &mut Log,
    slot: &str,
    url: &str,
    extra: &[(&str, &str)],
) -> Result<(u64, u64), String> {
    let parts = if rng.chance(0.3) { rng.range(2, 4) } else { 1 };
    let (mut txns, mut changes) = (0, 0);
    for part in 1..=parts {
        let mem = if rng.chance(0.5) { "64kB" } else { "64MB" };
        let set = format!("SET logical_decoding_work_mem = '{mem}'");
        log.line(&set);
        c.batch_execute(&set).unwrap();
        let upto = if part < parts {
            rng.range(1, 50).to_string()
        } else {
            "NULL".into()
        };
        let mut opts = vec![
            ("url".to_string(), url.to_string()),
            (
                "max_request_records".into(),
                rng.range(50, 2000).to_string(),
            ),
        ];
        opts.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        if rng.chance(0.3) {
            opts.push((
                "max_request_bytes".into(),
                rng.range(16 * 1024, 1 << 20).to_string(),
            ));
        }
        let mut sql = format!(
            "SELECT data FROM pg_logical_slot_get_changes({}, NULL, {upto}",
            lit(slot)
        );
        for (k, v) in &opts {
            write!(sql, ", {}, {}", lit(k), lit(v)).unwrap();
        }
        sql.push(')');
        log.line(&sql.replace(url, "<url>"));
        log.flush();
        let rows = c.query(sql.as_str(), &[]).map_err(|e| {
            let (code, msg, detail, hint) = db_error(&e);
            format!("{code}: {msg}\nDETAIL: {detail}\nHINT: {hint}\noptions: {opts:?}, logical_decoding_work_mem {mem}")
        })?;
        for r in rows {
            let line: String = r.get(0);
            // "COMMIT 0/16B3748: 3 changes"
            let n = line
                .rsplit(": ")
                .next()
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("unexpected output line {line:?}"));
            txns += 1;
            changes += n;
        }
    }
    Ok((txns, changes))
}

// ---------------------------------------------------------------------------------------------
// Comparison

#[derive(Default)]
pub(super) struct Mismatches {
    pub(super) count: u64,
    pub(super) examples: Vec<String>,
}

impl Mismatches {
    pub(super) fn add(&mut self, what: String) {
        self.count += 1;
        if self.examples.len() < 10 {
            self.examples.push(what);
        }
    }
}

/// (name, type, key, not null) of the live columns of a PostgreSQL table, in order.
pub(super) fn pg_columns(c: &mut postgres::Client, table: &str) -> Vec<(String, Ty, bool, bool)> {
    pg_rows(
        c,
        &format!(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attstorage,
                    EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisprimary
                                                      AND a.attnum = ANY (i.indkey)),
                    a.attnotnull
             FROM pg_attribute a
             WHERE a.attrelid = {}::regclass AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
            lit(&qi(table))
        ),
    )
    .into_iter()
    .map(|r| {
        let name = r[0].clone().unwrap();
        let fmt = r[1].clone().unwrap();
        let ty = Ty::from_catalog(&fmt, r[2].as_deref().unwrap())
            .unwrap_or_else(|| panic!("unexpected type {fmt} of {table}.{name}"));
        (
            name,
            ty,
            r[3].as_deref() == Some("t"),
            r[4].as_deref() == Some("t"),
        )
    })
    .collect()
}

pub(super) fn row_string(row: &[V]) -> String {
    row.iter().map(V::canon).collect::<Vec<_>>().join("\u{0}")
}

pub(super) fn show_row(names: &[String], row: &[V]) -> String {
    let cells: Vec<String> = names
        .iter()
        .zip(row)
        .map(|(n, v)| format!("{n}: {}", v.show()))
        .collect();
    shorten(&cells.join(", "), 600)
}

/// A name of SQLite's row id that no column hides.
pub(super) fn rowid_alias(names: &[String]) -> &'static str {
    ["rowid", "_rowid_", "oid"]
        .into_iter()
        .find(|a| !names.iter().any(|n| n.eq_ignore_ascii_case(a)))
        .expect("the generator leaves one row id name free")
}

/// Ranges of row ids whose rows fit in one sqld response (it refuses responses over 10 MB).
pub(super) fn turso_pages(sqld: &Sqld, t: &Tab, names: &[String]) -> Vec<(i64, i64)> {
    const BUDGET: i64 = 3 << 20;
    let rowid = rowid_alias(names);
    let size = names
        .iter()
        .map(|n| format!("coalesce(octet_length({}), 0)", qi(n)))
        .collect::<Vec<_>>()
        .join(" + ");
    let per_value = 64 * names.len() as i64;
    let mut pages = Vec::new();
    let mut page: Option<(i64, i64, i64)> = None;
    for r in sqld.query(&format!(
        "SELECT {rowid}, {size} FROM {} ORDER BY {rowid}",
        t.q()
    )) {
        let (id, cost) = (
            r[0].as_i64().unwrap(),
            2 * r[1].as_i64().unwrap() + per_value,
        );
        page = match page {
            Some((lo, hi, acc)) if acc + cost > BUDGET => {
                pages.push((lo, hi));
                Some((id, id, cost))
            }
            Some((lo, _, acc)) => Some((lo, id, acc + cost)),
            None => Some((id, id, cost)),
        };
    }
    pages.extend(page.map(|(lo, hi, _)| (lo, hi)));
    pages
}

/// Compares every row of `t` in PostgreSQL with Turso; returns the number of rows compared.
pub(super) fn compare_table(
    c: &mut postgres::Client,
    sqld: &Sqld,
    t: &Tab,
    mm: &mut Mismatches,
) -> u64 {
    let cols = pg_columns(c, &t.name);
    let model: Vec<(String, Ty)> = t.cols.iter().map(|c| (c.name.clone(), c.ty)).collect();
    let catalog: Vec<(String, Ty)> = cols.iter().map(|c| (c.0.clone(), c.1)).collect();
    assert_eq!(catalog, model, "the generator lost track of {}", t.name);
    let names: Vec<String> = cols.iter().map(|c| c.0.clone()).collect();
    let pg_count: u64 = pg_rows(c, &format!("SELECT count(*) FROM {}", t.q()))[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    // Columns: names in order, declared types, primary key.
    let turso_cols: Vec<(String, String, bool, bool)> = sqld
        .query(&format!(
            "SELECT name, type, pk, \"notnull\" FROM pragma_table_info({}) ORDER BY cid",
            lit(&t.name)
        ))
        .into_iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                r[1].as_str().unwrap().to_string(),
                r[2].as_i64().unwrap() > 0,
                r[3].as_i64().unwrap() != 0,
            )
        })
        .collect();
    if turso_cols.is_empty() {
        if pg_count > 0 {
            mm.add(format!(
                "{}: no such table in Turso; PostgreSQL has {pg_count} rows",
                t.name
            ));
        }
        return 0;
    }
    let expected_cols: Vec<(String, String, bool, bool)> = cols
        .iter()
        .map(|(n, ty, key, nn)| (n.clone(), ty.turso_decl().to_string(), *key, *nn))
        .collect();
    if turso_cols != expected_cols {
        let n = turso_cols.len().max(expected_cols.len());
        let diffs: Vec<String> = (0..n)
            .filter(|&i| turso_cols.get(i) != expected_cols.get(i))
            .map(|i| {
                format!(
                    "column {}: expected {:?}, Turso has {:?}",
                    i + 1,
                    expected_cols.get(i),
                    turso_cols.get(i)
                )
            })
            .collect();
        mm.add(format!(
            "{}: Turso columns (name, declared type, pk, not null) differ: {}",
            t.name,
            diffs.join("; ")
        ));
        return 0;
    }
    // Rows, through the type map.
    let pg_sql = format!(
        "SELECT {} FROM {}",
        cols.iter()
            .map(|c| c.1.expected_expr(&qi(&c.0)))
            .collect::<Vec<_>>()
            .join(", "),
        t.q()
    );
    let pg_side: Vec<Vec<V>> = pg_rows(c, &pg_sql)
        .into_iter()
        .map(|r| {
            r.into_iter()
                .zip(&cols)
                .map(|(v, c)| V::expected(c.1, v))
                .collect()
        })
        .collect();
    let turso_sql = format!(
        "SELECT {} FROM {}",
        names
            .iter()
            .map(|n| {
                let q = qi(n);
                format!("typeof({q}), CASE typeof({q}) WHEN 'blob' THEN hex({q}) WHEN 'real' THEN printf('%!.17g', {q}) ELSE {q} END")
            })
            .collect::<Vec<_>>()
            .join(", "),
        t.q()
    );
    let turso: Vec<Vec<V>> = turso_pages(sqld, t, &names)
        .into_iter()
        .flat_map(|(lo, hi)| {
            sqld.query(&format!(
                "{turso_sql} WHERE {} BETWEEN {lo} AND {hi}",
                rowid_alias(&names)
            ))
        })
        .map(|r| r.chunks(2).map(|p| V::from_turso(&p[0], &p[1])).collect())
        .collect();
    let compared = pg_side.len() as u64;
    let key_idx: Vec<usize> = cols
        .iter()
        .enumerate()
        .filter(|(_, c)| c.2)
        .map(|(i, _)| i)
        .collect();
    if key_idx.is_empty() {
        // A multiset of whole rows.
        let mut want: Vec<(String, &Vec<V>)> = pg_side.iter().map(|r| (row_string(r), r)).collect();
        let mut got: Vec<(String, &Vec<V>)> = turso.iter().map(|r| (row_string(r), r)).collect();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let (mut i, mut j) = (0, 0);
        while i < want.len() || j < got.len() {
            let ord = match (want.get(i), got.get(j)) {
                (Some(w), Some(g)) => w.0.cmp(&g.0),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match ord {
                std::cmp::Ordering::Equal => {
                    i += 1;
                    j += 1;
                }
                std::cmp::Ordering::Less => {
                    mm.add(format!(
                        "{}: row missing in Turso (PostgreSQL {} rows, Turso {}): {}",
                        t.name,
                        want.len(),
                        got.len(),
                        show_row(&names, want[i].1)
                    ));
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    mm.add(format!(
                        "{}: extra row in Turso (PostgreSQL {} rows, Turso {}): {}",
                        t.name,
                        want.len(),
                        got.len(),
                        show_row(&names, got[j].1)
                    ));
                    j += 1;
                }
            }
        }
        return compared;
    }
    let key_of = |r: &[V]| -> String {
        key_idx
            .iter()
            .map(|&i| r[i].canon())
            .collect::<Vec<_>>()
            .join("\u{0}")
    };
    let show_key = |r: &[V]| -> String {
        key_idx
            .iter()
            .map(|&i| format!("{} = {}", names[i], r[i].show()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut by_key: HashMap<String, Vec<V>> = HashMap::with_capacity(turso.len());
    for r in turso {
        by_key.insert(key_of(&r), r);
    }
    for want in &pg_side {
        match by_key.remove(&key_of(want)) {
            None => mm.add(format!(
                "{}: row missing in Turso: {}",
                t.name,
                show_row(&names, want)
            )),
            Some(got) => {
                let diffs: Vec<String> = names
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| want[i] != got[i])
                    .map(|(i, n)| {
                        format!(
                            "column {n:?} ({}): expected {}, Turso has {}",
                            cols[i].1.pg_type(),
                            want[i].show(),
                            got[i].show()
                        )
                    })
                    .collect();
                if !diffs.is_empty() {
                    mm.add(format!(
                        "{}: row {}: {}",
                        t.name,
                        show_key(want),
                        diffs.join("; ")
                    ));
                }
            }
        }
    }
    for got in by_key.values() {
        mm.add(format!(
            "{}: extra row in Turso: {}",
            t.name,
            show_row(&names, got)
        ));
    }
    compared
}
