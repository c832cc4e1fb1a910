//! Turso tables: CREATE TABLE for a PostgreSQL table, the ALTERs that follow its schema changes, TRUNCATE.

use serde::{Deserialize, Serialize};

use super::{column_list, quote_ident, Stmt, StmtError};
use crate::model::{SqlType, Table, Value};

/// `CREATE TABLE IF NOT EXISTS` with the columns in PostgreSQL order and the key.
pub fn create_table(table: &Table) -> Stmt {
    let mut parts: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            let mut def = format!("{} {}", quote_ident(&c.name), c.sql_type.as_sql());
            if c.not_null {
                def.push_str(" NOT NULL");
            }
            def
        })
        .collect();
    if !table.key.is_empty() {
        let kind = if table.key_is_primary {
            "PRIMARY KEY"
        } else {
            "UNIQUE"
        };
        parts.push(format!("{kind} ({})", column_list(table, &table.key)));
    }
    Stmt::new(
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            quote_ident(&table.turso_name),
            parts.join(", ")
        ),
        vec![],
    )
}

/// A table without key whose rows PostgreSQL identifies by all their values (`REPLICA IDENTITY
/// FULL`): its UPDATEs and DELETEs find the row by every column, which needs an index.
fn needs_identity_index(table: &Table) -> bool {
    table.key.is_empty() && table.identity_full && !table.columns.is_empty()
}

/// For a table without key with `REPLICA IDENTITY FULL`, an index over all its columns, so that
/// finding the row an UPDATE or DELETE names (every column `IS` its old value) is a lookup, not a
/// scan of the table. Named after the Turso table; dropped with it.
pub fn identity_index(table: &Table) -> Option<Stmt> {
    needs_identity_index(table).then(|| {
        let all: Vec<usize> = (0..table.columns.len()).collect();
        Stmt::new(
            format!(
                "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
                quote_ident(&format!("_pgturso_identity_{}", table.turso_name)),
                quote_ident(&table.turso_name),
                column_list(table, &all)
            ),
            vec![],
        )
    })
}

/// The table and, when it needs one, its identity index.
pub fn create_table_and_index(table: &Table) -> Vec<Stmt> {
    std::iter::once(create_table(table))
        .chain(identity_index(table))
        .collect()
}

/// What Turso has for a table, as pgturso last created or altered it (kept in `_pgturso_schema`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownTable {
    pub turso_name: String,
    /// Attribute numbers of the key.
    pub key: Vec<i16>,
    /// (attnum, name, declared type) in PostgreSQL order.
    pub columns: Vec<(i16, String, String)>,
    /// Attribute numbers of the columns of the identity index (see [`identity_index`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identity: Vec<i16>,
}

impl KnownTable {
    pub fn of(table: &Table) -> KnownTable {
        KnownTable {
            turso_name: table.turso_name.clone(),
            key: table.key.iter().map(|&i| table.columns[i].attnum).collect(),
            columns: table
                .columns
                .iter()
                .map(|c| (c.attnum, c.name.clone(), c.sql_type.as_sql().to_string()))
                .collect(),
            identity: if needs_identity_index(table) {
                table.columns.iter().map(|c| c.attnum).collect()
            } else {
                Vec::new()
            },
        }
    }
}

