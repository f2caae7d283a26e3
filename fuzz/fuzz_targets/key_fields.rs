//! The field parsers every `/v1` create body goes through (API keys, teams, users,
//! integrations, roles): names, descriptions, expiry times, CIDR lists, durations and
//! custom role definitions.
//! Never panics; what they accept keeps their rules, and a refusal says why.
//!
//! Input: 8 bytes of an organization's maximum key lifetime in days (any i64, so the expiry
//! arithmetic meets its extremes), then text whose lines are the values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;
use tocsin_core::key::{self, KeyName};
use tocsin_core::permission::Permission;
use tocsin_core::role::{self, Role};

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
    // A custom role (`POST /v1/roles`): the first lines are its name, description and
    // scope, the rest its permissions.
    let lines: Vec<&str> = text.lines().collect();
    if let [name, description, scope, permissions @ ..] = lines.as_slice() {
        let permissions: Vec<String> = permissions.iter().map(|p| (*p).to_owned()).collect();
        match Role::custom(name, Some(description), scope, &permissions) {
            Ok(role) => {
                assert_eq!(role.name, name.trim());
                assert!(!role.builtin && !role::is_builtin_name(&role.name));
                assert!((1..=64).contains(&role.name.len()));
                assert!(role.description.chars().count() <= 1000);
                assert_eq!(role.scope.name(), *scope);
                for p in &permissions {
                    let p = Permission::parse(p).expect("only known permissions are accepted");
                    assert!(role.permissions.contains(p));
                }
            }
            Err(problems) => {
                assert!(!problems.is_empty());
                assert!(problems.iter().all(|p| !p.reason.is_empty()));
            }
        }
    }
    let items: Vec<String> = text.split(',').map(str::to_owned).collect();
    match key::parse_cidrs(&items) {
        Ok(nets) => assert_eq!(nets.len(), items.len()),
        Err(reason) => assert!(reason.contains("CIDR")),
    }
});
