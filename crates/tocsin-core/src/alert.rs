//! Alerts as Opsgenie's Alert API v2 defines them: the create payload with Opsgenie's limits
//! (truncating where Opsgenie and real clients expect it, refusing only what Opsgenie refuses),
//! priorities, responders, and the action names request statuses report.

use crate::validation::Problems;
use serde_json::{Map, Value};

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
    adjustments.push(format!(
        "{field} was longer than {max} characters and was truncated"
    ));
    s.chars().take(max).collect()
}

fn string_field(body: &Map<String, Value>, field: &str, problems: &mut Problems) -> Option<String> {
    match body.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        Some(_) => {
            problems.add(field, "must be a string");
            None
        }
    }
}

fn string_list(body: &Map<String, Value>, field: &str, problems: &mut Problems) -> Vec<String> {
    match body.get(field) {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .filter(|s| !s.trim().is_empty())
            .collect(),
        // Some senders give a single string.
        Some(Value::String(s)) if !s.trim().is_empty() => vec![s.clone()],
        Some(_) => {
            problems.add(field, "must be a list of strings");
            vec![]
        }
    }
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
        let name = get("name").or_else(|| get("username"));
        if id.is_none() && name.is_none() {
            problems.add(format!("{field}[{i}]"), "needs an id, a name or a username");
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

impl NewAlert {
    /// Checks a create body as Opsgenie does: `message` is required; over-long text is
    /// truncated and extra tags, actions and details are dropped, each noted in `adjustments`.
    pub fn parse(body: &Value) -> Result<NewAlert, Problems> {
        let mut problems = Problems::new();
        let empty = Map::new();
        let body = match body {
            Value::Object(o) => o,
            Value::Null => &empty,
            _ => return Err(Problems::single("body", "must be a JSON object")),
        };
        let mut adj = Vec::new();
        let message = string_field(body, "message", &mut problems).unwrap_or_default();
        let message = if message.trim().is_empty() {
            problems.add("message", "Message can not be empty.");
            String::new()
        } else {
            truncate("message", message.trim(), MESSAGE_MAX, &mut adj)
        };
        let alias = string_field(body, "alias", &mut problems).filter(|a| !a.is_empty());
        if let Some(a) = &alias
            && a.chars().count() > ALIAS_MAX
        {
            problems.add("alias", format!("must be at most {ALIAS_MAX} characters"));
        }
        let description = string_field(body, "description", &mut problems)
            .map(|d| truncate("description", &d, DESCRIPTION_MAX, &mut adj))
            .unwrap_or_default();
        let responders = parse_responders(body.get("responders"), "responders", &mut problems);
        let visible_to = parse_responders(body.get("visibleTo"), "visibleTo", &mut problems);
        let mut actions = string_list(body, "actions", &mut problems);
        if actions.len() > ACTIONS_MAX {
            adj.push(format!(
                "only the first {ACTIONS_MAX} of {} actions were kept",
                actions.len()
            ));
            actions.truncate(ACTIONS_MAX);
        }
        let actions = actions
            .iter()
            .map(|a| truncate("an action", a, ACTION_MAX, &mut adj))
            .collect();
        let mut tags: Vec<String> = Vec::new();
        for t in string_list(body, "tags", &mut problems) {
            let t = truncate("a tag", t.trim(), TAG_MAX, &mut adj);
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
        let mut details = Vec::new();
        match body.get("details") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                let mut total = 0;
                for (k, v) in map {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let size = k.chars().count() + v.chars().count();
                    if total + size > DETAILS_MAX {
                        adj.push(format!(
                            "details beyond {DETAILS_MAX} characters in total were dropped"
                        ));
                        break;
                    }
                    total += size;
                    details.push((k.clone(), v));
                }
            }
            Some(_) => problems.add("details", "must be an object of string values"),
        }
        let entity = string_field(body, "entity", &mut problems)
            .map(|e| truncate("entity", &e, ENTITY_MAX, &mut adj))
            .unwrap_or_default();
        let source = string_field(body, "source", &mut problems)
            .filter(|s| !s.trim().is_empty())
            .map(|s| truncate("source", &s, SOURCE_MAX, &mut adj));
        let priority = match string_field(body, "priority", &mut problems) {
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
        let user = string_field(body, "user", &mut problems)
            .filter(|s| !s.is_empty())
            .map(|u| truncate("user", &u, USER_MAX, &mut adj));
        let note = string_field(body, "note", &mut problems)
            .filter(|s| !s.is_empty())
            .map(|n| truncate("note", &n, NOTE_MAX, &mut adj));
        problems.into_result()?;
        Ok(NewAlert {
            message,
            alias,
            description,
            responders,
            visible_to,
            actions,
            tags,
            details,
            entity,
            source,
            priority,
            user,
            note,
            adjustments: adj,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
