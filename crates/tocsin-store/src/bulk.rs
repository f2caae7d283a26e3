//! Inserts of many rows in few statements, for the batch writer. A row is any `Serialize`
//! struct whose fields are the columns, in order.
//!
//! - PostgreSQL: the rows travel as one JSON array bound as `$1` and are expanded by
//!   `json_populate_recordset`: one statement, so one network round trip, whatever the number
//!   of rows, and the same SQL text (one prepared statement) for every batch size.
//! - SQLite: multi-row `VALUES` lists with every field bound as its own parameter: one
//!   statement for up to `MAX_ROWS` rows, and one more per further `MAX_ROWS`. Each row count
//!   has its own statement text, rendered on first use and kept prepared in the writer
//!   connection's statement cache. The JSON route costs more here: SQLite finds each column
//!   of each row by scanning the row's keys (`->>`), which a profile showed as the largest
//!   part of an audit append, and there is no network round trip to save. (Cutting batches
//!   into a few fixed sizes instead was slower: every statement is a hand-off to sqlx's
//!   SQLite thread, and a batch of 13 took four.)
//!
//!   The statements are `INSERT OR FAIL`: a failing row stops the statement and leaves the
//!   rows before it in place, where the default (`ABORT`) undoes the statement's own rows.
//!   That undo needs a statement journal, a copy of every page the statement touches, which
//!   was 6% of an alert batch's time; callers never go on after a failed statement (the
//!   batch rolls back its savepoint or its transaction), so the copy buys nothing. SQLite
//!   still keeps the journal for tables with immediate foreign keys (alerts, alert logs and
//!   notes) and for the alerts upsert; audit events and request statuses go without.

use serde::Serialize;
use serde::ser::{self, Impossible};
use sqlx::Arguments;
use sqlx::sqlite::SqliteArguments;
use std::fmt;
use std::sync::OnceLock;

/// The most rows in one SQLite statement (64 rows of the widest table, alerts, bind 2,112
/// parameters; SQLite allows 32,766).
pub(crate) const MAX_ROWS: usize = 64;

/// One bulk insert's statements, rendered once for both backends.
pub(crate) struct BulkSql {
    columns: Vec<&'static str>,
    postgres: String,
    /// The statement for `n` rows is at `n - 1`, rendered on first use.
    sqlite: [OnceLock<String>; MAX_ROWS],
    /// The text before the rows, and after them.
    sqlite_head: String,
    tail: String,
}

impl BulkSql {
    /// `tail` follows the rows: an `ON CONFLICT` clause, `RETURNING`.
    pub(crate) fn new(table: &str, columns: &'static str, tail: &str) -> BulkSql {
        let columns: Vec<&'static str> = columns.split(',').map(str::trim).collect();
        let list = columns.join(", ");
        let postgres = format!(
            "INSERT INTO {table} ({list}) SELECT {list} FROM json_populate_recordset(NULL::{table}, $1::json) {tail}"
        );
        BulkSql {
            sqlite_head: format!("INSERT OR FAIL INTO {table} ({list}) VALUES "),
            tail: tail.to_owned(),
            columns,
            postgres,
            sqlite: [const { OnceLock::new() }; MAX_ROWS],
        }
    }

    /// The SQLite statement inserting `n` rows (1 to `MAX_ROWS`).
    fn sqlite(&self, n: usize) -> &str {
        self.sqlite[n - 1].get_or_init(|| {
            let row = format!("({})", vec!["?"; self.columns.len()].join(", "));
            format!(
                "{}{} {}",
                self.sqlite_head,
                vec![row.as_str(); n].join(", "),
                self.tail
            )
        })
    }
}

/// Runs a `BulkSql` on a connection of either backend (the batch macros hold whichever
/// typed connection `on_db!` gave them).
pub(crate) trait Bulk {
    /// Inserts `rows`; returns what the statements' `RETURNING` clause yields, in no promised order
    /// (neither SQLite nor PostgreSQL orders `RETURNING` rows): callers match rows by key.
    async fn bulk_fetch<R, O>(&mut self, sql: &BulkSql, rows: &[R]) -> Result<Vec<O>, sqlx::Error>
    where
        R: Serialize,
        O: Send + Unpin + for<'r> sqlx::FromRow<'r, Self::Row>;

    /// Inserts `rows`.
    async fn bulk_execute<R: Serialize>(
        &mut self,
        sql: &BulkSql,
        rows: &[R],
    ) -> Result<(), sqlx::Error>;

    type Row: sqlx::Row;
}

impl Bulk for sqlx::PgConnection {
    type Row = sqlx::postgres::PgRow;

    async fn bulk_fetch<R, O>(&mut self, sql: &BulkSql, rows: &[R]) -> Result<Vec<O>, sqlx::Error>
    where
        R: Serialize,
        O: Send + Unpin + for<'r> sqlx::FromRow<'r, Self::Row>,
    {
        sqlx::query_as(crate::safe(&sql.postgres))
            .bind(crate::to_json(&rows))
            .fetch_all(self)
            .await
    }

    async fn bulk_execute<R: Serialize>(
        &mut self,
        sql: &BulkSql,
        rows: &[R],
    ) -> Result<(), sqlx::Error> {
        sqlx::query(crate::safe(&sql.postgres))
            .bind(crate::to_json(&rows))
            .execute(self)
            .await?;
        Ok(())
    }
}

impl Bulk for sqlx::SqliteConnection {
    type Row = sqlx::sqlite::SqliteRow;

