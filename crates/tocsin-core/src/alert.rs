//! Alerts as Opsgenie's Alert API v2 defines them: the create payload with Opsgenie's limits
//! (truncating where Opsgenie and real clients expect it, refusing only what Opsgenie refuses),
//! priorities, responders, and the action names request statuses report.

use crate::validation::Problems;
use serde_json::Value;

pub const MESSAGE_MAX: usize = 130;
pub const ALIAS_MAX: usize = 512;
pub const DESCRIPTION_MAX: usize = 15_000;
pub const TAGS_MAX: usize = 20;
pub const TAG_MAX: usize = 50;
pub const ACTIONS_MAX: usize = 10;
pub const ACTION_MAX: usize = 50;
pub const DETAILS_MAX: usize = 8_000;
pub const ENTITY_MAX: usize = 512;
pub const SOURCE_MAX: usize = 100;
/// The longest id or name by which an alert request may name a user (an email: 254), team
/// (200), escalation or schedule: a responder, assign's owner, escalate's escalation. Longer
/// names nothing Tocsin accepts, and is refused rather than cut.
pub const REFERENCE_MAX: usize = 254;
pub const USER_MAX: usize = 100;
pub const NOTE_MAX: usize = 25_000;
pub const RESPONDERS_MAX: usize = 50;

/// A responder or visibleTo entry as sent: a type and one of id, name or username.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponderRef {
    /// `team`, `user`, `escalation` or `schedule`, lower-cased.
    pub kind: String,
    pub id: Option<String>,
    pub name: Option<String>,
}

/// A create request after checking and truncation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewAlert {
    pub message: String,
    pub alias: Option<String>,
    pub description: String,
    pub responders: Vec<ResponderRef>,
    pub visible_to: Vec<ResponderRef>,
    pub actions: Vec<String>,
    pub tags: Vec<String>,
    pub details: Vec<(String, String)>,
    pub entity: String,
    pub source: Option<String>,
    pub priority: Priority,
    pub user: Option<String>,
    pub note: Option<String>,
    /// What was shortened or dropped, reported in the request status.
    pub adjustments: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    P1,
    P2,
    #[default]
    P3,
    P4,
    P5,
}

impl Priority {
    pub fn parse(s: &str) -> Option<Priority> {
        Some(match s.trim().to_ascii_uppercase().as_str() {
            "P1" => Priority::P1,
            "P2" => Priority::P2,
            "P3" => Priority::P3,
            "P4" => Priority::P4,
            "P5" => Priority::P5,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Priority::P1 => "P1",
            Priority::P2 => "P2",
            Priority::P3 => "P3",
            Priority::P4 => "P4",
            Priority::P5 => "P5",
        }
    }
}

/// Cuts `s` to `max` characters (not bytes), noting it in `adjustments`.
pub fn truncate(field: &str, s: &str, max: usize, adjustments: &mut Vec<String>) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    // Noted once per field, however many of its items (tags, say) were cut.
    let note = format!("{field} was longer than {max} characters and was truncated");
    if !adjustments.contains(&note) {
        adjustments.push(note);
    }
    s.chars().take(max).collect()
}

/// The `user` of an alert request (a create or any action), cut to `USER_MAX` characters as
/// `truncate` does; create and the actions share it, so each reports the cut alike.
pub fn cut_user(user: String, adjustments: &mut Vec<String>) -> String {
    cut("user", user, USER_MAX, adjustments)
}

/// The `note` of an alert request (a create or any action), cut to `NOTE_MAX` characters as
/// `truncate` does; create and the actions share it, so each reports the cut alike.
pub fn cut_note(note: String, adjustments: &mut Vec<String>) -> String {
    cut("note", note, NOTE_MAX, adjustments)
}

