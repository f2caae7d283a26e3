//! Opsgenie's alert `query` syntax (`status:open AND tag:prod`), parsed into a small AST.
//! The store renders the AST as SQL and the server turns a `SearchError` into a 422 that
//! says where the query went wrong; this module knows only the grammar and the value rules.
//!
//! Choices made where Opsgenie's behaviour is unspecified or out of reach:
//! - A bare word or quoted phrase (`disk`, `"disk full"`) means "the message contains it".
//!   Opsgenie searches free text across many fields; the message is what such searches aim at,
//!   and one column keeps the SQL simple and predictable.
//! - `:` means "contains" for the prose fields `message` and `description` and "equals" for
//!   every other field; `=` always means "equals"; `field!=value` is `NOT field=value`.
//! - Equality is exact and case-sensitive, but `status`, `priority` and the boolean fields are
//!   normalised here (`OPEN` → `open`, `p1` → `P1`, `TRUE` → `true`), so for them it is
//!   case-insensitive in effect.
//! - `AND`, `OR`, `NOT` and field names are case-insensitive. To search for a keyword as text,
//!   quote it. Adjacent terms are ANDed. Precedence: `NOT`, then `AND`, then `OR`.
//! - Whitespace may follow an operator (`status: open`), as people often type it, but not
//!   precede it: `disk :x` would otherwise be ambiguous between a field and free text.
//! - Inside double quotes `\"` and `\\` are escapes; any other backslash stays as written, so
//!   Windows paths and regex-looking text survive unescaped.
//! - `createdAt`/`updatedAt` take epoch milliseconds, an RFC 3339 time or a `YYYY-MM-DD` date
//!   (midnight UTC); all become epoch milliseconds.
//! - Nesting (parentheses plus `NOT`) stops at [`MAX_DEPTH`] and a query at [`MAX_TERMS`]
//!   terms, so neither the parser nor the SQL renderer can be driven into a stack overflow or
//!   an unbounded statement.

use time::format_description::BorrowedFormatItem;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

/// How deeply parentheses and `NOT` may nest.
pub const MAX_DEPTH: usize = 32;
/// How many terms one query may hold.
pub const MAX_TERMS: usize = 256;

/// Renders a query back into the syntax: every value quoted, parentheses only where the
/// precedence (`NOT` over `AND` over `OR`) needs them, so `parse(&q.to_string()) == Ok(q)`
/// and the rendering nests no deeper than the text the query was parsed from.
impl std::fmt::Display for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.render(f, 0)
    }
}

impl Query {
    /// `context`: 0 anywhere, 1 as an `OR`'s right side or an `AND`'s left, 2 as an `AND`'s
    /// right side or under `NOT`: an `OR` needs parentheses from 1 on, an `AND` at 2.
    fn render(&self, f: &mut std::fmt::Formatter<'_>, context: u8) -> std::fmt::Result {
        match self {
            Query::Or(a, b) => {
                let wrap = context >= 1;
                if wrap {
                    f.write_str("(")?;
                }
                a.render(f, 0)?;
                f.write_str(" OR ")?;
                b.render(f, 1)?;
                if wrap {
                    f.write_str(")")?;
                }
                Ok(())
            }
            Query::And(a, b) => {
                let wrap = context >= 2;
                if wrap {
                    f.write_str("(")?;
                }
                a.render(f, 1)?;
                f.write_str(" AND ")?;
                b.render(f, 2)?;
                if wrap {
                    f.write_str(")")?;
                }
                Ok(())
            }
            Query::Not(a) => {
                f.write_str("NOT ")?;
                a.render(f, 2)
            }
            Query::All => Ok(()),
            Query::Term(t) => {
                let op = match t.op {
                    Op::Eq => "=",
                    Op::Contains => ":",
                    Op::Lt => "<",
                    Op::Gt => ">",
                    Op::Le => "<=",
                    Op::Ge => ">=",
                };
                let value = t.value.replace('\\', r"\\").replace('"', "\\\"");
                write!(f, "{}{op}\"{value}\"", t.field.name())
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    And(Box<Query>, Box<Query>),
    Or(Box<Query>, Box<Query>),
    Not(Box<Query>),
    Term(Term),
    /// The empty query: every alert.
    All,
}

/// One comparison. The parser normalises `value`: `open`/`closed` for status, `true`/`false`
/// for the booleans, `P1`..`P5` for priority, and for `tinyId`, `count`, `createdAt` and
/// `updatedAt` a string of ASCII digits that fits an `i64` (times in epoch milliseconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    pub field: Field,
    pub op: Op,
    pub value: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Eq,
    Contains,
    Lt,
    Gt,
    Le,
    Ge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    Status,
    Acknowledged,
    Snoozed,
    IsSeen,
    Priority,
    Tag,
    Alias,
    Message,
    Description,
    Source,
    Owner,
    Teams,
    Responders,
    IntegrationName,
    IntegrationType,
    TinyId,
    Entity,
    CreatedAt,
    UpdatedAt,
    Count,
}

/// What a field's values look like, which decides how they are checked and which operators apply.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Status,
    Priority,
    /// Free prose, where `:` means "contains".
    Prose,
    Text,
    Number,
    Time,
}

/// Every spelling a query may use, canonical name first for each field.
const NAMES: &[(&str, Field)] = &[
    ("status", Field::Status),
    ("acknowledged", Field::Acknowledged),
    ("snoozed", Field::Snoozed),
    ("isSeen", Field::IsSeen),
    ("priority", Field::Priority),
    ("tag", Field::Tag),
    ("tags", Field::Tag),
    ("alias", Field::Alias),
    ("message", Field::Message),
    ("description", Field::Description),
    ("source", Field::Source),
    ("owner", Field::Owner),
    ("teams", Field::Teams),
    ("responders", Field::Responders),
    ("integration.name", Field::IntegrationName),
    ("integration.type", Field::IntegrationType),
    ("tinyId", Field::TinyId),
    ("entity", Field::Entity),
    ("createdAt", Field::CreatedAt),
    ("updatedAt", Field::UpdatedAt),
    ("count", Field::Count),
];

impl Field {
    pub const ALL: [Field; 20] = [
        Field::Status,
        Field::Acknowledged,
        Field::Snoozed,
        Field::IsSeen,
        Field::Priority,
        Field::Tag,
        Field::Alias,
        Field::Message,
        Field::Description,
        Field::Source,
        Field::Owner,
        Field::Teams,
        Field::Responders,
        Field::IntegrationName,
        Field::IntegrationType,
        Field::TinyId,
        Field::Entity,
        Field::CreatedAt,
        Field::UpdatedAt,
        Field::Count,
    ];

