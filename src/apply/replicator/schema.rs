//! Turso's table bookkeeping (`_pgturso_schema`): the shape pgturso gave each replicated table,
//! read once per session, and the CREATE/ALTER that make a Turso table fit a decoded one.

use super::*;

impl<T: Transport> Replicator<T> {
    /// Makes sure the Turso table exists with `table`'s shape before its data: created when new,
    /// altered (in this same Turso transaction) when the PostgreSQL table changed. The first row
    /// of a table rewrite (`rewrite`) replaces the Turso table with an empty one of the new shape
    /// instead: the rewrite's rows are all the table holds.
    pub(super) fn ensure_table(
        &mut self,
        table: &Table,
        rewrite: Option<u32>,
    ) -> Result<(), PgTursoError> {
        let sig = shape_signature(table);
        let txn = self.txn.as_ref().expect("inside a transaction");
        let replace = rewrite.is_some_and(|id| {
            !txn.rewrites
                .iter()
                .any(|(source, r)| *source == table.source && *r == id)
        });
        // The table's latest shape, in this transaction or before: a table can go back to an
        // earlier shape (a column renamed back), which then needs ALTERs again.
        let latest = txn
            .created
            .iter()
            .rev()
            .find(|(source, _)| *source == table.source)
            .map(|(_, sig)| sig)
            .or_else(|| self.ensured.get(&table.source));
        if latest == Some(sig) && !replace {
            return Ok(());
        }
        let sig = sig.clone();
        let wanted = KnownTable::of(table);
        self.load_known()?;
        // Two PostgreSQL tables must never share one Turso table (SQLite ignores case in names).
        // The table holding the name may be gone from PostgreSQL, or renamed since its last
        // change: then this table takes the name over, in this Turso transaction.
        let mut stmts = Vec::new();
        if let Some((other, k)) = self.holder_of(&table.turso_name, &table.source) {
            match self.source_name.and_then(|f| f(&other)) {
                Some(None) => {
                    stmts.push(sql::drop_table(&k.turso_name));
                    stmts.push(schema_delete(&self.system_id, &other));
                    let txn = self.txn.as_mut().expect("inside a transaction");
                    txn.dropped.push(other);
                }
                Some(Some(name)) if name.to_lowercase() != k.turso_name.to_lowercase() => {
                    let renamed = KnownTable {
                        turso_name: name,
                        ..k.clone()
                    };
                    stmts.push(Stmt::new(
                        format!(
                            "ALTER TABLE {} RENAME TO {}",
                            sql::quote_ident(&k.turso_name),
                            sql::quote_ident(&renamed.turso_name)
                        ),
                        vec![],
                    ));
                    stmts.push(schema_upsert(&self.system_id, &other, &renamed));
                    let txn = self.txn.as_mut().expect("inside a transaction");
                    txn.known.push((other, renamed));
                }
                _ => {
                    return Err(PgTursoError::NameConflict {
                        table: table.display_name(),
                        turso: table.turso_name.clone(),
                    })
                }
            }
        }
        let current = self.latest_known(&table.source);
        stmts.extend(match &current {
            _ if replace => {
                let mut names: Vec<&String> = current.iter().map(|k| &k.turso_name).collect();
                if !names.contains(&&table.turso_name) {
                    names.push(&table.turso_name);
                }
                let mut out: Vec<Stmt> = names.into_iter().map(|n| sql::drop_table(n)).collect();
                out.extend(sql::create_table_and_index(table));
                out
            }
            Some(k) if *k != wanted => sql::alter_table(k, table)?,
            // Also when known: recreates a table dropped in Turso by hand.
            _ => sql::create_table_and_index(table),
        });
        if current.as_ref() != Some(&wanted) {
            stmts.push(schema_upsert(&self.system_id, &table.source, &wanted));
        }
        let txn = self.txn.as_mut().expect("inside a transaction");
        txn.created.push((table.source.clone(), sig));
        txn.known.push((table.source.clone(), wanted));
        if let (true, Some(id)) = (replace, rewrite) {
            txn.rewrites.push((table.source.clone(), id));
        }
        for stmt in stmts {
            self.push(stmt)?;
        }
        Ok(())
    }