/// Parses responders (or visibleTo): `[{type, id|name|username}]`. Types are matched without
/// regard to case and empty strings are ignored, as the Go SDK sends `"username": ""`.
pub fn parse_responders(
    value: Option<&Value>,
    field: &str,
    problems: &mut Problems,
) -> Vec<ResponderRef> {
    let Some(value) = value else { return vec![] };
    let items = match value {
        Value::Null => return vec![],
        Value::Array(items) => items,
        _ => {
            problems.add(field, "must be a list of {type, id | name | username}");
            return vec![];
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Value::Object(o) = item else {
            problems.add(
                format!("{field}[{i}]"),
                "must be an object {type, id | name | username}",
            );
            continue;
        };
        let get = |k: &str| {
            o.get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let kind = get("type").map(|t| t.to_ascii_lowercase());
        let kind = match kind.as_deref() {
            Some("team" | "user" | "escalation" | "schedule") => kind.expect("matched"),
            Some(other) => {
                problems.add(
                    format!("{field}[{i}].type"),
                    format!("`{other}` is not team, user, escalation or schedule"),
                );
                continue;
            }
            None => {
                problems.add(
                    format!("{field}[{i}].type"),
                    "is required: team, user, escalation or schedule",
                );
                continue;
            }
        };
        let id = get("id");
        let (name_key, name) = match get("name") {
            Some(n) => ("name", Some(n)),
            None => ("username", get("username")),
        };
        if id.is_none() && name.is_none() {
            problems.add(format!("{field}[{i}]"), "needs an id, a name or a username");
            continue;
        }
        // A name is refused when too long rather than cut: cut, it would name someone else.
        let mut too_long = false;
        for (key, v) in [("id", &id), (name_key, &name)] {
            let n = v.as_deref().map_or(0, |v| v.chars().count());
            if n > REFERENCE_MAX {
                problems.add(
                    format!("{field}[{i}].{key}"),
                    format!("is {n} characters long; at most {REFERENCE_MAX} are allowed"),
                );
                too_long = true;
            }
        }
        if too_long {
            continue;
        }
        out.push(ResponderRef { kind, id, name });
    }
    if out.len() > RESPONDERS_MAX {
        problems.add(
            field,
            format!(
                "has {} entries; at most {RESPONDERS_MAX} are allowed",
                out.len()
            ),
        );
    }
    out
}

/// Cuts `s` to `max` characters as `truncate` does, keeping `s` itself when it fits.
fn cut(field: &str, s: String, max: usize, adjustments: &mut Vec<String>) -> String {
    if s.len() <= max || s.chars().count() <= max {
        return s;
    }
    truncate(field, &s, max, adjustments)
}

/// `s` without leading and trailing whitespace, copied only if it had some.
fn trimmed(s: String) -> String {
    match s.trim() {
        t if t.len() == s.len() => s,
        t => t.to_owned(),
    }
}

/// The create body's text fields, in the order they are checked.
const TEXT_FIELDS: [&str; 8] = [
    "message",
    "alias",
    "description",
    "entity",
    "source",
    "priority",
    "user",
    "note",
];

/// A field of the create body that `NewAlert::check` reads, by its exact name.
#[derive(Clone, Copy)]
enum Field {
    Text(usize),
    Actions,
    Tags,
    Details,
    Responders,
    VisibleTo,
}

impl Field {
    fn named(name: &str) -> Option<Field> {
        Some(match name {
            "actions" => Field::Actions,
            "tags" => Field::Tags,
            "details" => Field::Details,
            "responders" => Field::Responders,
            "visibleTo" => Field::VisibleTo,
            _ => Field::Text(TEXT_FIELDS.iter().position(|f| *f == name)?),
        })
    }
}

/// A text field as sent: a string, or a number or boolean (read as its text).
#[derive(Clone, Debug, PartialEq)]
enum Text {
    Is(String),
    Other,
}

/// `actions` or `tags` as sent: a list (its strings and numbers, and the places of any other
/// items, which are refused), or one string.
#[derive(Clone, Debug, PartialEq)]
enum List {
    Items(Vec<String>, Vec<usize>),
    One(String),
    Other,
}

/// `details` as sent: an object, each value read as a string (anything else as its JSON).
#[derive(Clone, Debug, PartialEq)]
enum Details {
    Pairs(Vec<(String, String)>),
    Other,
}

/// The fields of a create body that `NewAlert::check` reads, as sent; `None` where a field is
/// absent or null. Deserialized straight from the request's bytes, it keeps only those fields
/// and moves their strings into the alert, instead of building the whole body as a `Value`
/// and copying each string out of it (issue #5: reading the body was 28% of the event loop's
/// instructions for an alert; this takes 9% off them). `from_value` reads a parsed body the
/// same way; a property test and the `alert_body` fuzz target hold the two together.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlertFields {
    text: [Option<Text>; TEXT_FIELDS.len()],
    actions: Option<List>,
    tags: Option<List>,
    details: Option<Details>,
    responders: Option<Value>,
    visible_to: Option<Value>,
}

impl AlertFields {
    /// Reads a parsed body; `None` for anything but an object (or null, read as `{}`).
    pub fn from_value(body: Value) -> Option<AlertFields> {
        let mut fields = AlertFields::default();
        match body {
            Value::Object(map) => {
                for (name, value) in map {
                    fields.set(&name, value);
                }
            }
            Value::Null => {}
            _ => return None,
        }
        Some(fields)
    }

    /// Keeps `value` if `name` is a field the checks read; a later value replaces an
    /// earlier one, as in a parsed object.
    fn set(&mut self, name: &str, value: Value) {
        if let Some(field) = Field::named(name) {
            self.set_field(field, value);
        }
    }

    fn set_field(&mut self, field: Field, value: Value) {
        // Null reads as absent; responders are read by `parse_responders`, null and all.
        let given = !value.is_null();
        match field {
            Field::Text(i) => {
                self.text[i] = given.then(|| match value {
                    Value::String(s) => Text::Is(s),
                    Value::Number(n) => Text::Is(n.to_string()),
                    Value::Bool(b) => Text::Is(b.to_string()),
                    _ => Text::Other,
                })
            }
            Field::Actions | Field::Tags => {
                let list = given.then(|| match value {
                    Value::Array(items) => {
                        let (mut kept, mut other) = (Vec::with_capacity(items.len()), Vec::new());
                        for (i, v) in items.into_iter().enumerate() {
                            match v {
                                Value::String(s) => kept.push(s),
                                Value::Number(n) => kept.push(n.to_string()),
                                _ => other.push(i),
                            }
                        }
                        List::Items(kept, other)
                    }
                    Value::String(s) => List::One(s),
                    _ => List::Other,
                });
                if matches!(field, Field::Actions) {
                    self.actions = list;
                } else {
                    self.tags = list;
                }
            }
            Field::Details => {
                self.details = given.then(|| match value {
                    Value::Object(map) => Details::Pairs(
                        map.into_iter()
                            .map(|(k, v)| match v {
                                Value::String(s) => (k, s),
                                other => (k, other.to_string()),
                            })
                            .collect(),
                    ),
                    _ => Details::Other,
                })
            }
            Field::Responders => self.responders = Some(value),
            Field::VisibleTo => self.visible_to = Some(value),
        }
    }
}

impl<'de> serde::Deserialize<'de> for AlertFields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// A field's name, matched without copying it.
        struct Name(Option<Field>);

        impl<'de> serde::Deserialize<'de> for Name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct NameVisitor;
                impl serde::de::Visitor<'_> for NameVisitor {
                    type Value = Name;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("a field name")
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Name, E> {
                        Ok(Name(Field::named(v)))
                    }
                }
                d.deserialize_identifier(NameVisitor)
            }
        }

        struct BodyVisitor;
        impl<'de> serde::de::Visitor<'de> for BodyVisitor {
            type Value = AlertFields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<AlertFields, A::Error> {
                let mut fields = AlertFields::default();
                while let Some(Name(field)) = map.next_key()? {
                    // Every value is read as a `Value`, as the whole body once was: a value
                    // the parser refuses (a number out of range) is refused wherever it is.
                    let value: Value = map.next_value()?;
                    if let Some(field) = field {
                        fields.set_field(field, value);
                    }
                }
                Ok(fields)
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<AlertFields, E> {
                Ok(AlertFields::default())
            }
        }
        deserializer.deserialize_any(BodyVisitor)
    }
}