    async fn bulk_fetch<R, O>(&mut self, sql: &BulkSql, rows: &[R]) -> Result<Vec<O>, sqlx::Error>
    where
        R: Serialize,
        O: Send + Unpin + for<'r> sqlx::FromRow<'r, Self::Row>,
    {
        let mut out = Vec::with_capacity(rows.len());
        for (text, chunk) in sqlite_chunks(sql, rows) {
            let args = bind_rows(&sql.columns, chunk)?;
            out.extend(
                sqlx::query_as_with(crate::safe(text), args)
                    .fetch_all(&mut *self)
                    .await?,
            );
        }
        Ok(out)
    }

    async fn bulk_execute<R: Serialize>(
        &mut self,
        sql: &BulkSql,
        rows: &[R],
    ) -> Result<(), sqlx::Error> {
        for (text, chunk) in sqlite_chunks(sql, rows) {
            let args = bind_rows(&sql.columns, chunk)?;
            sqlx::query_with(crate::safe(text), args)
                .execute(&mut *self)
                .await?;
        }
        Ok(())
    }
}

/// Cuts `rows` into chunks of at most `MAX_ROWS`, each with its statement.
fn sqlite_chunks<'a, R>(
    sql: &'a BulkSql,
    rows: &'a [R],
) -> impl Iterator<Item = (&'a str, &'a [R])> {
    rows.chunks(MAX_ROWS)
        .map(|chunk| (sql.sqlite(chunk.len()), chunk))
}

fn bind_rows<R: Serialize>(
    columns: &[&'static str],
    rows: &[R],
) -> Result<SqliteArguments, sqlx::Error> {
    let mut binder = RowBinder {
        args: SqliteArguments::default(),
        columns,
        next: 0,
    };
    binder.args.reserve(columns.len() * rows.len(), 0);
    for row in rows {
        binder.next = 0;
        row.serialize(&mut binder)
            .and_then(|()| match binder.next == columns.len() {
                true => Ok(()),
                false => Err(BindError(format!(
                    "a row has {} fields for {} columns",
                    binder.next,
                    columns.len()
                ))),
            })
            .map_err(|e| sqlx::Error::Encode(e.0.into()))?;
    }
    Ok(binder.args)
}

/// A serde serializer that binds a row struct's fields as SQLite parameters, checking each
/// field's name against the column it fills.
struct RowBinder<'c> {
    args: SqliteArguments,
    columns: &'c [&'static str],
    next: usize,
}

#[derive(Debug)]
struct BindError(String);

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

impl RowBinder<'_> {
    fn add<T>(&mut self, value: T) -> Result<(), BindError>
    where
        T: for<'q> sqlx::Encode<'q, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
    {
        self.args
            .add(value)
            .map_err(|e| BindError(format!("cannot bind a value: {e}")))
    }

    fn unsupported(what: &str) -> BindError {
        BindError(format!("a bulk-insert row field cannot be {what}"))
    }
}

impl ser::Serializer for &mut RowBinder<'_> {
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
        self.add(v.to_string())
    }
    fn serialize_str(self, v: &str) -> Result<(), BindError> {
        // One allocation (an `Arc<str>` is what sqlx keeps); a `String` would be copied into an
        // `Arc<String>`, two.
        self.add(std::sync::Arc::<str>::from(v))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), BindError> {
        self.add(v.to_vec())
    }
    fn serialize_none(self) -> Result<(), BindError> {
        self.add(None::<i64>)
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), BindError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), BindError> {
        self.add(None::<i64>)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), BindError> {
        self.add(None::<i64>)
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

impl ser::SerializeStruct for &mut RowBinder<'_> {
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
    fn chunks_cover_every_row_once() {
        let sql = BulkSql::new("t", "id, n, flag", "");
        let rows: Vec<u32> = (0..150).collect();
        let sizes: Vec<usize> = sqlite_chunks(&sql, &rows).map(|(_, c)| c.len()).collect();
        assert_eq!(sizes, vec![64, 64, 22]);
        for (text, chunk) in sqlite_chunks(&sql, &rows) {
            assert_eq!(text.matches('?').count(), 3 * chunk.len());
        }
        let flat: Vec<u32> = sqlite_chunks(&sql, &rows)
            .flat_map(|(_, c)| c.iter().copied())
            .collect();
        assert_eq!(flat, rows);
        assert_eq!(sqlite_chunks(&sql, &rows[..0]).count(), 0);
    }

    #[test]
    fn statements_have_one_placeholder_per_field() {
        let sql = BulkSql::new("t", "id, n, flag", "RETURNING id");
        assert_eq!(
            sql.sqlite(1),
            "INSERT OR FAIL INTO t (id, n, flag) VALUES (?, ?, ?) RETURNING id"
        );
        assert_eq!(
            sql.sqlite(2),
            "INSERT OR FAIL INTO t (id, n, flag) VALUES (?, ?, ?), (?, ?, ?) RETURNING id"
        );
        assert!(
            sql.postgres
                .contains("json_populate_recordset(NULL::t, $1::json) RETURNING id")
        );
    }

    #[test]
    fn binds_every_field_and_refuses_fields_out_of_column_order() {
        let rows = [
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
        ];
        let args = bind_rows(&["id", "n", "flag"], &rows).expect("binds");
        assert_eq!(args.len(), 6);
        let err = bind_rows(&["id", "flag", "n"], &rows).expect_err("out of order");
        assert!(
            err.to_string()
                .contains("field `n` is where column Some(\"flag\")"),
            "{err}"
        );
        let err = bind_rows(&["id", "n", "flag", "extra"], &rows).expect_err("missing field");
        assert!(err.to_string().contains("3 fields for 4 columns"), "{err}");
    }
}
