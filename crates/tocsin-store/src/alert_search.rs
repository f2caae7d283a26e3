//! Renders a parsed alert search (`tocsin_core::search::Query`) as one SQL boolean expression
//! over the `alerts` table. Placeholders are `$N` and the SQL is portable, so the same text
//! runs on SQLite and PostgreSQL; every value is bound, never spliced into the statement.
//!
//! Matching rules the SQL encodes:
//! - Text equality is `=`: exact and case-sensitive (the parser already folded status and
//!   priority to their canonical case).
//! - "Contains" and list membership use `LOWER(col) LIKE LOWER($n) ESCAPE '\'`, because `LIKE`
//!   is the only pattern operator both databases share, and lowering both sides gives the same
//!   case-insensitive answer on each (bare `LIKE` ignores ASCII case on SQLite but not on
//!   PostgreSQL).
//! - `tags` and `teams` are JSON arrays of strings and `responders` a JSON array of
//!   `{"type", "id"}` objects; membership looks for the JSON-encoded element, quotes included,
//!   so `tag:prod` does not match `production`.
//! - `integration_name` and `integration_type` are the only nullable columns searched; they are
//!   read through `COALESCE(col, '')` so `NOT integration.name=x` keeps alerts with no
//!   integration instead of dropping them to SQL's NULL logic.
//! - A term the parser could never produce (a hand-built AST with `<` on a tag, say, or a
//!   non-numeric count) renders as `1=0`: `to_sql` cannot fail, and matching nothing is the
//!   safe reading of a meaningless condition.

use tocsin_core::search::{Field, Op, Query, Term};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SqlValue {
    Text(String),
    Int(i64),
    Bool(bool),
}

/// The expression for `q` and its parameters, numbered from `$first_param` in the order they
/// appear, so it can follow the caller's own leading parameters (the organization id, say).
pub fn to_sql(q: &Query, first_param: usize) -> (String, Vec<SqlValue>) {
    to_sql_at(q, first_param, crate::now_ms())
}

/// `to_sql` at the time `now` (ms): a snooze counts until its end (`snoozed`).
fn to_sql_at(q: &Query, first_param: usize, now: i64) -> (String, Vec<SqlValue>) {
    let mut r = Renderer {
        sql: String::new(),
        params: Vec::new(),
        first_param,
        now,
    };
    r.query(q);
    (r.sql, r.params)
}