/// A text field's string; a list or an object is a problem.
fn text_field(field: &str, value: Option<Text>, problems: &mut Problems) -> Option<String> {
    match value? {
        Text::Is(s) => Some(s),
        Text::Other => {
            problems.add(field, "must be a string");
            None
        }
    }
}

/// A list field's non-blank strings; anything but a list or one non-blank string is a problem.
fn list_field(field: &str, value: Option<List>, problems: &mut Problems) -> Vec<String> {
    match value {
        None => vec![],
        // An item that is not text (an object, a list, null, true) is refused where it is, as
        // adding tags to an alert refuses it: dropped, it would vanish without a word.
        Some(List::Items(items, other)) => {
            for i in other {
                problems.add(format!("{field}[{i}]"), "must be a string");
            }
            items.into_iter().filter(|s| !s.trim().is_empty()).collect()
        }
        // Some senders give a single string.
        Some(List::One(s)) if !s.trim().is_empty() => vec![s],
        Some(_) => {
            problems.add(field, "must be a list of strings");
            vec![]
        }
    }
}

impl NewAlert {
    /// Checks a create body as Opsgenie does (`check`), from a parsed `Value`.
    pub fn parse(body: &Value) -> Result<NewAlert, Problems> {
        let fields = AlertFields::from_value(body.clone())
            .ok_or_else(|| Problems::single("body", "must be a JSON object"))?;
        NewAlert::check(fields)
    }

