//! The permission catalog (`resource:action`), fixed in code, and `PermSet`, a bit set
//! over it so that a permission check on the hot path is one AND.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! catalog {
    ($( $variant:ident = $name:literal : $desc:literal ),+ $(,)?) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Permission { $($variant),+ }

        impl Permission {
            pub const ALL: &'static [Permission] = &[$(Permission::$variant),+];

            pub fn name(self) -> &'static str {
                match self { $(Permission::$variant => $name),+ }
            }

            pub fn description(self) -> &'static str {
                match self { $(Permission::$variant => $desc),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($name => Some(Permission::$variant),)+ _ => None }
            }
        }
    };
}

catalog! {
    AlertsRead = "alerts:read": "List and read alerts, their notes, logs and request statuses.",
    AlertsWrite = "alerts:write": "Create alerts; acknowledge, close, snooze, annotate and re-prioritise them.",
    AlertsDelete = "alerts:delete": "Delete alerts.",
    IntegrationsRead = "integrations:read": "List and read integrations.",
    IntegrationsWrite = "integrations:write": "Create, change, disable and delete integrations and their keys.",
    TeamsRead = "teams:read": "List and read teams and their members.",
    TeamsWrite = "teams:write": "Create, change and delete teams; manage memberships.",
    UsersRead = "users:read": "List and read users.",
    UsersWrite = "users:write": "Invite, change and deactivate users.",
    RolesRead = "roles:read": "List and read roles.",
    RolesWrite = "roles:write": "Create, change and delete custom roles.",
    ApiKeysRead = "api_keys:read": "List and read API keys (never their tokens).",
    ApiKeysWrite = "api_keys:write": "Create, change, rotate and revoke API keys.",
    AuditRead = "audit:read": "Read the audit trail.",
    SettingsWrite = "settings:write": "Change organization settings.",
}

impl Permission {
    fn bit(self) -> u32 {
        1 << (self as u8)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Permission {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Permission {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Permission::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown permission `{s}`")))
    }
}

/// A set of permissions as a bit mask.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PermSet(u32);

impl PermSet {
    pub const EMPTY: PermSet = PermSet(0);

    pub fn all() -> Self {
        Permission::ALL.iter().copied().collect()
    }

    pub fn from_bits(bits: u32) -> Self {
        PermSet(bits & Self::all().0)
    }

    pub fn bits(self) -> u32 {
        self.0
    }

    pub fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    pub fn insert(&mut self, p: Permission) {
        self.0 |= p.bit();
    }

    pub fn union(self, other: PermSet) -> PermSet {
        PermSet(self.0 | other.0)
    }

    pub fn intersect(self, other: PermSet) -> PermSet {
        PermSet(self.0 & other.0)
    }

    /// The permissions in `self` that `other` lacks.
    pub fn minus(self, other: PermSet) -> PermSet {
        PermSet(self.0 & !other.0)
    }

    pub fn is_subset(self, other: PermSet) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL
            .iter()
            .copied()
            .filter(move |p| self.contains(*p))
    }

    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Permission::name).collect()
    }
}

impl FromIterator<Permission> for PermSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        let mut s = PermSet::EMPTY;
        for p in iter {
            s.insert(p);
        }
        s
    }
}

impl fmt::Debug for PermSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_names_round_trip() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.name()), Some(*p));
            assert!(p.name().contains(':'));
            assert!(!p.description().is_empty());
        }
        assert_eq!(PermSet::all().iter().count(), Permission::ALL.len());
    }

    #[test]
    fn set_algebra() {
        let a: PermSet = [Permission::AlertsRead, Permission::AlertsWrite]
            .into_iter()
            .collect();
        let b: PermSet = [Permission::AlertsRead].into_iter().collect();
        assert!(b.is_subset(a));
        assert!(!a.is_subset(b));
        assert_eq!(a.minus(b).names(), vec!["alerts:write"]);
        assert_eq!(PermSet::from_bits(u32::MAX), PermSet::all());
    }
}
