//! Inserts of many rows, for the batch writer. A row is any `Serialize` struct whose fields
//! are the columns, in order.
//!
//! - PostgreSQL: the rows travel as one JSON array bound as `$1` and are expanded by
//!   `json_populate_recordset`: one statement, so one network round trip, whatever the number
//!   of rows, and the same SQL text (one prepared statement) for every batch size.
//! - SQLite: one prepared single-row statement, run once per row on the writer's own
//!   connection (embedded.rs), each field bound straight from the row struct by `bind_row`.
//!   With no network and no hand-off to another thread per statement, a statement per row
//!   costs less than SQLite's multi-row `VALUES` did through sqlx (a statement text per row
//!   count, every value copied into sqlx's argument buffer first).
//!
//!   The statements are `INSERT OR FAIL`: a failing row stops the statement and leaves the
//!   rows before it in place, where the default (`ABORT`) undoes the statement's own rows.
//!   That undo needs a statement journal, a copy of every page the statement touches;
//!   callers never go on after a failed statement (the batch rolls back its savepoint or its
//!   transaction), so the copy buys nothing.

use serde::Serialize;
use serde::ser::{self, Impossible};
use std::fmt;

/// One bulk insert's statements, rendered once for both backends.
pub(crate) struct BulkSql {
    pub(crate) columns: Vec<&'static str>,
    postgres: String,
    /// The single-row statement, with `?N` placeholders.
    pub(crate) sqlite: String,
}

impl BulkSql {
    /// `tail` follows the rows: an `ON CONFLICT` clause, `RETURNING`.
    pub(crate) fn new(table: &str, columns: &'static str, tail: &str) -> BulkSql {
        BulkSql::ordered(table, columns, "", tail)
    }

    /// The same, with PostgreSQL's rows inserted in the order of `order_by` (columns): rows
    /// that wait on another transaction's uncommitted key then wait in one order on every
    /// node. (SQLite's writer is the only one; its statement is one row.)
    pub(crate) fn ordered(
        table: &str,
        columns: &'static str,
        order_by: &str,
        tail: &str,
    ) -> BulkSql {
        let columns: Vec<&'static str> = columns.split(',').map(str::trim).collect();
        let list = columns.join(", ");
        let order = match order_by {
            "" => String::new(),
            by => format!("ORDER BY {by} "),
        };
        let postgres = format!(
            "INSERT INTO {table} ({list}) SELECT {list} FROM json_populate_recordset(NULL::{table}, $1::json) {order}{tail}"
        );
        let params: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
        let sqlite = format!(
            "INSERT OR FAIL INTO {table} ({list}) VALUES ({}) {tail}",
            params.join(", ")
        );
        BulkSql {
            columns,
            postgres,
            sqlite,
        }
    }

    /// The PostgreSQL statement with its rows in parameter `$n` instead of `$1`, for a
    /// statement that writes more than one table. (The rows' parameter is the statement's
    /// first; a tail's own text is left as it is.)
    pub(crate) fn postgres_at(&self, n: usize) -> String {
        self.postgres
            .replacen("$1::json", &format!("${n}::json"), 1)
    }
}

/// Inserts `rows` on PostgreSQL; returns what the statement's `RETURNING` clause yields, in
/// no promised order (PostgreSQL does not order `RETURNING` rows): callers match rows by key.
pub(crate) async fn pg_fetch<R, O>(
    conn: &mut sqlx::PgConnection,
    sql: &BulkSql,
    rows: &[R],
) -> Result<Vec<O>, sqlx::Error>
where
    R: Serialize,
    O: Send + Unpin + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
{
    sqlx::query_as(crate::safe(&sql.postgres))
        .bind(crate::to_json(&rows))
        .fetch_all(conn)
        .await
}

/// Inserts `rows` on PostgreSQL.
pub(crate) async fn pg_execute<R: Serialize>(
    conn: &mut sqlx::PgConnection,
    sql: &BulkSql,
    rows: &[R],
) -> Result<(), sqlx::Error> {
    sqlx::query(crate::safe(&sql.postgres))
        .bind(crate::to_json(&rows))
        .execute(conn)
        .await?;
    Ok(())
}

/// Binds `row`'s fields as the parameters `?1`, `?2`, ... of `stmt`, checking each field's
/// name against `columns`.
pub(crate) fn bind_row<R: Serialize + ?Sized>(
    stmt: &mut rusqlite::Statement<'_>,
    columns: &[&'static str],
    row: &R,
) -> Result<(), BindError> {
    let mut binder = RowBinder {
        stmt,
        columns,
        next: 0,
    };
    row.serialize(&mut binder)?;
    match binder.next == columns.len() {
        true => Ok(()),
        false => Err(BindError(format!(
            "a row has {} fields for {} columns",
            binder.next,
            columns.len()
        ))),
    }
}

/// A serde serializer that binds a row struct's fields as a statement's parameters.
struct RowBinder<'s, 'c> {
    stmt: &'s mut rusqlite::Statement<'c>,
    columns: &'s [&'static str],
    /// Fields bound so far: the one being bound is parameter `next` (1-based).
    next: usize,
}

#[derive(Debug)]
pub(crate) struct BindError(String);

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BindError {}

impl ser::Error for BindError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        BindError(msg.to_string())
    }
}

impl RowBinder<'_, '_> {
    fn add<T: rusqlite::ToSql>(&mut self, value: T) -> Result<(), BindError> {
        self.stmt
            .raw_bind_parameter(self.next, value)
            .map_err(|e| BindError(format!("cannot bind a value: {e}")))
    }