    /// Checks a create body as Opsgenie does: `message` is required; over-long text is
    /// truncated and extra tags, actions and details are dropped, each noted in `adjustments`.
    pub fn check(fields: AlertFields) -> Result<NewAlert, Problems> {
        let mut problems = Problems::new();
        let AlertFields {
            text,
            actions,
            tags: sent_tags,
            details,
            responders,
            visible_to,
        } = fields;
        let [
            message,
            alias,
            description,
            entity,
            source,
            priority,
            user,
            note,
        ] = text;
        let mut adj = Vec::new();
        // A message of the wrong type is that problem alone: "can not be empty" would
        // overwrite its reason in the `errors` map, which keeps one reason a field.
        let mistyped = matches!(message, Some(Text::Other));
        let message = text_field("message", message, &mut problems).unwrap_or_default();
        let message = if mistyped {
            String::new()
        } else if message.trim().is_empty() {
            problems.add("message", "Message can not be empty.");
            String::new()
        } else {
            cut("message", trimmed(message), MESSAGE_MAX, &mut adj)
        };
        let alias = text_field("alias", alias, &mut problems).filter(|a| !a.is_empty());
        if let Some(a) = &alias
            && a.chars().count() > ALIAS_MAX
        {
            problems.add("alias", format!("must be at most {ALIAS_MAX} characters"));
        }
        let description = text_field("description", description, &mut problems)
            .map(|d| cut("description", d, DESCRIPTION_MAX, &mut adj))
            .unwrap_or_default();
        let responders = parse_responders(responders.as_ref(), "responders", &mut problems);
        let visible_to = parse_responders(visible_to.as_ref(), "visibleTo", &mut problems);
        let mut actions = list_field("actions", actions, &mut problems);
        if actions.len() > ACTIONS_MAX {
            adj.push(format!(
                "only the first {ACTIONS_MAX} of {} actions were kept",
                actions.len()
            ));
            actions.truncate(ACTIONS_MAX);
        }
        let actions = actions
            .into_iter()
            .map(|a| cut("an action", a, ACTION_MAX, &mut adj))
            .collect();
        let mut tags: Vec<String> = Vec::new();
        for t in list_field("tags", sent_tags, &mut problems) {
            let t = cut("a tag", trimmed(t), TAG_MAX, &mut adj);
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        if tags.len() > TAGS_MAX {
            adj.push(format!(
                "only the first {TAGS_MAX} of {} tags were kept",
                tags.len()
            ));
            tags.truncate(TAGS_MAX);
        }
        let mut kept = Vec::new();
        match details {
            None => {}
            Some(Details::Pairs(pairs)) => {
                let mut total = 0;
                for (k, v) in pairs {
                    let size = k.chars().count() + v.chars().count();
                    if total + size > DETAILS_MAX {
                        adj.push(format!(
                            "details beyond {DETAILS_MAX} characters in total were dropped"
                        ));
                        break;
                    }
                    total += size;
                    kept.push((k, v));
                }
            }
            Some(Details::Other) => problems.add("details", "must be an object of string values"),
        }
        let entity = text_field("entity", entity, &mut problems)
            .map(|e| cut("entity", e, ENTITY_MAX, &mut adj))
            .unwrap_or_default();
        let source = text_field("source", source, &mut problems)
            .filter(|s| !s.trim().is_empty())
            .map(|s| cut("source", s, SOURCE_MAX, &mut adj));
        let priority = match text_field("priority", priority, &mut problems) {
            None => Priority::P3,
            Some(p) if p.trim().is_empty() => Priority::P3,
            Some(p) => Priority::parse(&p).unwrap_or_else(|| {
                problems.add(
                    "priority",
                    format!("`{p}` is not one of P1, P2, P3, P4, P5"),
                );
                Priority::P3
            }),
        };
        let user = text_field("user", user, &mut problems)
            .filter(|s| !s.is_empty())
            .map(|u| cut_user(u, &mut adj));
        let note = text_field("note", note, &mut problems)
            .filter(|s| !s.is_empty())
            .map(|n| cut_note(n, &mut adj));
        problems.into_result()?;
        Ok(NewAlert {
            message,
            alias,
            description,
            responders,
            visible_to,
            actions,
            tags,
            details: kept,
            entity,
            source,
            priority,
            user,
            note,
            adjustments: adj,
        })
    }
}

/// Tags that are configured once and put on alerts later (a heartbeat's `alertTags`):
/// strict where a create body is lenient, since a mistake here would show only on the alert,
/// long after: every item must be a string (another item is refused by its place,
/// `field[i]`), trimmed and not blank. Cut as alert creation cuts them: each to `TAG_MAX`
/// characters, and to the first `TAGS_MAX` distinct tags. Null is no tags.
pub fn configured_tags(field: &str, value: &Value, problems: &mut Problems) -> Vec<String> {
    let items = match value {
        Value::Null => return vec![],
        Value::Array(items) => items,
        _ => {
            problems.add(field, "must be a list of strings");
            return vec![];
        }
    };
    let mut tags: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Value::String(tag) = item else {
            problems.add(format!("{field}[{i}]"), "must be a string");
            continue;
        };
        let tag = tag.trim();
        if tag.is_empty() {
            problems.add(format!("{field}[{i}]"), "must not be empty or only spaces");
            continue;
        }
        let tag = truncate(field, tag, TAG_MAX, &mut Vec::new());
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    tags.truncate(TAGS_MAX);
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn configured_tags_are_strings_trimmed_and_cut_as_alert_tags() {
        let mut problems = Problems::new();
        let long = "y".repeat(60);
        let many: Vec<String> = (0..25).map(|i| format!("t{i}")).collect();
        let tags = configured_tags(
            "alertTags",
            &json!([long, 5, "", " a ", "a", null]),
            &mut problems,
        );
        assert_eq!(tags, vec!["y".repeat(TAG_MAX), "a".to_owned()]);
        let fields: Vec<&str> = problems.0.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["alertTags[1]", "alertTags[2]", "alertTags[5]"]);
        let mut problems = Problems::new();
        assert_eq!(
            configured_tags("alertTags", &json!(many), &mut problems).len(),
            TAGS_MAX
        );
        configured_tags("alertTags", &json!("a"), &mut problems);
        assert_eq!(problems.0.len(), 1);
    }

