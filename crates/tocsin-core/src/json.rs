//! Limits on request JSON that serde does not enforce itself: nesting depth. serde_json stops
//! at 128 levels; no Tocsin or Opsgenie body needs more than a handful, so bodies are refused
//! well before that, by a scan that allocates nothing, before any parse.

/// The deepest nesting of arrays and objects a request body may have. The deepest real
/// body (an alert with `details` or `responders`) has 3 levels.
pub const MAX_DEPTH: usize = 32;

/// A body nested deeper than the limit: where (byte offset) it crossed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the JSON body is nested more than {limit} levels deep (at byte {position}); the limit is {limit} levels of arrays and objects"
)]
pub struct TooDeep {
    pub limit: usize,
    pub position: usize,
}

/// Checks that no array or object in `body` is nested more than `limit` levels deep (a
/// top-level object is level 1). Brackets inside strings do not count. Input that is not
/// JSON passes or fails this scan without panicking; the parser then reports it.
pub fn check_depth(body: &[u8], limit: usize) -> Result<(), TooDeep> {
    scan(body, limit).map(|_| ())
}

/// What `scan` found in a body nested no deeper than its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// A `\u0000` escape, a NUL character, inside a string or a key (an escaped backslash
    /// before `u0000` is none). No text Tocsin stores may hold one: PostgreSQL refuses it in
    /// text, and SQLite would keep a string that C code reads as ending there. Found in the
    /// raw bytes, so a body without one (every real body) is not parsed again to look; in a
    /// body that is not JSON it may be either (the parser refuses that body anyway).
    pub nul_escape: bool,
}

