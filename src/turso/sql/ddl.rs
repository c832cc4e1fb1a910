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

/// What Turso has for a table, as pgturso last created or altered it (kept in `_pgturso_schema`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownTable {
    pub turso_name: String,
    /// Attribute numbers of the key.
    pub key: Vec<i16>,
    /// (attnum, name, declared type) in PostgreSQL order.
    pub columns: Vec<(i16, String, String)>,
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
        }
    }
}

/// The statements that turn the Turso table `known` into the shape of `table`: RENAME TABLE,
/// DROP COLUMN, RENAME COLUMN (through temporary names, so swaps work) and ADD COLUMN (with
/// existing rows set to the column's default). Key and type changes cannot be followed.
pub fn alter_table(known: &KnownTable, table: &Table) -> Result<Vec<Stmt>, StmtError> {
    let cannot = |what: String| StmtError::SchemaChange {
        table: table.display_name(),
        what,
    };
    let wanted = KnownTable::of(table);
    if wanted.key != known.key {
        return Err(cannot("its primary key or replica identity changed".into()));
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
    let old = |attnum: i16| known.columns.iter().find(|c| c.0 == attnum);
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
    for c in &table.columns {
        match old(c.attnum) {
            Some((_, _, ty)) if SqlType::from_sql(ty) != Some(c.sql_type) => {
                return Err(cannot(format!(
                    "column \"{}\" changed from {ty} to {}",
                    c.name,
                    c.sql_type.as_sql()
                )));
            }
            Some(_) => {}
            None => {
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
        }
    }
    Ok(out)
}

/// TRUNCATE empties the Turso table.
pub fn truncate(table: &Table) -> Stmt {
    Stmt::new(
        format!("DELETE FROM {}", quote_ident(&table.turso_name)),
        vec![],
    )
}