    #[test]
    fn message_is_required_and_truncated_by_characters() {
        let e = NewAlert::parse(&json!({"message": "  "})).unwrap_err();
        assert_eq!(e.0[0].field, "message");
        let long = "é".repeat(200);
        let a = NewAlert::parse(&json!({"message": long})).unwrap();
        assert_eq!(a.message.chars().count(), 130);
        assert!(a.adjustments[0].contains("truncated"));
        assert_eq!(a.priority, Priority::P3);
    }

    #[test]
    fn real_payloads_are_accepted() {
        // Grafana: many long tags; Alertmanager: a long source; Go SDK: empty usernames.
        let tags: Vec<String> = (0..25)
            .map(|i| format!("tag-{i}-{}", "x".repeat(60)))
            .collect();
        let a = NewAlert::parse(&json!({
            "message": "m", "tags": tags, "source": "s".repeat(300), "priority": "p2",
            "responders": [{"type": "TEAM", "name": "sre", "username": ""}, {"type": "user", "username": "ann@example.com"}],
            "details": {"a": "b", "n": 3}, "unknownField": true,
        }))
        .unwrap();
        assert_eq!(a.tags.len(), 20);
        assert!(a.tags.iter().all(|t| t.chars().count() <= 50));
        assert_eq!(a.source.unwrap().len(), 100);
        assert_eq!(a.priority, Priority::P2);
        assert_eq!(
            a.responders[0],
            ResponderRef {
                kind: "team".into(),
                id: None,
                name: Some("sre".into())
            }
        );
        assert_eq!(
            a.details,
            vec![("a".into(), "b".into()), ("n".into(), "3".into())]
        );
    }