    /// What Turso has for `source`: as this transaction left it, or as known before; `None`
    /// when it has none (or this transaction dropped it).
    pub(super) fn latest_known(&self, source: &str) -> Option<KnownTable> {
        let txn = self.txn.as_ref().expect("inside a transaction");
        if txn.dropped.iter().any(|s| s == source) {
            return None;
        }
        txn.known
            .iter()
            .rev()
            .find(|(s, _)| s == source)
            .map(|(_, k)| k)
            .or_else(|| self.known.as_ref().and_then(|k| k.get(source)))
            .cloned()
    }

    /// The source table other than `source` whose Turso table is named `turso_name` (ignoring
    /// case, as SQLite does), with what Turso has for it.
    fn holder_of(&self, turso_name: &str, source: &str) -> Option<(String, KnownTable)> {
        let txn = self.txn.as_ref().expect("inside a transaction");
        let lower = turso_name.to_lowercase();
        txn.known
            .iter()
            .map(|(s, _)| s)
            .chain(self.known.iter().flat_map(|k| k.keys()))
            .filter(|s| *s != source)
            .find_map(|s| {
                self.latest_known(s)
                    .filter(|k| k.turso_name.to_lowercase() == lower)
                    .map(|k| (s.clone(), k))
            })
    }

    /// Reads `_pgturso_schema` once per session.
    pub(super) fn load_known(&mut self) -> Result<(), PgTursoError> {
        if self.known.is_none() {
            let loaded = self
                .retrying(Self::read_known)
                .map_err(|source| PgTursoError::Schema { source })?;
            self.known = Some(loaded);
        }
        Ok(())
    }

    pub(super) fn read_known(&mut self) -> Result<HashMap<String, KnownTable>, ClientError> {
        let result = self.read_bookkeeping(
            schema_ddl(),
            format!(
                "SELECT \"source\", \"definition\" FROM {} WHERE \"system_id\" = ?",
                sql::quote_ident(SCHEMA_TABLE)
            ),
            vec![Value::Text(self.system_id.clone())],
            "schema",
        )?;
        let mut out = HashMap::new();
        for row in result.rows {
            if let [hrana::WireValue::Text { value: source }, hrana::WireValue::Text { value: def }] =
                row.as_slice()
            {
                let known = serde_json::from_str(def).map_err(|e| {
                    ClientError::Protocol(format!(
                        "unreadable {SCHEMA_TABLE} row for {source}: {e}"
                    ))
                })?;
                out.insert(source.clone(), known);
            }
        }
        Ok(out)
    }
}

/// `table`'s source and Turso shape as text, computed once per table description, not per change.
pub(super) fn shape_signature(table: &Table) -> &String {
    table.shape.get_or_init(|| {
        format!(
            "{} {}",
            table.source,
            serde_json::to_string(&KnownTable::of(table)).expect("plain data serializes")
        )
    })
}

pub(super) fn schema_ddl() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\"system_id\" TEXT NOT NULL, \"source\" TEXT NOT NULL, \"turso_name\" TEXT NOT NULL, \"definition\" TEXT NOT NULL, PRIMARY KEY (\"system_id\", \"source\"))",
        sql::quote_ident(SCHEMA_TABLE)
    )
}

pub(super) fn schema_delete(system_id: &str, source: &str) -> Stmt {
    Stmt::new(
        format!(
            "DELETE FROM {} WHERE \"system_id\" = ? AND \"source\" = ?",
            sql::quote_ident(SCHEMA_TABLE)
        ),
        vec![
            Value::Text(system_id.to_string()),
            Value::Text(source.to_string()),
        ],
    )
}

pub(super) fn schema_upsert(system_id: &str, source: &str, known: &KnownTable) -> Stmt {
    Stmt::new(
        format!(
            "INSERT INTO {} (\"system_id\", \"source\", \"turso_name\", \"definition\") VALUES (?, ?, ?, ?) ON CONFLICT (\"system_id\", \"source\") DO UPDATE SET \"turso_name\" = excluded.\"turso_name\", \"definition\" = excluded.\"definition\"",
            sql::quote_ident(SCHEMA_TABLE)
        ),
        vec![
            Value::Text(system_id.to_string()),
            Value::Text(source.to_string()),
            Value::Text(known.turso_name.clone()),
            Value::Text(serde_json::to_string(known).expect("plain data serializes")),
        ],
    )
}