    fn unsupported(what: &str) -> BindError {
        BindError(format!("a bulk-insert row field cannot be {what}"))
    }
}

impl ser::Serializer for &mut RowBinder<'_, '_> {
    type Ok = ();
    type Error = BindError;
    type SerializeSeq = Impossible<(), BindError>;
    type SerializeTuple = Impossible<(), BindError>;
    type SerializeTupleStruct = Impossible<(), BindError>;
    type SerializeTupleVariant = Impossible<(), BindError>;
    type SerializeMap = Impossible<(), BindError>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), BindError>;

    fn serialize_bool(self, v: bool) -> Result<(), BindError> {
        self.add(v)
    }
    fn serialize_i8(self, v: i8) -> Result<(), BindError> {
        self.add(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<(), BindError> {
        self.add(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<(), BindError> {
        self.add(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<(), BindError> {
        self.add(v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), BindError> {
        self.add(i64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<(), BindError> {
        self.add(i64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<(), BindError> {
        self.add(i64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<(), BindError> {
        let v = i64::try_from(v).map_err(|_| BindError(format!("{v} is out of range")))?;
        self.add(v)
    }
    fn serialize_f32(self, v: f32) -> Result<(), BindError> {
        self.add(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), BindError> {
        self.add(v)
    }
    fn serialize_char(self, v: char) -> Result<(), BindError> {
        self.add(v.encode_utf8(&mut [0; 4]) as &str)
    }
    fn serialize_str(self, v: &str) -> Result<(), BindError> {
        self.add(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), BindError> {
        self.add(v)
    }
    fn serialize_none(self) -> Result<(), BindError> {
        self.add(rusqlite::types::Null)
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), BindError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), BindError> {
        self.add(rusqlite::types::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), BindError> {
        self.add(rusqlite::types::Null)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), BindError> {
        self.add(variant)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), BindError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), BindError> {
        Err(RowBinder::unsupported("an enum with data"))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, BindError> {
        Err(RowBinder::unsupported(
            "a list (encode it as JSON text first)",
        ))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, BindError> {
        Err(RowBinder::unsupported("a tuple"))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, BindError> {
        Err(RowBinder::unsupported("a tuple struct"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, BindError> {
        Err(RowBinder::unsupported("an enum with data"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, BindError> {
        Err(RowBinder::unsupported(
            "a map (encode it as JSON text first)",
        ))
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, BindError> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, BindError> {
        Err(RowBinder::unsupported("an enum with data"))
    }
}

impl ser::SerializeStruct for &mut RowBinder<'_, '_> {
    type Ok = ();
    type Error = BindError;

    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), BindError> {
        match self.columns.get(self.next) {
            Some(&column) if column == key => {}
            column => {
                return Err(BindError(format!(
                    "field `{key}` is where column {column:?} belongs: the row struct's fields must follow the column list"
                )));
            }
        }
        self.next += 1;
        value.serialize(&mut **self)
    }

    fn end(self) -> Result<(), BindError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Row<'a> {
        id: &'a str,
        n: Option<i64>,
        flag: bool,
    }

    #[test]
    fn statements_have_one_placeholder_per_column() {
        let sql = BulkSql::new("t", "id, n, flag", "RETURNING id");
        assert_eq!(
            sql.sqlite,
            "INSERT OR FAIL INTO t (id, n, flag) VALUES (?1, ?2, ?3) RETURNING id"
        );
        assert!(
            sql.postgres
                .contains("json_populate_recordset(NULL::t, $1::json) RETURNING id")
        );
    }

    /// PostgreSQL's rows go in sorted before the tail; SQLite's one-row statement is as before.
    #[test]
    fn an_order_applies_to_postgres_rows_only() {
        let sql = BulkSql::ordered("t", "id, n, flag", "n, id", "RETURNING id");
        assert!(
            sql.postgres.ends_with(
                "json_populate_recordset(NULL::t, $1::json) ORDER BY n, id RETURNING id"
            ),
            "{}",
            sql.postgres
        );
        assert_eq!(
            sql.sqlite,
            BulkSql::new("t", "id, n, flag", "RETURNING id").sqlite
        );
    }

    #[test]
    fn binds_every_field_and_refuses_fields_out_of_column_order() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (id TEXT, n INTEGER, flag BOOLEAN)")
            .unwrap();
        let sql = BulkSql::new("t", "id, n, flag", "");
        let mut stmt = conn.prepare(&sql.sqlite).unwrap();
        for row in [
            Row {
                id: "a",
                n: None,
                flag: true,
            },
            Row {
                id: "b",
                n: Some(2),
                flag: false,
            },
        ] {
            bind_row(&mut stmt, &sql.columns, &row).expect("binds");
            assert_eq!(stmt.raw_execute().unwrap(), 1);
        }
        let rows: Vec<(String, Option<i64>, bool)> = conn
            .prepare("SELECT id, n, flag FROM t ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![("a".into(), None, true), ("b".into(), Some(2), false)]
        );
        let row = Row {
            id: "c",
            n: None,
            flag: true,
        };
        let err = bind_row(&mut stmt, &["id", "flag", "n"], &row).expect_err("out of order");
        assert!(
            err.to_string()
                .contains("field `n` is where column Some(\"flag\")"),
            "{err}"
        );
        let err = bind_row(&mut stmt, &["id", "n", "flag", "extra"], &row).expect_err("missing");
        assert!(err.to_string().contains("3 fields for 4 columns"), "{err}");
    }
}