    /// The name as Opsgenie spells it in queries and JSON.
    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("", |(name, _)| name)
    }

    /// Case-insensitive, accepting `tags` for `tag`.
    pub fn from_name(name: &str) -> Option<Field> {
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, f)| *f)
    }

    /// Whether `<`, `>`, `<=` and `>=` apply.
    pub fn is_ordered(self) -> bool {
        matches!(self.kind(), Kind::Number | Kind::Time)
    }

    fn kind(self) -> Kind {
        match self {
            Field::Status => Kind::Status,
            Field::Acknowledged | Field::Snoozed | Field::IsSeen => Kind::Bool,
            Field::Priority => Kind::Priority,
            Field::Message | Field::Description => Kind::Prose,
            Field::Tag
            | Field::Alias
            | Field::Source
            | Field::Owner
            | Field::Teams
            | Field::Responders
            | Field::IntegrationName
            | Field::IntegrationType
            | Field::Entity => Kind::Text,
            Field::TinyId | Field::Count => Kind::Number,
            Field::CreatedAt | Field::UpdatedAt => Kind::Time,
        }
    }
}

/// Where a query went wrong. `position` counts characters (not bytes) from 0, so it lines up
/// with what the user typed whatever the script.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("at character {position}: {message}")]
pub struct SearchError {
    pub position: usize,
    pub message: String,
}

/// Parses an Opsgenie `query`; empty or blank means [`Query::All`].
pub fn parse(input: &str) -> Result<Query, SearchError> {
    let mut p = Parser {
        chars: input.chars().collect(),
        pos: 0,
        depth: 0,
        terms: 0,
    };
    // A control character (NUL, say) is in no alert's text: PostgreSQL refuses NUL in text
    // outright, and SQLite's pattern would end at it and match everything.
    if let Some(at) = p
        .chars
        .iter()
        .position(|c| c.is_control() && !c.is_whitespace())
    {
        return Err(p.error_at(
            at,
            format!(
                "a control character (U+{:04X}) cannot be searched for",
                p.chars[at] as u32
            ),
        ));
    }
    p.skip_ws();
    if p.at_end() {
        return Ok(Query::All);
    }
    let q = p.parse_or(Ctx::Start)?;
    // parse_or stops only at the end or before a `)`, and a `)` here closes nothing.
    if !p.at_end() {
        return Err(p.error_at(p.pos, "unmatched `)`: there is no `(` for it to close"));
    }
    Ok(q)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Keyword {
    And,
    Or,
    Not,
}

impl Keyword {
    fn name(self) -> &'static str {
        match self {
            Keyword::And => "AND",
            Keyword::Or => "OR",
            Keyword::Not => "NOT",
        }
    }
}

/// What preceded the term being parsed, so that a missing term is explained in those words.
#[derive(Clone, Copy)]
enum Ctx {
    Start,
    Group,
    After(Keyword),
}

impl Ctx {
    fn expected(self) -> String {
        match self {
            Ctx::Start => "expected a search term".into(),
            Ctx::Group => "expected a search term inside `(`".into(),
            Ctx::After(kw) => format!("expected a search term after `{}`", kw.name()),
        }
    }
}

/// The operator as typed; `:` and `=` differ only for prose fields.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sym {
    Colon,
    Equals,
    NotEquals,
    Lt,
    Gt,
    Le,
    Ge,
}

impl Sym {
    fn text(self) -> &'static str {
        match self {
            Sym::Colon => ":",
            Sym::Equals => "=",
            Sym::NotEquals => "!=",
            Sym::Lt => "<",
            Sym::Gt => ">",
            Sym::Le => "<=",
            Sym::Ge => ">=",
        }
    }
}

fn is_operator_char(c: char) -> bool {
    matches!(c, ':' | '=' | '!' | '<' | '>')
}

/// Characters that end an unquoted value.
fn ends_value(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '"')
}