    #[test]
    fn what_opsgenie_refuses_is_refused_by_field() {
        let e = NewAlert::parse(&json!({"message": "m", "priority": "P9", "alias": "a".repeat(600), "responders": [{"type": "robot", "id": "x"}]}))
            .unwrap_err();
        let fields: Vec<&str> = e.0.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, vec!["alias", "responders[0].type", "priority"]);
    }

    /// A responder's or an action's reference to someone is refused when too long, never cut.
    #[test]
    fn over_long_responder_names_are_refused_by_place() {
        // The longest names Tocsin takes: a 200-character team name, a 254-character email.
        let team = "t".repeat(200);
        let email = format!("{}@example.com", "u".repeat(REFERENCE_MAX - 12));
        assert!(NewAlert::parse(&json!({"message": "m", "responders": [{"type": "team", "name": team}, {"type": "user", "username": email}]})).is_ok());
        let long = "n".repeat(REFERENCE_MAX + 1);
        let e = NewAlert::parse(&json!({"message": "m", "responders": [{"type": "team", "name": "ops"}, {"type": "user", "username": long}]}))
            .unwrap_err();
        let fields: Vec<(&str, &str)> =
            e.0.iter()
                .map(|f| (f.field.as_str(), f.reason.as_str()))
                .collect();
        assert_eq!(
            fields,
            vec![(
                "responders[1].username",
                "is 255 characters long; at most 254 are allowed"
            )]
        );
    }

    /// A list item that is not text is refused where it is, by both readers of a body, as
    /// adding tags refuses it; never dropped without a word.
    #[test]
    fn list_items_that_are_not_text_are_refused_where_they_are() {
        let text =
            r#"{"message": "m", "tags": ["a", 7, {"x": 1}, null], "actions": [["Restart"]]}"#;
        let from_value = NewAlert::parse(&serde_json::from_str(text).unwrap()).unwrap_err();
        assert_eq!(from_bytes(text).unwrap_err(), from_value);
        let fields: Vec<(&str, &str)> = from_value
            .0
            .iter()
            .map(|f| (f.field.as_str(), f.reason.as_str()))
            .collect();
        assert_eq!(
            fields,
            vec![
                ("actions[0]", "must be a string"),
                ("tags[2]", "must be a string"),
                ("tags[3]", "must be a string")
            ]
        );
    }

    /// What the request path does: the fields straight from the body's bytes.
    fn from_bytes(text: &str) -> Result<NewAlert, Problems> {
        NewAlert::check(serde_json::from_str::<AlertFields>(text).expect("valid JSON"))
    }

    #[test]
    fn the_body_is_read_from_its_bytes_as_from_its_value() {
        // A later duplicate wins; escaped names are matched; numbers and booleans are text;
        // a detail that is not a string is kept as its JSON; unknown fields are ignored.
        let text = r#"{"message": "first", "mess\u0061ge": " second ", "tags": ["a", 7, " "],
            "details": {"z": {"k": [1, 2.5]}, "a": true, "a": "again"}, "priority": "P1",
            "alias": 12, "user": false, "unknown": {"deep": [[1e300]]}, "note": null}"#;
        let a = from_bytes(text).unwrap();
        assert_eq!(
            a,
            NewAlert::parse(&serde_json::from_str(text).unwrap()).unwrap()
        );
        assert_eq!(a.message, "second");
        assert_eq!(a.tags, vec!["a", "7"]);
        assert_eq!(
            a.details,
            vec![
                ("a".to_owned(), "again".to_owned()),
                ("z".to_owned(), r#"{"k":[1,2.5]}"#.to_owned())
            ]
        );
        assert_eq!(
            (a.alias.as_deref(), a.user.as_deref()),
            (Some("12"), Some("false"))
        );
        assert_eq!((a.priority, a.note), (Priority::P1, None));
        // `null` is read as `{}`; a string where a list belongs is a one-item list.
        assert_eq!(from_bytes("null").unwrap_err().0[0].field, "message");
        assert_eq!(
            from_bytes(r#"{"message": "m", "actions": "ack"}"#)
                .unwrap()
                .actions,
            vec!["ack"]
        );
    }

    #[test]
    fn a_problem_is_named_by_its_field_in_the_order_of_the_checks() {
        let e = from_bytes(
            r#"{"note": [], "tags": {}, "message": {}, "details": [], "responders": 3, "source": {}}"#,
        )
        .unwrap_err();
        let found: Vec<(&str, &str)> =
            e.0.iter()
                .map(|p| (p.field.as_str(), p.reason.as_str()))
                .collect();
        assert_eq!(
            found,
            vec![
                ("message", "must be a string"),
                (
                    "responders",
                    "must be a list of {type, id | name | username}"
                ),
                ("tags", "must be a list of strings"),
                ("details", "must be an object of string values"),
                ("source", "must be a string"),
                ("note", "must be a string"),
            ]
        );
    }

    #[test]
    fn text_that_fits_is_kept_and_only_what_is_over_is_cut() {
        let a = from_bytes(&format!(
            r#"{{"message": "{}", "description": "{}", "tags": ["{}", "{}"]}}"#,
            "m".repeat(MESSAGE_MAX),
            "é".repeat(DESCRIPTION_MAX),
            "t".repeat(TAG_MAX + 1),
            "u".repeat(TAG_MAX + 1)
        ))
        .unwrap();
        assert_eq!(a.message.len(), MESSAGE_MAX);
        assert_eq!(a.description.chars().count(), DESCRIPTION_MAX);
        assert_eq!(a.tags[0].len(), TAG_MAX);
        // Two tags cut, one note: a request status does not repeat itself per tag.
        assert_eq!(
            a.adjustments,
            vec![format!(
                "a tag was longer than {TAG_MAX} characters and was truncated"
            )]
        );
    }

    mod both_readings {
        use super::*;
        use proptest::prelude::*;

        fn value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                (-1e6f64..1e6).prop_map(Value::from),
                "[ a-zé\\\"P1-5]{0,8}".prop_map(Value::from),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                    prop::collection::vec(("[a-z]{1,2}", inner), 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// An object's text with the given members in order, duplicates included (which a
        /// `Value` cannot hold).
        fn object(members: &[(String, Value)]) -> String {
            let members: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
                .collect();
            format!("{{{}}}", members.join(","))
        }

        fn name() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(
                    TEXT_FIELDS
                        .iter()
                        .chain(&["actions", "tags", "details", "responders", "visibleTo"])
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                ),
                "[a-zA-Z]{1,10}",
            ]
        }

        proptest! {
            #[test]
            fn the_bytes_and_the_value_read_alike(members in prop::collection::vec((name(), value()), 0..12)) {
                let text = object(&members);
                let parsed: Value = serde_json::from_str(&text).unwrap();
                let fields: AlertFields = serde_json::from_str(&text).unwrap();
                prop_assert_eq!(&fields, &AlertFields::from_value(parsed.clone()).unwrap());
                prop_assert_eq!(NewAlert::check(fields), NewAlert::parse(&parsed));
            }
        }
    }
}