/// How a column is stored, which decides how each operator reads it.
enum Column {
    Text(&'static str),
    /// Text that may be NULL.
    NullableText(&'static str),
    Bool(&'static str),
    /// `snoozed`, which is true only until `snoozed_until`: a snooze ends by itself.
    Snoozed,
    Int(&'static str),
    /// JSON array of strings.
    StringList(&'static str),
    /// JSON array of objects; the value is matched against their `"id"`.
    IdList(&'static str),
}

fn column(field: Field) -> Column {
    match field {
        Field::Status => Column::Text("status"),
        Field::Acknowledged => Column::Bool("acknowledged"),
        Field::Snoozed => Column::Snoozed,
        Field::IsSeen => Column::Bool("is_seen"),
        Field::Priority => Column::Text("priority"),
        Field::Tag => Column::StringList("tags"),
        Field::Alias => Column::Text("alias"),
        Field::Message => Column::Text("message"),
        Field::Description => Column::Text("description"),
        Field::Source => Column::Text("source"),
        Field::Owner => Column::Text("owner"),
        Field::Teams => Column::StringList("teams"),
        Field::Responders => Column::IdList("responders"),
        Field::IntegrationName => Column::NullableText("integration_name"),
        Field::IntegrationType => Column::NullableText("integration_type"),
        Field::TinyId => Column::Int("tiny_id"),
        Field::Entity => Column::Text("entity"),
        Field::CreatedAt => Column::Int("created_at"),
        Field::UpdatedAt => Column::Int("updated_at"),
        Field::Count => Column::Int("count"),
    }
}

const NOTHING: &str = "1=0";

/// Whether an alert is snoozed at the time bound to `now` (a placeholder): a snooze ends at
/// its `snoozed_until` without anything being written. The search and the sort share it.
pub(crate) fn snoozed_at(now: &str) -> String {
    format!("(snoozed AND COALESCE(snoozed_until, 0) > {now})")
}

struct Renderer {
    sql: String,
    params: Vec<SqlValue>,
    first_param: usize,
    /// The time the search is made (ms), for snoozes that have ended.
    now: i64,
}

impl Renderer {
    /// Binds `v` and returns its placeholder.
    fn bind(&mut self, v: SqlValue) -> String {
        self.params.push(v);
        format!("${}", self.first_param + self.params.len() - 1)
    }

    fn query(&mut self, q: &Query) {
        match q {
            Query::All => self.sql.push_str("1=1"),
            Query::And(a, b) => self.binary(a, "AND", b),
            Query::Or(a, b) => self.binary(a, "OR", b),
            Query::Not(a) => {
                self.sql.push_str("NOT (");
                self.query(a);
                self.sql.push(')');
            }
            Query::Term(t) => {
                let sql = self.term(t);
                self.sql.push_str(&sql);
            }
        }
    }

    fn binary(&mut self, a: &Query, op: &str, b: &Query) {
        self.sql.push('(');
        self.query(a);
        self.sql.push(' ');
        self.sql.push_str(op);
        self.sql.push(' ');
        self.query(b);
        self.sql.push(')');
    }

    fn term(&mut self, t: &Term) -> String {
        let value = t.value.as_str();
        match (column(t.field), t.op) {
            (Column::Text(col), Op::Contains) => self.contains(col, value),
            (Column::NullableText(col), Op::Contains) => {
                self.contains(&format!("COALESCE({col}, '')"), value)
            }
            (Column::Text(col), op) => self.compare(col, op, SqlValue::Text(value.to_owned())),
            (Column::NullableText(col), op) => self.compare(
                &format!("COALESCE({col}, '')"),
                op,
                SqlValue::Text(value.to_owned()),
            ),
            (Column::Bool(col), op) => match value {
                "true" => self.compare(col, op, SqlValue::Bool(true)),
                "false" => self.compare(col, op, SqlValue::Bool(false)),
                _ => NOTHING.to_owned(),
            },
            (Column::Snoozed, op) => {
                let wanted = match value {
                    "true" => true,
                    "false" => false,
                    _ => return NOTHING.to_owned(),
                };
                let now = self.bind(SqlValue::Int(self.now));
                self.compare(&snoozed_at(&now), op, SqlValue::Bool(wanted))
            }
            (Column::Int(col), op) => match value.parse::<i64>() {
                Ok(n) => self.compare(col, op, SqlValue::Int(n)),
                Err(_) => NOTHING.to_owned(),
            },
            (Column::StringList(col), Op::Eq) => {
                let pattern = format!("%{}%", like_escape(&json_string(value)));
                self.like(col, pattern)
            }
            (Column::IdList(col), Op::Eq) => {
                let pattern = format!("%\"id\":{}%", like_escape(&json_string(value)));
                self.like(col, pattern)
            }
            // Substring of an element: the value as it appears inside the JSON, unquoted.
            (Column::StringList(col) | Column::IdList(col), Op::Contains) => {
                let json = json_string(value);
                let inner = &json[1..json.len() - 1];
                self.like(col, format!("%{}%", like_escape(inner)))
            }
            (Column::StringList(_) | Column::IdList(_), _) => NOTHING.to_owned(),
        }
    }

    fn compare(&mut self, col: &str, op: Op, v: SqlValue) -> String {
        let sym = match op {
            Op::Eq => "=",
            Op::Lt => "<",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Ge => ">=",
            // Only text columns have a meaning for "contains", and they never reach here.
            Op::Contains => return NOTHING.to_owned(),
        };
        let p = self.bind(v);
        format!("{col} {sym} {p}")
    }

    fn contains(&mut self, col: &str, value: &str) -> String {
        self.like(col, format!("%{}%", like_escape(value)))
    }

    fn like(&mut self, col: &str, pattern: String) -> String {
        let p = self.bind(SqlValue::Text(pattern));
        format!("LOWER({col}) LIKE LOWER({p}) ESCAPE '\\'")
    }
}

/// Makes `%`, `_` and the escape character itself literal under `ESCAPE '\'`. The backslash
/// matters for list columns: JSON escapes a `"` inside a tag as `\"`.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The value as serde_json writes it into the stored arrays, so a pattern and the stored text
/// escape the same characters the same way.
fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_core::search::parse;

    fn sql(q: &str) -> (String, Vec<SqlValue>) {
        to_sql(&parse(q).unwrap(), 1)
    }
    fn text(s: &str) -> SqlValue {
        SqlValue::Text(s.into())
    }

    #[test]
    fn all_is_true() {
        assert_eq!(to_sql(&Query::All, 1), ("1=1".into(), vec![]));
    }

    #[test]
    fn text_fields_compare_exactly() {
        assert_eq!(
            sql("status:open"),
            ("status = $1".into(), vec![text("open")])
        );
        assert_eq!(
            sql("priority:p2"),
            ("priority = $1".into(), vec![text("P2")])
        );
        for (q, col) in [
            ("alias:x", "alias"),
            ("source:x", "source"),
            ("owner:x", "owner"),
            ("entity:x", "entity"),
            ("message=x", "message"),
            ("description=x", "description"),
        ] {
            assert_eq!(sql(q), (format!("{col} = $1"), vec![text("x")]), "{q}");
        }
    }

    #[test]
    fn nullable_columns_are_coalesced() {
        assert_eq!(
            sql("integration.name:Grafana"),
            (
                "COALESCE(integration_name, '') = $1".into(),
                vec![text("Grafana")]
            )
        );
        assert_eq!(
            sql("integration.type!=API"),
            (
                "NOT (COALESCE(integration_type, '') = $1)".into(),
                vec![text("API")]
            )
        );
    }

    #[test]
    fn contains_is_a_case_insensitive_escaped_like() {
        assert_eq!(
            sql("disk"),
            (
                "LOWER(message) LIKE LOWER($1) ESCAPE '\\'".into(),
                vec![text("%disk%")]
            )
        );
        assert_eq!(
            sql(r#"description:"50%_off\\x""#),
            (
                "LOWER(description) LIKE LOWER($1) ESCAPE '\\'".into(),
                vec![text(r"%50\%\_off\\x%")]
            )
        );
    }

    #[test]
    fn booleans_bind_as_booleans() {
        assert_eq!(
            sql("acknowledged:true"),
            ("acknowledged = $1".into(), vec![SqlValue::Bool(true)])
        );
        // A snooze counts only until its end, so the time of the search is bound too.
        assert_eq!(
            to_sql_at(&parse("snoozed:false").unwrap(), 1, 1_000),
            (
                "(snoozed AND COALESCE(snoozed_until, 0) > $1) = $2".into(),
                vec![SqlValue::Int(1_000), SqlValue::Bool(false)]
            )
        );
        assert_eq!(
            sql("isSeen:TRUE"),
            ("is_seen = $1".into(), vec![SqlValue::Bool(true)])
        );
    }

    #[test]
    fn ordered_fields_bind_integers_with_each_operator() {
        for (sym, sql_sym) in [
            (":", "="),
            ("<", "<"),
            (">", ">"),
            ("<=", "<="),
            (">=", ">="),
        ] {
            for (name, col) in [
                ("createdAt", "created_at"),
                ("updatedAt", "updated_at"),
                ("tinyId", "tiny_id"),
                ("count", "count"),
            ] {
                assert_eq!(
                    sql(&format!("{name}{sym}1700000000000")),
                    (
                        format!("{col} {sql_sym} $1"),
                        vec![SqlValue::Int(1_700_000_000_000)]
                    )
                );
            }
        }
        assert_eq!(
            sql("createdAt>2023-11-14T22:13:20Z").1,
            vec![SqlValue::Int(1_700_000_000_000)]
        );
    }

    #[test]
    fn list_membership_matches_whole_json_elements() {
        assert_eq!(
            sql("tag:prod"),
            (
                "LOWER(tags) LIKE LOWER($1) ESCAPE '\\'".into(),
                vec![text("%\"prod\"%")]
            )
        );
        assert_eq!(
            sql("teams:t1"),
            (
                "LOWER(teams) LIKE LOWER($1) ESCAPE '\\'".into(),
                vec![text("%\"t1\"%")]
            )
        );
        assert_eq!(
            sql("responders:u_1"),
            (
                "LOWER(responders) LIKE LOWER($1) ESCAPE '\\'".into(),
                vec![text("%\"id\":\"u\\_1\"%")]
            )
        );
        // JSON escapes the quote as \" and LIKE then needs the backslash escaped.
        assert_eq!(sql(r#"tag:"a\"b""#).1, vec![text(r#"%"a\\"b"%"#)]);
    }

    #[test]
    fn compounds_are_parenthesised_and_numbered_in_order() {
        assert_eq!(
            sql("status:open OR tag:a AND NOT acknowledged:true"),
            (
                "(status = $1 OR (LOWER(tags) LIKE LOWER($2) ESCAPE '\\' AND NOT (acknowledged = $3)))"
                    .into(),
                vec![text("open"), text("%\"a\"%"), SqlValue::Bool(true)]
            )
        );
        let (s, params) = to_sql(&parse("(count>1 OR count<0) tinyId:4").unwrap(), 3);
        assert_eq!(s, "((count > $3 OR count < $4) AND tiny_id = $5)");
        assert_eq!(
            params,
            vec![SqlValue::Int(1), SqlValue::Int(0), SqlValue::Int(4)]
        );
    }

    #[test]
    fn impossible_terms_match_nothing() {
        let t = |field, op, value: &str| {
            Query::Term(Term {
                field,
                op,
                value: value.into(),
            })
        };
        for q in [
            t(Field::Tag, Op::Lt, "a"),
            t(Field::Responders, Op::Ge, "a"),
            t(Field::Count, Op::Eq, "many"),
            t(Field::Count, Op::Contains, "1"),
            t(Field::Snoozed, Op::Eq, "maybe"),
            t(Field::Acknowledged, Op::Contains, "true"),
        ] {
            assert_eq!(to_sql(&q, 1), (NOTHING.into(), vec![]), "{q:?}");
        }
        // Unparseable but meaningful combinations still render.
        assert_eq!(
            to_sql(&t(Field::Alias, Op::Gt, "m"), 1),
            ("alias > $1".into(), vec![text("m")])
        );
        assert_eq!(
            to_sql(&t(Field::Tag, Op::Contains, "pro"), 1).1,
            vec![text("%pro%")]
        );
    }

    /// The SQL against a real SQLite, so LIKE escaping, JSON matching and NOT are checked
    /// by a database rather than by string comparison alone.
    mod sqlite {
        use super::*;
        use sqlx::sqlite::SqlitePoolOptions;

        struct Row {
            alias: &'static str,
            status: &'static str,
            acknowledged: bool,
            tags: &'static str,
            responders: &'static str,
            created_at: i64,
            integration_name: Option<&'static str>,
            message: &'static str,
        }

        const ROWS: &[Row] = &[
            Row {
                alias: "a1",
                status: "open",
                acknowledged: false,
                tags: r#"["prod","db"]"#,
                responders: r#"[{"type":"team","id":"t1"}]"#,
                created_at: 100,
                integration_name: Some("Grafana"),
                message: "Disk 50% full",
            },
            Row {
                alias: "a2",
                status: "closed",
                acknowledged: true,
                tags: r#"["production","say \"hi\""]"#,
                responders: r#"[{"type":"user","id":"u1"}]"#,
                created_at: 200,
                integration_name: None,
                message: "CPU high",
            },
            Row {
                alias: "a3",
                status: "open",
                acknowledged: true,
                tags: r#"["Prod"]"#,
                responders: "[]",
                created_at: 300,
                integration_name: Some("api"),
                message: "disk 5 full_",
            },
        ];

        async fn matching(q: &str) -> Vec<String> {
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect("sqlite::memory:")
                .await
                .unwrap();
            sqlx::query(
                "CREATE TABLE alerts (alias TEXT NOT NULL, status TEXT NOT NULL, \
                 acknowledged BOOLEAN NOT NULL, tags TEXT NOT NULL, responders TEXT NOT NULL, \
                 created_at BIGINT NOT NULL, integration_name TEXT, message TEXT NOT NULL)",
            )
            .execute(&pool)
            .await
            .unwrap();
            for r in ROWS {
                sqlx::query("INSERT INTO alerts VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                    .bind(r.alias)
                    .bind(r.status)
                    .bind(r.acknowledged)
                    .bind(r.tags)
                    .bind(r.responders)
                    .bind(r.created_at)
                    .bind(r.integration_name)
                    .bind(r.message)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            let (cond, params) = to_sql(&parse(q).unwrap(), 1);
            let stmt = format!("SELECT alias FROM alerts WHERE {cond} ORDER BY alias");
            // The condition holds only placeholders and fixed SQL; every value is bound.
            let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(stmt));
            for p in params {
                query = match p {
                    SqlValue::Text(s) => query.bind(s),
                    SqlValue::Int(n) => query.bind(n),
                    SqlValue::Bool(b) => query.bind(b),
                };
            }
            query.fetch_all(&pool).await.unwrap()
        }

        #[tokio::test]
        async fn queries_select_the_expected_alerts() {
            for (q, expected) in [
                ("", &["a1", "a2", "a3"][..]),
                ("status:open", &["a1", "a3"]),
                ("status!=open", &["a2"]),
                ("acknowledged:true", &["a2", "a3"]),
                ("NOT acknowledged:true", &["a1"]),
                ("tag:prod", &["a1", "a3"]),
                ("tag:production", &["a2"]),
                (r#"tag:"say \"hi\"""#, &["a2"]),
                ("tag:db OR tag:production", &["a1", "a2"]),
                ("responders:t1", &["a1"]),
                ("responders:team", &[]),
                ("createdAt>=200", &["a2", "a3"]),
                ("createdAt>100 createdAt<300", &["a2"]),
                ("disk", &["a1", "a3"]),
                ("\"50%\"", &["a1"]),
                ("message:full_", &["a3"]),
                ("message:5_", &[]),
                ("integration.name=Grafana", &["a1"]),
                ("NOT integration.name=Grafana", &["a2", "a3"]),
                ("status:closed OR tag:db AND acknowledged:true", &["a2"]),
                (
                    "(status:closed OR tag:db) AND NOT acknowledged:true",
                    &["a1"],
                ),
            ] {
                assert_eq!(matching(q).await, expected, "{q}");
            }
        }
    }
}
