//! `tocsin migrate-data`: copies an embedded (SQLite) deployment into an empty, migrated
//! PostgreSQL database, table by table in one transaction each, converting each value to the
//! target column's type (SQLite keeps booleans as integers). Token digests, the audit chain
//! and the secret's fingerprint are copied as they are, so every key keeps working as long as
//! the target nodes use the same secret file.

use crate::{Db, Result, Store, StoreError};
use sqlx::Row;

/// Parents before children, so foreign keys hold at every step.
pub const TABLES: &[&str] = &[
    "meta",
    "organizations",
    "users",
    "sessions",
    "teams",
    "team_members",
    "roles",
    "service_accounts",
    "api_keys",
    "api_key_tokens",
    "audit_events_legacy",
    "audit_segments",
    "audit_segment_terms",
    "audit_heads",
    "integrations",
    "alert_counters",
    "alerts",
    "alert_notes",
    "alert_logs",
    "alert_requests",
    "heartbeats",
    "credential_changes",
];

enum Value {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(Option<bool>),
    Bytes(Option<Vec<u8>>),
}

impl Store {
    /// Copies every table of this (SQLite) store into `target` (PostgreSQL, migrated, empty).
    /// Returns the number of rows copied per table.
    pub async fn copy_into(&self, target: &Store) -> Result<Vec<(&'static str, usize)>> {
        let (Db::Sqlite(from), Db::Postgres(to)) = (&self.db, &target.db) else {
            return Err(StoreError::Config(
                "migrate-data copies from sqlite://... to postgres://... only".into(),
            ));
        };
        if target.count_orgs().await? > 0 {
            return Err(StoreError::Config(
                "the target database already holds organizations; migrate into an empty database"
                    .into(),
            ));
        }
        let mut copied = Vec::new();
        for table in TABLES {
            let columns: Vec<(String, String)> = sqlx::query_as(
                "SELECT column_name::text, data_type::text FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            )
            .bind(*table)
            .fetch_all(to)
            .await?;
            let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
            let select = format!("SELECT {} FROM {table}", names.join(", "));
            let rows = sqlx::query(crate::safe(&select)).fetch_all(from).await?;
            let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
            let insert = format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                names.join(", "),
                placeholders.join(", ")
            );
            // Deleting the empty target's rows first: `meta` may already hold what a node wrote
            // on start (the secret fingerprint); the source's values win.
            let mut tx = to.begin().await?;
            sqlx::query(crate::safe(&format!("DELETE FROM {table}")))
                .execute(&mut *tx)
                .await?;
            for row in &rows {
                let mut q = sqlx::query(crate::safe(&insert));
                for (i, (_, kind)) in columns.iter().enumerate() {
                    let v = match kind.as_str() {
                        "boolean" => Value::Bool(row.try_get(i)?),
                        "bigint" | "integer" => Value::Int(row.try_get(i)?),
                        "bytea" => Value::Bytes(row.try_get(i)?),
                        _ => Value::Text(row.try_get(i)?),
                    };
                    q = match v {
                        Value::Text(v) => q.bind(v),
                        Value::Int(v) => q.bind(v),
                        Value::Bool(v) => q.bind(v),
                        Value::Bytes(v) => q.bind(v),
                    };
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            copied.push((*table, rows.len()));
        }
        // Serial ids continue after the copied ones.
        sqlx::query(
            "SELECT setval(pg_get_serial_sequence('credential_changes', 'id'), COALESCE((SELECT MAX(id) FROM credential_changes), 0) + 1, false)",
        )
        .execute(to)
        .await?;
        Ok(copied)
    }
}