/// Characters that end a field name, keyword or bare word.
fn ends_word(c: char) -> bool {
    ends_value(c) || is_operator_char(c)
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
    terms: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn error_at(&self, position: usize, message: impl Into<String>) -> SearchError {
        SearchError {
            position,
            message: message.into(),
        }
    }

    fn describe_here(&self) -> String {
        match self.peek() {
            None => "end of query".into(),
            Some(c) => format!("`{c}`"),
        }
    }

    /// The keyword starting here, with its length. A keyword directly followed by an operator
    /// is a (wrong) field name instead, so `and:x` reports an unknown field, not a stray `AND`.
    fn keyword(&self) -> Option<(Keyword, usize)> {
        let len = self.chars[self.pos.min(self.chars.len())..]
            .iter()
            .take_while(|c| !ends_word(**c))
            .count();
        if !(2..=3).contains(&len) || self.peek_at(len).is_some_and(is_operator_char) {
            return None;
        }
        let word: String = self.chars[self.pos..self.pos + len].iter().collect();
        let kw = [Keyword::And, Keyword::Or, Keyword::Not]
            .into_iter()
            .find(|kw| kw.name().eq_ignore_ascii_case(&word))?;
        Some((kw, len))
    }

    fn enter(&mut self, at: usize) -> Result<(), SearchError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error_at(
                at,
                format!("the query nests deeper than {MAX_DEPTH} levels of parentheses and NOT"),
            ));
        }
        self.depth += 1;
        Ok(())
    }

    fn parse_or(&mut self, ctx: Ctx) -> Result<Query, SearchError> {
        let mut left = self.parse_and(ctx)?;
        while let Some((Keyword::Or, len)) = self.keyword() {
            self.pos += len;
            let right = self.parse_and(Ctx::After(Keyword::Or))?;
            left = Query::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    /// Leaves the position on `OR`, `)` or the end, after skipping whitespace.
    fn parse_and(&mut self, ctx: Ctx) -> Result<Query, SearchError> {
        let mut left = self.parse_unary(ctx)?;
        loop {
            self.skip_ws();
            let right = match self.keyword() {
                Some((Keyword::Or, _)) => break,
                Some((Keyword::And, len)) => {
                    self.pos += len;
                    self.parse_unary(Ctx::After(Keyword::And))?
                }
                _ if self.at_end() || self.peek() == Some(')') => break,
                // Adjacent terms narrow the search, which is what someone typing
                // `disk full` into a search box means.
                _ => self.parse_unary(Ctx::Start)?,
            };
            left = Query::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn parse_unary(&mut self, ctx: Ctx) -> Result<Query, SearchError> {
        self.skip_ws();
        let start = self.pos;
        match self.keyword() {
            Some((Keyword::Not, len)) => {
                self.enter(start)?;
                self.pos += len;
                let inner = self.parse_unary(Ctx::After(Keyword::Not))?;
                self.depth -= 1;
                return Ok(Query::Not(Box::new(inner)));
            }
            Some((kw, _)) => {
                let message = match ctx {
                    Ctx::After(_) => format!("{}, found `{}`", ctx.expected(), kw.name()),
                    Ctx::Start | Ctx::Group => {
                        format!("`{}` needs a search term on its left", kw.name())
                    }
                };
                return Err(self.error_at(start, message));
            }
            None => {}
        }
        match self.peek() {
            None | Some(')') => Err(self.error_at(
                start,
                format!("{}, found {}", ctx.expected(), self.describe_here()),
            )),
            Some('(') => {
                self.enter(start)?;
                self.pos += 1;
                let inner = self.parse_or(Ctx::Group)?;
                if self.peek() != Some(')') {
                    return Err(self.error_at(start, "this `(` is never closed: expected `)`"));
                }
                self.pos += 1;
                self.depth -= 1;
                Ok(inner)
            }
            Some(_) => self.parse_term(),
        }
    }

    fn parse_term(&mut self) -> Result<Query, SearchError> {
        let start = self.pos;
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(self.error_at(
                start,
                format!("a query may hold at most {MAX_TERMS} search terms"),
            ));
        }
        if self.peek() == Some('"') {
            let text = self.quoted()?;
            self.end_of_value()?;
            return Ok(free_text(text));
        }
        let name: String = self.take_while(|c| !ends_word(c));
        if name.is_empty() {
            return Err(self.error_at(
                start,
                format!("expected a field name before {}", self.describe_here()),
            ));
        }
        let op_at = self.pos;
        let Some(sym) = self.operator()? else {
            self.end_of_value()?;
            self.no_wildcard(&name, start)?;
            return Ok(free_text(name));
        };
        let field =
            Field::from_name(&name).ok_or_else(|| self.error_at(start, unknown_field(&name)))?;
        let op = match sym {
            Sym::Colon if field.kind() == Kind::Prose => Op::Contains,
            Sym::Colon | Sym::Equals | Sym::NotEquals => Op::Eq,
            Sym::Lt => Op::Lt,
            Sym::Gt => Op::Gt,
            Sym::Le => Op::Le,
            Sym::Ge => Op::Ge,
        };
        if !matches!(op, Op::Eq | Op::Contains) && !field.is_ordered() {
            return Err(self.error_at(
                op_at,
                format!(
                    "`{}` compares only createdAt, updatedAt, tinyId and count; \
                     match `{}` with `:`, `=` or `!=`",
                    sym.text(),
                    field.name()
                ),
            ));
        }
        let (raw, value_at) = self.value(field, sym)?;
        let value = normalise(field, &raw).map_err(|m| self.error_at(value_at, m))?;
        let term = Query::Term(Term { field, op, value });
        Ok(if sym == Sym::NotEquals {
            Query::Not(Box::new(term))
        } else {
            term
        })
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> String {
        let start = self.pos;
        while self.peek().is_some_and(&keep) {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn operator(&mut self) -> Result<Option<Sym>, SearchError> {
        let (sym, len) = match (self.peek(), self.peek_at(1)) {
            (Some(':'), _) => (Sym::Colon, 1),
            (Some('='), _) => (Sym::Equals, 1),
            (Some('!'), Some('=')) => (Sym::NotEquals, 2),
            (Some('!'), _) => {
                return Err(self.error_at(
                    self.pos,
                    "expected `!=`; a lone `!` is not an operator (quote text that contains it)",
                ));
            }
            (Some('<'), Some('=')) => (Sym::Le, 2),
            (Some('<'), _) => (Sym::Lt, 1),
            (Some('>'), Some('=')) => (Sym::Ge, 2),
            (Some('>'), _) => (Sym::Gt, 1),
            _ => return Ok(None),
        };
        self.pos += len;
        Ok(Some(sym))
    }

    /// The raw value after an operator, and where it starts.
    fn value(&mut self, field: Field, sym: Sym) -> Result<(String, usize), SearchError> {
        let op_end = self.pos;
        self.skip_ws();
        let at = self.pos;
        let expected = format!("expected a value after `{}{}`", field.name(), sym.text());
        match self.peek() {
            None | Some(')') => {
                return Err(
                    self.error_at(at, format!("{expected}, found {}", self.describe_here()))
                );
            }
            Some('(') => {
                return Err(self.error_at(
                    at,
                    format!(
                        "{expected}, found `(`; grouped values are not supported, \
                         write `{0}{1}a OR {0}{1}b`",
                        field.name(),
                        sym.text()
                    ),
                ));
            }
            Some('"') => {
                let v = self.quoted()?;
                self.end_of_value()?;
                return Ok((v, at));
            }
            Some(_) => {}
        }
        // After a space, `status: AND x` is far more likely a forgotten value than a search
        // for the word "AND"; without the space (`message:and`) the intent is plain.
        if at > op_end
            && let Some((kw, _)) = self.keyword()
        {
            return Err(self.error_at(
                at,
                format!(
                    "{expected}, found `{}`; quote it to match the word",
                    kw.name()
                ),
            ));
        }
        let v = self.take_while(|c| !ends_value(c));
        self.end_of_value()?;
        self.no_wildcard(&v, at)?;
        Ok((v, at))
    }

    /// Refuses a `*` in an unquoted value or word that starts at `at`: Opsgenie's searches
    /// take it as a wildcard, which Tocsin does not support, and read as a literal `*` it
    /// would silently match nothing. Quoted, it is a literal `*`.
    fn no_wildcard(&self, text: &str, at: usize) -> Result<(), SearchError> {
        match text.chars().position(|c| c == '*') {
            None => Ok(()),
            Some(i) => Err(self.error_at(
                at + i,
                "`*` wildcards are not supported: `message:` and `description:` (and a bare \
                 word) already match any part of the text, and other fields match whole \
                 values; to search for a literal `*`, quote the value",
            )),
        }
    }

    fn quoted(&mut self) -> Result<String, SearchError> {
        let open = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(self.error_at(
                        open,
                        "this quoted value is never closed: expected a closing `\"`",
                    ));
                }
                Some('"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('\\') if matches!(self.peek_at(1), Some('"' | '\\')) => {
                    out.push(self.chars[self.pos + 1]);
                    self.pos += 2;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// A value must be followed by a separator, so `"a"b` or `ab"c"` is an error rather than
    /// silently read as two terms.
    fn end_of_value(&self) -> Result<(), SearchError> {
        match self.peek() {
            None | Some('(' | ')') => Ok(()),
            Some(c) if c.is_whitespace() => Ok(()),
            Some('"') => Err(self.error_at(
                self.pos,
                "unexpected `\"` inside a value; quote the whole value, e.g. alias:\"a b\"",
            )),
            Some(c) => Err(self.error_at(
                self.pos,
                format!(
                    "expected a space, `(`, `)` or the end of the query after a value, found `{c}`"
                ),
            )),
        }
    }
}

fn free_text(value: String) -> Query {
    Query::Term(Term {
        field: Field::Message,
        op: Op::Contains,
        value,
    })
}

/// A value as quoted back in an error: long values are cut so a 422 stays readable.
fn shown(raw: &str) -> String {
    const MAX: usize = 40;
    if raw.chars().count() <= MAX {
        raw.to_owned()
    } else {
        format!("{}…", raw.chars().take(MAX).collect::<String>())
    }
}

fn unknown_field(name: &str) -> String {
    let known = NAMES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
    let hint = closest_field(name)
        .map(|n| format!(" (did you mean `{n}`?)"))
        .unwrap_or_default();
    format!(
        "unknown field `{}`{hint}; known fields: {known}",
        shown(name)
    )
}

/// The field name within two edits of `name`, for typo hints.
fn closest_field(name: &str) -> Option<&'static str> {
    let typed: Vec<char> = name.to_lowercase().chars().collect();
    NAMES
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| n.len().abs_diff(typed.len()) <= 2)
        .map(|n| {
            (
                edit_distance(&typed, &n.to_lowercase().chars().collect::<Vec<_>>()),
                n,
            )
        })
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitution.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn normalise(field: Field, raw: &str) -> Result<String, String> {
    let name = field.name();
    let one_of = |options: &[&str]| {
        options
            .iter()
            .find(|o| o.eq_ignore_ascii_case(raw))
            .map(|o| (*o).to_owned())
    };
    match field.kind() {
        Kind::Bool => one_of(&["true", "false"])
            .ok_or_else(|| format!("`{name}` takes true or false, not `{}`", shown(raw))),
        Kind::Status => one_of(&["open", "closed"])
            .ok_or_else(|| format!("`{name}` takes open or closed, not `{}`", shown(raw))),
        Kind::Priority => one_of(&["P1", "P2", "P3", "P4", "P5"])
            .ok_or_else(|| format!("`{name}` takes P1, P2, P3, P4 or P5, not `{}`", shown(raw))),
        Kind::Prose | Kind::Text => Ok(raw.to_owned()),
        Kind::Number => digits(raw)
            .ok_or_else(|| format!("`{name}` takes a whole number, not `{}`", shown(raw))),
        Kind::Time => epoch_millis(raw).ok_or_else(|| {
            format!(
                "`{name}` takes epoch milliseconds (1700000000000), an RFC 3339 time \
                 (2024-01-31T12:00:00Z) or a date (2024-01-31) from 1970 on, not `{}`",
                shown(raw)
            )
        }),
    }
}

/// Canonical digits (no sign, no leading zeros) of a value that fits an `i64`.
fn digits(raw: &str) -> Option<String> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse::<i64>().ok().map(|n| n.to_string())
}

fn epoch_millis(raw: &str) -> Option<String> {
    const DATE: &[BorrowedFormatItem<'_>] = format_description!("[year]-[month]-[day]");
    if let Some(d) = digits(raw) {
        return Some(d);
    }
    let t = OffsetDateTime::parse(raw, &Rfc3339)
        .ok()
        .or_else(|| Some(Date::parse(raw, DATE).ok()?.midnight().assume_utc()))?;
    let millis = i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).ok()?;
    // Stored times are never before the epoch, and keeping values to plain digits spares
    // every consumer a sign case.
    (millis >= 0).then(|| millis.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn term(field: Field, op: Op, value: &str) -> Query {
        Query::Term(Term {
            field,
            op,
            value: value.into(),
        })
    }
    fn and(a: Query, b: Query) -> Query {
        Query::And(Box::new(a), Box::new(b))
    }
    fn or(a: Query, b: Query) -> Query {
        Query::Or(Box::new(a), Box::new(b))
    }
    fn not(a: Query) -> Query {
        Query::Not(Box::new(a))
    }
    fn open() -> Query {
        term(Field::Status, Op::Eq, "open")
    }
    fn tag(v: &str) -> Query {
        term(Field::Tag, Op::Eq, v)
    }
    fn msg(v: &str) -> Query {
        term(Field::Message, Op::Contains, v)
    }
    fn err(input: &str) -> SearchError {
        match parse(input) {
            Err(e) => e,
            Ok(q) => panic!("{input:?} parsed as {q:?}"),
        }
    }
    /// The error's position and a fragment its message must contain.
    fn assert_err(input: &str, position: usize, fragment: &str) {
        let e = err(input);
        assert_eq!(e.position, position, "{input:?}: {e}");
        assert!(e.message.contains(fragment), "{input:?}: {e}");
    }

    #[test]
    fn control_characters_are_refused_where_they_are() {
        assert_err("message:\u{0}", 8, "U+0000");
        assert_err("message:\"ab\u{1}cd\"", 11, "control character");
        // Tabs and line ends are white space, not refused.
        assert!(parse("status:open\tAND\nacknowledged:false").is_ok());
    }

    #[test]
    fn wildcards_are_refused_where_they_are_unless_quoted() {
        assert_err("alias:bulk-*", 11, "wildcards are not supported");
        assert_err("status:open AND message: bulk*", 29, "quote the value");
        assert_err("*disk*", 0, "`*` wildcards");
        assert_err("tag:prod NOT owner:a*b", 20, "`*` wildcards");
        // Quoted, a `*` is itself.
        assert_eq!(
            parse("alias:\"bulk-*\""),
            Ok(term(Field::Alias, Op::Eq, "bulk-*"))
        );
        assert_eq!(parse("\"a*b\""), Ok(msg("a*b")));
    }

    #[test]
    fn empty_and_blank_queries_match_everything() {
        assert_eq!(parse(""), Ok(Query::All));
        assert_eq!(parse("  \t\n "), Ok(Query::All));
    }

    #[test]
    fn every_field_name_and_alias_parses_case_insensitively() {
        for (name, field) in NAMES {
            let value = match field.kind() {
                Kind::Bool => "true",
                Kind::Status => "open",
                Kind::Priority => "P2",
                Kind::Number | Kind::Time => "7",
                Kind::Prose | Kind::Text => "x",
            };
            for spelled in [name.to_string(), name.to_uppercase(), name.to_lowercase()] {
                let Query::Term(t) = parse(&format!("{spelled}={value}")).unwrap() else {
                    panic!("{spelled}");
                };
                assert_eq!((t.field, t.op, t.value.as_str()), (*field, Op::Eq, value));
            }
        }
        assert_eq!(Field::from_name("tags"), Some(Field::Tag));
        assert_eq!(Field::Tag.name(), "tag");
        assert_eq!(Field::IntegrationName.name(), "integration.name");
        assert!(
            Field::ALL
                .iter()
                .all(|f| Field::from_name(f.name()) == Some(*f))
        );
    }

    #[test]
    fn colon_contains_prose_but_equals_everything_else() {
        assert_eq!(parse("message:disk"), Ok(msg("disk")));
        assert_eq!(
            parse("description:disk"),
            Ok(term(Field::Description, Op::Contains, "disk"))
        );
        assert_eq!(
            parse("message=disk"),
            Ok(term(Field::Message, Op::Eq, "disk"))
        );
        assert_eq!(parse("alias:disk"), Ok(term(Field::Alias, Op::Eq, "disk")));
        assert_eq!(parse("alias=disk"), Ok(term(Field::Alias, Op::Eq, "disk")));
        assert_eq!(parse("tag:prod"), Ok(tag("prod")));
        assert_eq!(
            parse("integration.type:API"),
            Ok(term(Field::IntegrationType, Op::Eq, "API"))
        );
    }

    #[test]
    fn not_equals_is_not_of_equals() {
        assert_eq!(parse("status!=open"), Ok(not(open())));
        assert_eq!(
            parse("message!=disk"),
            Ok(not(term(Field::Message, Op::Eq, "disk")))
        );
        assert_eq!(parse("NOT status=open"), parse("status!=open"));
    }

    #[test]
    fn comparisons_apply_to_ordered_fields() {
        for (sym, op) in [("<", Op::Lt), (">", Op::Gt), ("<=", Op::Le), (">=", Op::Ge)] {
            for field in [
                Field::CreatedAt,
                Field::UpdatedAt,
                Field::TinyId,
                Field::Count,
            ] {
                assert_eq!(
                    parse(&format!("{}{sym}0042", field.name())),
                    Ok(term(field, op, "42"))
                );
            }
        }
        assert_eq!(parse("count:3"), Ok(term(Field::Count, Op::Eq, "3")));
        assert_eq!(
            parse("tinyId!=3"),
            Ok(not(term(Field::TinyId, Op::Eq, "3")))
        );
    }

    #[test]
    fn comparisons_on_unordered_fields_point_at_the_operator() {
        assert_err("status<open", 6, "compares only createdAt");
        assert_err("tag>=x", 3, "`>=`");
        assert_err("message<=x", 7, "match `message` with `:`");
    }

    #[test]
    fn times_become_epoch_millis() {
        let at = |q: &str| match parse(q).unwrap() {
            Query::Term(t) => t.value,
            other => panic!("{other:?}"),
        };
        assert_eq!(at("createdAt>1700000000000"), "1700000000000");
        assert_eq!(at("createdAt>2023-11-14T22:13:20Z"), "1700000000000");
        assert_eq!(at("updatedAt<2023-11-14T23:13:20.5+01:00"), "1700000000500");
        assert_eq!(at("createdAt>=\"2023-11-14T22:13:20Z\""), "1700000000000");
        assert_eq!(at("createdAt>=2024-01-01"), "1704067200000");
        assert_err("createdAt>yesterday", 10, "RFC 3339");
        assert_err("createdAt>1969-12-31T23:59:59Z", 10, "from 1970 on");
        assert_err("createdAt>-5", 10, "not `-5`");
        assert_err("createdAt>2024-13-01", 10, "RFC 3339");
    }

    #[test]
    fn numbers_must_be_whole_and_fit() {
        assert_err("tinyId:abc", 7, "whole number");
        assert_err("count>1.5", 6, "whole number");
        assert_err("count>99999999999999999999", 6, "whole number");
        assert_err("count>+1", 6, "whole number");
    }

    #[test]
    fn enumerated_values_are_normalised_or_refused() {
        assert_eq!(parse("status:OPEN"), Ok(open()));
        assert_eq!(
            parse("status:Closed"),
            Ok(term(Field::Status, Op::Eq, "closed"))
        );
        assert_eq!(
            parse("priority:p1"),
            Ok(term(Field::Priority, Op::Eq, "P1"))
        );
        assert_eq!(
            parse("acknowledged:TRUE"),
            Ok(term(Field::Acknowledged, Op::Eq, "true"))
        );
        assert_eq!(
            parse("isSeen=false"),
            Ok(term(Field::IsSeen, Op::Eq, "false"))
        );
        assert_eq!(
            parse("snoozed:\"true\""),
            Ok(term(Field::Snoozed, Op::Eq, "true"))
        );
        assert_err("status:resolved", 7, "takes open or closed, not `resolved`");
        assert_err("priority:P6", 9, "P1, P2, P3, P4 or P5");
        assert_err("priority:1", 9, "not `1`");
        assert_err("snoozed:yes", 8, "takes true or false");
        assert_err("acknowledged:\"\"", 13, "takes true or false");
    }

    #[test]
    fn bare_words_and_phrases_search_the_message() {
        assert_eq!(parse("disk"), Ok(msg("disk")));
        assert_eq!(parse("\"disk full\""), Ok(msg("disk full")));
        assert_eq!(parse("disk full"), Ok(and(msg("disk"), msg("full"))));
        assert_eq!(parse("\"AND\""), Ok(msg("AND")));
        assert_eq!(parse("café"), Ok(msg("café")));
    }

    #[test]
    fn quoting_and_escapes() {
        assert_eq!(
            parse(r#"alias:"a b""#),
            Ok(term(Field::Alias, Op::Eq, "a b"))
        );
        assert_eq!(
            parse(r#"alias:"say \"hi\"""#),
            Ok(term(Field::Alias, Op::Eq, r#"say "hi""#))
        );
        assert_eq!(
            parse(r#"source:"C:\temp\\x""#),
            Ok(term(Field::Source, Op::Eq, r"C:\temp\x"))
        );
        assert_eq!(parse(r#"owner:"""#), Ok(term(Field::Owner, Op::Eq, "")));
        assert_eq!(
            parse(r#"alias:"a:b (c) AND d""#),
            Ok(term(Field::Alias, Op::Eq, "a:b (c) AND d"))
        );
        // Unquoted values may hold operator characters; only space, parentheses and `"` end them.
        assert_eq!(
            parse("alias:a:b=c"),
            Ok(term(Field::Alias, Op::Eq, "a:b=c"))
        );
        assert_err(r#"alias:"abc"#, 6, "never closed");
        assert_err(r#"alias:"abc\""#, 6, "never closed");
        assert_err(r#"alias:ab"c""#, 8, "quote the whole value");
        assert_err(r#"ab"c""#, 2, "quote the whole value");
        assert_err(r#"alias:"a"b"#, 9, "found `b`");
        assert_err(r#""a":b"#, 3, "found `:`");
    }

    #[test]
    fn whitespace_may_follow_but_not_precede_an_operator() {
        assert_eq!(parse("status: open"), Ok(open()));
        assert_eq!(
            parse("alias:  \"x y\""),
            Ok(term(Field::Alias, Op::Eq, "x y"))
        );
        assert_err("status :open", 7, "expected a field name before `:`");
    }

    #[test]
    fn and_binds_tighter_than_or() {
        assert_eq!(
            parse("status:open OR tag:a AND tag:b"),
            Ok(or(open(), and(tag("a"), tag("b"))))
        );
        assert_eq!(
            parse("tag:a AND tag:b OR status:open"),
            Ok(or(and(tag("a"), tag("b")), open()))
        );
        assert_eq!(
            parse("tag:a tag:b OR tag:c"),
            Ok(or(and(tag("a"), tag("b")), tag("c")))
        );
        assert_eq!(
            parse("(status:open OR tag:a) AND tag:b"),
            Ok(and(or(open(), tag("a")), tag("b")))
        );
    }

    #[test]
    fn chains_associate_left() {
        assert_eq!(
            parse("tag:a OR tag:b OR tag:c"),
            Ok(or(or(tag("a"), tag("b")), tag("c")))
        );
        assert_eq!(
            parse("tag:a AND tag:b tag:c"),
            Ok(and(and(tag("a"), tag("b")), tag("c")))
        );
    }

    #[test]
    fn not_binds_to_the_next_term_only() {
        assert_eq!(parse("NOT tag:a tag:b"), Ok(and(not(tag("a")), tag("b"))));
        assert_eq!(parse("NOT tag:a OR tag:b"), Ok(or(not(tag("a")), tag("b"))));
        assert_eq!(
            parse("NOT (tag:a OR tag:b)"),
            Ok(not(or(tag("a"), tag("b"))))
        );
        assert_eq!(parse("NOT NOT tag:a"), Ok(not(not(tag("a")))));
        assert_eq!(parse("tag:a NOT tag:b"), Ok(and(tag("a"), not(tag("b")))));
        assert_eq!(parse("NOT(tag:a)"), Ok(not(tag("a"))));
    }

    #[test]
    fn keywords_are_case_insensitive_and_need_a_boundary() {
        assert_eq!(
            parse("status:open and tag:a or not tag:b"),
            parse("status:open AND tag:a OR NOT tag:b")
        );
        assert_eq!(parse("tag:a AnD tag:b"), Ok(and(tag("a"), tag("b"))));
        assert_eq!(parse("ANDROID"), Ok(msg("ANDROID")));
        assert_eq!(parse("message:and"), Ok(msg("and")));
        assert_eq!(parse("(tag:a)OR(tag:b)"), Ok(or(tag("a"), tag("b"))));
        assert_err("and:x", 0, "unknown field `and`");
    }

    #[test]
    fn parentheses_group_and_may_touch_terms() {
        assert_eq!(parse("((status:open))"), Ok(open()));
        assert_eq!(parse("(status:open)tag:a"), Ok(and(open(), tag("a"))));
        assert_eq!(parse("tag:a(tag:b)"), Ok(and(tag("a"), tag("b"))));
        assert_eq!(parse(" ( tag:a ) "), Ok(tag("a")));
    }

    #[test]
    fn unknown_fields_are_named_with_a_hint_and_the_known_list() {
        let e = err("stauts:open");
        assert_eq!(e.position, 0);
        assert!(e.message.starts_with("unknown field `stauts` (did you mean `status`?); known fields: status, acknowledged,"), "{e}");
        assert!(e.message.contains("integration.name"), "{e}");
        let e = err("status:open AND colour:red");
        assert_eq!(e.position, 16);
        assert!(!e.message.contains("did you mean"), "{e}");
        assert_err("tag:a http://example.com", 6, "unknown field `http`");
        assert_err("isseen:true isSen:true", 12, "did you mean `isSeen`?");
    }

    #[test]
    fn missing_values_point_where_the_value_should_be() {
        assert_err(
            "status:",
            7,
            "expected a value after `status:`, found end of query",
        );
        assert_err("status:   ", 10, "found end of query");
        assert_err("(status:)", 8, "found `)`");
        assert_err("tag: AND tag:b", 5, "found `AND`; quote it");
        assert_err(
            "status:(open OR closed)",
            7,
            "grouped values are not supported",
        );
        assert_err("count>=", 7, "after `count>=`");
    }

    #[test]
    fn unbalanced_parentheses_point_at_the_lonely_one() {
        assert_err("(status:open", 0, "never closed");
        assert_err("tag:a ((tag:b) ", 6, "never closed");
        assert_err("status:open)", 11, "unmatched `)`");
        assert_err("(tag:a)) tag:b", 7, "unmatched `)`");
        assert_err(")", 0, "found `)`");
        assert_err("()", 1, "expected a search term inside `(`, found `)`");
        assert_err("(", 1, "inside `(`, found end of query");
    }

    #[test]
    fn dangling_operators_are_refused() {
        assert_err(
            "status:open AND",
            15,
            "expected a search term after `AND`, found end",
        );
        assert_err("status:open OR ", 15, "after `OR`, found end of query");
        assert_err("NOT", 3, "after `NOT`, found end of query");
        assert_err("tag:a NOT", 9, "after `NOT`");
        assert_err("AND tag:a", 0, "`AND` needs a search term on its left");
        assert_err("tag:a OR OR tag:b", 9, "after `OR`, found `OR`");
        assert_err("tag:a AND OR tag:b", 10, "after `AND`, found `OR`");
        assert_err("(OR tag:a)", 1, "`OR` needs a search term on its left");
        assert_err("(tag:a AND)", 10, "after `AND`, found `)`");
        assert_err("NOT )", 4, "after `NOT`, found `)`");
    }

    #[test]
    fn stray_operator_characters_are_refused() {
        assert_err(":open", 0, "expected a field name before `:`");
        assert_err("tag:a =b", 6, "before `=`");
        assert_err("tag:a !b", 6, "before `!`");
        assert_err("wow!", 3, "a lone `!`");
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        assert_err("\"é€\" status:nope", 12, "open or closed");
    }

    #[test]
    fn nesting_is_limited() {
        let nested = |n: usize| format!("{}tag:a{}", "(".repeat(n), ")".repeat(n));
        assert_eq!(parse(&nested(MAX_DEPTH)), Ok(tag("a")));
        assert_err(&nested(MAX_DEPTH + 1), MAX_DEPTH, "deeper than 32");
        let nots = |n: usize| format!("{}tag:a", "NOT ".repeat(n));
        assert!(parse(&nots(MAX_DEPTH)).is_ok());
        assert_err(&nots(MAX_DEPTH + 1), MAX_DEPTH * 4, "deeper than 32");
        // Mixed nesting counts both, and a huge input fails fast instead of overflowing.
        assert_err(
            &"NOT (".repeat(100_000),
            MAX_DEPTH * 5 / 2,
            "deeper than 32",
        );
        assert_err(&"(".repeat(1_000_000), MAX_DEPTH, "deeper than 32");
    }

    #[test]
    fn term_count_is_limited() {
        let terms = |n: usize| vec!["tag:a"; n].join(" OR ");
        assert!(parse(&terms(MAX_TERMS)).is_ok());
        assert_err(
            &terms(MAX_TERMS + 1),
            MAX_TERMS * "tag:a OR ".len(),
            "at most 256",
        );
    }

    #[test]
    fn errors_display_their_position() {
        assert_eq!(
            err("status:nope").to_string(),
            "at character 7: `status` takes open or closed, not `nope`"
        );
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let e = err(&format!("status:{}", "x".repeat(1000)));
        assert!(e.message.len() < 120, "{e}");
        assert!(e.message.contains('…'), "{e}");
    }

    fn leaf() -> impl Strategy<Value = Query> {
        let text_fields = Field::ALL
            .into_iter()
            .filter(|f| f.kind() == Kind::Text)
            .collect::<Vec<_>>();
        let pick = |v: Vec<&'static str>| proptest::sample::select(v).prop_map(String::from);
        let mk = |(field, op, value): (Field, Op, String)| Query::Term(Term { field, op, value });
        prop_oneof![
            (
                proptest::sample::select(vec![Field::Message, Field::Description]),
                proptest::sample::select(vec![Op::Eq, Op::Contains]),
                any::<String>(),
            )
                .prop_map(mk),
            (
                proptest::sample::select(text_fields),
                Just(Op::Eq),
                any::<String>()
            )
                .prop_map(mk),
            (
                proptest::sample::select(vec![Field::Acknowledged, Field::Snoozed, Field::IsSeen]),
                Just(Op::Eq),
                pick(vec!["true", "false"]),
            )
                .prop_map(mk),
            (
                Just(Field::Status),
                Just(Op::Eq),
                pick(vec!["open", "closed"])
            )
                .prop_map(mk),
            (
                Just(Field::Priority),
                Just(Op::Eq),
                pick(vec!["P1", "P2", "P3", "P4", "P5"])
            )
                .prop_map(mk),
            (
                proptest::sample::select(vec![
                    Field::TinyId,
                    Field::Count,
                    Field::CreatedAt,
                    Field::UpdatedAt
                ]),
                proptest::sample::select(vec![Op::Eq, Op::Lt, Op::Gt, Op::Le, Op::Ge]),
                (0..=i64::MAX).prop_map(|n| n.to_string()),
            )
                .prop_map(mk),
        ]
    }

    fn query() -> impl Strategy<Value = Query> {
        leaf().prop_recursive(5, 24, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| and(a, b)),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| or(a, b)),
                inner.prop_map(not),
            ]
        })
    }

    /// Fragments that reach the parser's corners far more often than random text does.
    fn token_soup() -> impl Strategy<Value = String> {
        let token = proptest::sample::select(vec![
            "status",
            "tag",
            "createdAt",
            "count",
            "message",
            ":",
            "=",
            "!=",
            "!",
            "<",
            ">=",
            "open",
            "true",
            "P1",
            "AND",
            "or",
            "not",
            "(",
            ")",
            "\"",
            "\\",
            " ",
            "x",
            "é",
            "2024-01-01",
            "1700000000000",
            "integration.name",
        ]);
        proptest::collection::vec(token, 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn parse_never_panics(input in any::<String>()) {
            let _ = parse(&input);
        }

        #[test]
        fn parse_never_panics_on_syntax_fragments(input in token_soup()) {
            if let Err(e) = parse(&input) {
                prop_assert!(e.position <= input.chars().count());
            }
        }

        #[test]
        fn rendered_queries_parse_back(q in query()) {
            prop_assert_eq!(parse(&q.to_string()), Ok(q));
        }
    }
}
