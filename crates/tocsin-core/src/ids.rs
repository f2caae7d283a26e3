//! Prefixed, typed identifiers (`key_...`, `team_...`) as Stripe and Svix use them:
//! readable in logs, sortable (UUID v7), and a team id can never stand where a key id belongs.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! define_id {
    ($name:ident, $prefix:literal) => {
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// The length of an id's text: the prefix, `_` and 32 hex digits.
            pub const TEXT_LEN: usize = $prefix.len() + 1 + 32;

            /// A new, time-ordered id.
            pub fn generate() -> Self {
                let mut buf = [0u8; Self::TEXT_LEN];
                Self(Self::write(uuid::Uuid::now_v7(), &mut buf).to_owned())
            }

            /// The id that `uuid` spells, written into `buf` (no allocation: the audit
            /// writer makes one for every request event).
            pub fn write(uuid: uuid::Uuid, buf: &mut [u8; Self::TEXT_LEN]) -> &str {
                let prefix = $prefix.len();
                buf[..prefix].copy_from_slice($prefix.as_bytes());
                buf[prefix] = b'_';
                uuid.simple().encode_lower(&mut buf[prefix + 1..]);
                std::str::from_utf8(buf).expect("the prefix and hex digits are ASCII")
            }

            /// Accepts only ids of this type's shape; anything else is `None`
            /// (and so answers 404, never a 500).
            pub fn parse(s: &str) -> Option<Self> {
                let rest = s.strip_prefix($prefix)?.strip_prefix('_')?;
                (rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
                    .then(|| Self(s.to_owned()))
            }

            /// Wraps a value read back from our own store.
            pub fn from_trusted(s: String) -> Self {
                Self(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

define_id!(OrgId, "org");
define_id!(UserId, "usr");
define_id!(TeamId, "team");
define_id!(KeyId, "key");
define_id!(ServiceAccountId, "sa");
define_id!(IntegrationId, "int");
define_id!(SessionId, "ses");
define_id!(AuditEventId, "evt");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_other_prefixes() {
        let k = KeyId::generate();
        assert_eq!(KeyId::parse(k.as_str()), Some(k.clone()));
        assert_eq!(TeamId::parse(k.as_str()), None);
        assert_eq!(KeyId::parse("key_123"), None);
        assert_eq!(KeyId::parse("key_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"), None);
    }

    /// Ids sort in the order they were made, within a millisecond too (listings order by
    /// id), and are version 7 UUIDs.
    #[test]
    fn ids_sort_in_creation_order() {
        let ids: Vec<AuditEventId> = (0..10_000).map(|_| AuditEventId::generate()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        let uuid = uuid::Uuid::parse_str(&ids[0].as_str()["evt_".len()..]).unwrap();
        assert_eq!(uuid.get_version_num(), 7);
        assert!(AuditEventId::parse(ids[0].as_str()).is_some());
    }
}
