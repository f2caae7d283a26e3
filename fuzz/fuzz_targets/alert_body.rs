//! The alert create body (`POST /v2/alerts`), as the server reads it: the depth scan, then
//! `AlertFields` straight from the bytes and `NewAlert::check`. Never panics; a body the scan
//! passes is within the depth limit once parsed; the fields read from the bytes are those
//! read from the parsed `Value` (`NewAlert::parse`); an accepted alert keeps every Opsgenie
//! limit, and a refused one names a field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tocsin_core::alert::{self, NewAlert};
use tocsin_core::json;

fuzz_target!(|data: &[u8]| {
    let shallow = json::check_depth(data, json::MAX_DEPTH).is_ok();
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    // (Not the converse: a duplicate key may replace a deep value with a shallow one.)
    assert!(!shallow || json::depth(&body) <= json::MAX_DEPTH);
    let checked = match serde_json::from_slice::<alert::AlertFields>(data) {
        Ok(fields) => {
            assert_eq!(Some(&fields), alert::AlertFields::from_value(body.clone()).as_ref());
            NewAlert::check(fields)
        }
        // Only a body that is not an object (the server refuses those before reading them).
        Err(_) => {
            assert!(!body.is_object() && !body.is_null());
            return;
        }
    };
    assert_eq!(checked, NewAlert::parse(&body));
    match checked {
        Ok(a) => {
            assert!(!a.message.trim().is_empty());
            assert!(a.message.chars().count() <= alert::MESSAGE_MAX);
            assert!(
                a.alias
                    .iter()
                    .all(|x| x.chars().count() <= alert::ALIAS_MAX)
            );
            assert!(a.description.chars().count() <= alert::DESCRIPTION_MAX);
            assert!(a.tags.len() <= alert::TAGS_MAX);
            assert!(a.tags.iter().all(|t| t.chars().count() <= alert::TAG_MAX));
            assert!(a.actions.len() <= alert::ACTIONS_MAX);
            assert!(
                a.actions
                    .iter()
                    .all(|t| t.chars().count() <= alert::ACTION_MAX)
            );
            let details: usize = a
                .details
                .iter()
                .map(|(k, v)| k.chars().count() + v.chars().count())
                .sum();
            assert!(details <= alert::DETAILS_MAX);
            assert!(a.entity.chars().count() <= alert::ENTITY_MAX);
            assert!(
                a.source
                    .iter()
                    .all(|x| x.chars().count() <= alert::SOURCE_MAX)
            );
            assert!(a.user.iter().all(|x| x.chars().count() <= alert::USER_MAX));
            assert!(a.note.iter().all(|x| x.chars().count() <= alert::NOTE_MAX));
            assert!(a.responders.len() <= alert::RESPONDERS_MAX);
            assert!(a.visible_to.len() <= alert::RESPONDERS_MAX);
        }
        Err(problems) => {
            assert!(!problems.0.is_empty());
            assert!(
                problems
                    .0
                    .iter()
                    .all(|p| !p.field.is_empty() && !p.reason.is_empty())
            );
        }
    }
});