/// The nesting depth (`check_depth`) and the NUL escapes (`Scanned::nul_escape`) of a body,
/// in one pass: the escapes are among those the depth pass steps over in strings anyway
/// (issue #5: they were two passes, 1,800 instructions an alert).
pub fn scan(body: &[u8], limit: usize) -> Result<Scanned, TooDeep> {
    let mut depth = 0usize;
    let mut position = 0;
    let mut found = Scanned { nul_escape: false };
    while let Some(&b) = body.get(position) {
        position += 1;
        match b {
            // A string's text is skipped to its closing quote, an escaped byte and all, in a
            // loop that tests nothing else: most of a body's bytes are strings (issue #5).
            b'"' => loop {
                let rest = &body[position..];
                let Some(at) = rest.iter().position(|&c| c == b'"' || c == b'\\') else {
                    return Ok(found);
                };
                position += at + 1;
                if body[position - 1] == b'"' {
                    break;
                }
                // A backslash: it escapes the next byte, and `\u0000` is a NUL.
                if body.get(position..position + 5) == Some(&b"u0000"[..]) {
                    found.nul_escape = true;
                }
                position += 1;
                if position >= body.len() {
                    return Ok(found);
                }
            },
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Err(TooDeep {
                        limit,
                        position: position - 1,
                    });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(found)
}

/// The nesting depth of a parsed value, as `check_depth` counts it (for tests and fuzzing).
pub fn depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn counts_arrays_and_objects_but_not_brackets_in_strings() {
        assert_eq!(check_depth(b"{}", 1), Ok(()));
        assert_eq!(
            check_depth(b"{\"a\": [1]}", 1),
            Err(TooDeep {
                limit: 1,
                position: 6
            })
        );
        assert_eq!(check_depth(br#"{"a": "[[[[{{{{\"[["}"#, 1), Ok(()));
        assert_eq!(
            check_depth(b"\"\\\\\"[[", 1),
            Err(TooDeep {
                limit: 1,
                position: 5
            })
        );
        assert!(check_depth(&b"[".repeat(MAX_DEPTH), MAX_DEPTH).is_ok());
        let e = check_depth(&b"[".repeat(MAX_DEPTH + 1), MAX_DEPTH).unwrap_err();
        assert_eq!(e.position, MAX_DEPTH);
        assert!(e.to_string().contains("32 levels"));
        // Not JSON: no panic, no claim.
        assert!(check_depth(b"]]]}}\"", 0).is_ok());
    }

    fn nested() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<i64>().prop_map(serde_json::Value::from),
            "[\\[\\]{}\"\\\\a-z]{0,6}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(12, 64, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map("[a-z\\[{\"]{1,3}", inner, 0..4)
                    .prop_map(|m| { serde_json::Value::Object(m.into_iter().collect()) }),
            ]
        })
    }

    proptest! {
        #[test]
        fn agrees_with_the_depth_of_the_parsed_value(v in nested(), limit in 0usize..14) {
            let text = serde_json::to_string(&v).unwrap();
            prop_assert_eq!(check_depth(text.as_bytes(), limit).is_ok(), depth(&v) <= limit);
        }

        /// The NUL escapes the scan finds are the NULs the parsed value holds, in strings
        /// and keys, however backslashes and quotes surround them.
        #[test]
        fn finds_a_nul_where_the_parsed_value_holds_one(v in with_nuls()) {
            let text = serde_json::to_string(&v).unwrap();
            let scanned = scan(text.as_bytes(), MAX_DEPTH).unwrap();
            prop_assert_eq!(scanned.nul_escape, nul_path(&v).is_some(), "{}", text);
        }
    }

    fn with_nuls() -> impl Strategy<Value = serde_json::Value> {
        let text = "[\\\\\"u0a\u{0}\\[{]{0,8}";
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            text.prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 24, 4, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map(text, inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }
}

/// Where the first NUL character is in `value`: the path of the string (or of the object
/// whose key holds it), as `details.host` or `tags[2]`; `body` for the top level.
pub fn nul_path(value: &serde_json::Value) -> Option<String> {
    fn walk(v: &serde_json::Value, path: &str) -> Option<String> {
        let here = || match path {
            "" => "body".to_owned(),
            p => p.to_owned(),
        };
        match v {
            serde_json::Value::String(s) if s.contains('\0') => Some(here()),
            serde_json::Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, item)| walk(item, &format!("{}[{i}]", here()))),
            serde_json::Value::Object(fields) => fields.iter().find_map(|(k, item)| {
                if k.contains('\0') {
                    return Some(here());
                }
                let at = match path {
                    "" => k.clone(),
                    p => format!("{p}.{k}"),
                };
                walk(item, &at)
            }),
            _ => None,
        }
    }
    walk(value, "")
}

#[cfg(test)]
mod nul_tests {
    use super::*;

    #[test]
    fn a_nul_escape_is_found_and_named_an_escaped_backslash_is_not() {
        let holds_nul = |body: &[u8]| scan(body, MAX_DEPTH).unwrap().nul_escape;
        assert!(!holds_nul(br#"{"message": "plain"}"#));
        assert!(!holds_nul(br#"{"message": "a\\u0000b"}"#));
        assert!(holds_nul(br#"{"message": "a\u0000b"}"#));
        assert!(holds_nul(br#"{"message": "a\\\u0000b"}"#));
        let v: serde_json::Value = serde_json::from_slice(
            br#"{"a": "ok", "details": {"host": "x\u0000"}, "tags": ["t", "\u0000"]}"#,
        )
        .unwrap();
        assert_eq!(nul_path(&v).as_deref(), Some("details.host"));
        let v: serde_json::Value = serde_json::from_slice(br#"{"tags": ["t", "\u0000"]}"#).unwrap();
        assert_eq!(nul_path(&v).as_deref(), Some("tags[1]"));
        let v: serde_json::Value = serde_json::from_slice(br#"{"d": {"k\u0000": 1}}"#).unwrap();
        assert_eq!(nul_path(&v).as_deref(), Some("d"));
        let v: serde_json::Value = serde_json::from_slice(br#"{"m": "fine"}"#).unwrap();
        assert_eq!(nul_path(&v), None);
    }
}
