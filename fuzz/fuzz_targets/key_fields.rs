//! The field parsers every `/v1` create body goes through (API keys, teams, users,
//! integrations, roles): names, descriptions, expiry times, CIDR lists and durations.
//! Never panics; what they accept keeps their rules, and a refusal says why.
//!
//! Input: 8 bytes of an organization's maximum key lifetime in days (any i64, so the expiry
//! arithmetic meets its extremes), then text whose lines are the values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;
use tocsin_core::key::{self, KeyName};

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (days, rest) = data.split_at(8);
    let org_max_days = Some(i64::from_le_bytes(days.try_into().expect("8 bytes")));
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    for value in std::iter::once(text).chain(text.lines()) {
        match KeyName::parse(value) {
            Ok(name) => {
                assert_eq!(name.as_str(), value.trim());
                let n = name.as_str().chars().count();
                assert!((1..=200).contains(&n));
                assert!(!name.as_str().chars().any(char::is_control));
            }
            Err(reason) => assert!(!reason.is_empty()),
        }
        match key::parse_description(Some(value)) {
            Ok(d) => assert!(d.chars().count() <= 1000),
            Err(reason) => assert!(!reason.is_empty()),
        }
        let now = OffsetDateTime::now_utc();
        for max in [None, org_max_days] {
            match key::parse_expires_at(Some(value), now, max) {
                Ok(t) => {
                    assert!(t > now);
                    assert!(t <= key::max_expiry(now, max));
                }
                Err(reason) => assert!(!reason.is_empty()),
            }
        }
        if let Ok(d) = key::parse_duration(value) {
            assert!(d.whole_days() <= 100 * 365);
        }
    }
    let items: Vec<String> = text.split(',').map(str::to_owned).collect();
    match key::parse_cidrs(&items) {
        Ok(nets) => assert_eq!(nets.len(), items.len()),
        Err(reason) => assert!(reason.contains("CIDR")),
    }
});