/// The statements that turn the Turso table `known` into the shape of `table`, run in the Turso
/// transaction of the change that revealed the new shape.
///
/// Renames, dropped and added columns become `ALTER TABLE` (renames through temporary names, so
/// swaps work; added columns get their default in existing rows). A changed key or a column whose
/// Turso type changed cannot be altered in SQLite, nor can a table with an identity index (SQLite
/// cannot drop an indexed column): the table is rebuilt ([`rebuild_table`]).
pub fn alter_table(known: &KnownTable, table: &Table) -> Result<Vec<Stmt>, StmtError> {
    let wanted = KnownTable::of(table);
    let old = |attnum: i16| known.columns.iter().find(|c| c.0 == attnum);
    let retyped = table
        .columns
        .iter()
        .any(|c| old(c.attnum).is_some_and(|(_, _, ty)| SqlType::from_sql(ty) != Some(c.sql_type)));
    if wanted.key != known.key
        || retyped
        || !wanted.identity.is_empty()
        || !known.identity.is_empty()
    {
        return Ok(rebuild_table(known, table));
    }
    let mut out = Vec::new();
    let name = quote_ident(&table.turso_name);
    if known.turso_name != table.turso_name {
        out.push(Stmt::new(
            format!(
                "ALTER TABLE {} RENAME TO {name}",
                quote_ident(&known.turso_name)
            ),
            vec![],
        ));
    }
    for (attnum, col, _) in &known.columns {
        if !table.columns.iter().any(|c| c.attnum == *attnum) {
            out.push(Stmt::new(
                format!("ALTER TABLE {name} DROP COLUMN {}", quote_ident(col)),
                vec![],
            ));
        }
    }
    let renamed: Vec<(&String, &String, i16)> = table
        .columns
        .iter()
        .filter_map(|c| {
            old(c.attnum)
                .filter(|o| o.1 != c.name)
                .map(|o| (&o.1, &c.name, c.attnum))
        })
        .collect();
    let tmp = |attnum: i16| quote_ident(&format!("_pgturso_renaming_{attnum}"));
    for (from, _, attnum) in &renamed {
        out.push(Stmt::new(
            format!(
                "ALTER TABLE {name} RENAME COLUMN {} TO {}",
                quote_ident(from),
                tmp(*attnum)
            ),
            vec![],
        ));
    }
    for (_, to, attnum) in &renamed {
        out.push(Stmt::new(
            format!(
                "ALTER TABLE {name} RENAME COLUMN {} TO {}",
                tmp(*attnum),
                quote_ident(to)
            ),
            vec![],
        ));
    }
    for c in table.columns.iter().filter(|c| old(c.attnum).is_none()) {
        let col = quote_ident(&c.name);
        out.push(Stmt::new(
            format!(
                "ALTER TABLE {name} ADD COLUMN {col} {}",
                c.sql_type.as_sql()
            ),
            vec![],
        ));
        if let Some(v) = c.missing.clone().filter(|v| *v != Value::Null) {
            out.push(Stmt::new(format!("UPDATE {name} SET {col} = ?"), vec![v]));
        }
    }
    Ok(out)
}

/// The name a table is built under while it replaces its old version.
pub const REBUILD_NAME: &str = "_pgturso_rebuild";

/// SQLite's documented way to change what `ALTER TABLE` cannot (a key, a column type): create
/// the new shape under a temporary name, copy the rows, drop the old table, rename the new one.
/// Columns are matched by attribute number (so renames keep their data); a column whose Turso
/// type changed is converted with `CAST`; a column added since gets its default.
///
/// This copies the whole table inside Turso. Inside one Turso transaction, so readers see the old
/// table until it commits, then the new one. Turso rows must satisfy the new key: they do when they
/// mirror PostgreSQL, which checked the key when it was added.
pub fn rebuild_table(known: &KnownTable, table: &Table) -> Vec<Stmt> {
    let tmp = Table {
        turso_name: REBUILD_NAME.to_string(),
        ..table.clone()
    };
    let create = create_table(&tmp);
    let mut targets = Vec::new();
    let mut exprs = Vec::new();
    let mut args = Vec::new();
    for c in &table.columns {
        let source = known.columns.iter().find(|k| k.0 == c.attnum);
        let expr = match source {
            Some((_, name, ty)) if SqlType::from_sql(ty) == Some(c.sql_type) => quote_ident(name),
            Some((_, name, _)) => format!("CAST({} AS {})", quote_ident(name), c.sql_type.as_sql()),
            None => match c.missing.clone().filter(|v| *v != Value::Null) {
                Some(v) => {
                    args.push(v);
                    "?".to_string()
                }
                None => continue,
            },
        };
        targets.push(quote_ident(&c.name));
        exprs.push(expr);
    }
    let tmp_name = quote_ident(REBUILD_NAME);
    let old = quote_ident(&known.turso_name);
    let mut out = vec![
        Stmt::new(format!("DROP TABLE IF EXISTS {tmp_name}"), vec![]),
        Stmt::new(
            create
                .sql
                .replacen("CREATE TABLE IF NOT EXISTS", "CREATE TABLE", 1),
            vec![],
        ),
    ];
    if !targets.is_empty() {
        out.push(Stmt::new(
            format!(
                "INSERT INTO {tmp_name} ({}) SELECT {} FROM {old}",
                targets.join(", "),
                exprs.join(", ")
            ),
            args,
        ));
    }
    out.push(Stmt::new(format!("DROP TABLE {old}"), vec![]));
    out.push(Stmt::new(
        format!(
            "ALTER TABLE {tmp_name} RENAME TO {}",
            quote_ident(&table.turso_name)
        ),
        vec![],
    ));
    out.extend(identity_index(table));
    out
}

/// `DROP TABLE IF EXISTS` of a Turso table.
pub fn drop_table(turso_name: &str) -> Stmt {
    Stmt::new(
        format!("DROP TABLE IF EXISTS {}", quote_ident(turso_name)),
        vec![],
    )
}

/// TRUNCATE empties the Turso table.
pub fn truncate(table: &Table) -> Stmt {
    Stmt::new(
        format!("DELETE FROM {}", quote_ident(&table.turso_name)),
        vec![],
    )
}
