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
        if self.known.is_none() {
            let loaded = self
                .retrying(Self::read_known)
                .map_err(|source| PgTursoError::Schema { source })?;
            self.known = Some(loaded);
        }
        let txn = self.txn.as_ref().expect("inside a transaction");
        // Two PostgreSQL tables must never share one Turso table (SQLite ignores case in names).
        let lower = table.turso_name.to_lowercase();
        let taken = txn
            .known
            .iter()
            .map(|(s, k)| (s, k))
            .chain(self.known.iter().flatten())
            .any(|(source, k)| *source != table.source && k.turso_name.to_lowercase() == lower);
        if taken {
            return Err(PgTursoError::NameConflict {
                table: table.display_name(),
                turso: table.turso_name.clone(),
            });
        }
        let current = txn
            .known
            .iter()
            .rev()
            .find(|(s, _)| *s == table.source)
            .map(|(_, k)| k)
            .or_else(|| self.known.as_ref().and_then(|k| k.get(&table.source)))
            .cloned();
        let mut stmts = match &current {
            _ if replace => {
                let mut names: Vec<&String> = current.iter().map(|k| &k.turso_name).collect();
                if !names.contains(&&table.turso_name) {
                    names.push(&table.turso_name);
                }
                let mut out: Vec<Stmt> = names.into_iter().map(|n| sql::drop_table(n)).collect();
                out.push(sql::create_table(table));
                out
            }
            Some(k) if *k != wanted => sql::alter_table(k, table)?,
            // Also when known: recreates a table dropped in Turso by hand.
            _ => vec![sql::create_table(table)],
        };
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
