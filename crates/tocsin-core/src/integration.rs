//! API integrations: what their access flags grant their keys, as Opsgenie's API integrations
//! do (read, write, delete, configuration), within the integration's team or account-wide.

use crate::ids::TeamId;
use crate::permission::{PermSet, Permission};
use crate::policy::Grants;

/// The four access flags of an API integration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessFlags {
    pub read: bool,
    pub write: bool,
    pub delete: bool,
    pub configuration: bool,
}

impl Default for AccessFlags {
    /// Opsgenie's defaults for a new API integration in Tocsin: read and write.
    fn default() -> Self {
        AccessFlags {
            read: true,
            write: true,
            delete: false,
            configuration: false,
        }
    }
}

impl AccessFlags {
    pub fn permissions(self) -> PermSet {
        let mut p = PermSet::EMPTY;
        if self.read {
            p.insert(Permission::AlertsRead);
        }
        if self.write {
            p.insert(Permission::AlertsWrite);
        }
        if self.delete {
            p.insert(Permission::AlertsDelete);
        }
        if self.configuration {
            p.insert(Permission::IntegrationsRead);
            if self.write {
                p.insert(Permission::IntegrationsWrite);
            }
        }
        p
    }

    /// Whether the integration's keys may delete configuration (heartbeats, integrations):
    /// Opsgenie's "configuration (+ write/delete)". `integrations:write` (configuration and
    /// write) changes configuration; deleting it takes the delete access as well. Other kinds
    /// of key have no such flag: `integrations:write` is all they need.
    pub fn deletes_configuration(self) -> bool {
        self.configuration && self.write && self.delete
    }

    /// The grants of the integration's keys: within its team, or account-wide when global.
    pub fn grants(self, team: Option<&TeamId>) -> Grants {
        match team {
            Some(t) => {
                let mut g = Grants::default();
                g.add_team(t.clone(), self.permissions());
                g
            }
            None => Grants::account(self.permissions()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Resource, authorize};

    #[test]
    fn flags_map_to_permissions_within_the_team() {
        let team = TeamId::generate();
        let other = TeamId::generate();
        let g = AccessFlags::default().grants(Some(&team));
        assert!(
            authorize(
                &g,
                Permission::AlertsWrite,
                &Resource::Teams(vec![team.clone()])
            )
            .is_allowed()
        );
        assert!(
            !authorize(&g, Permission::AlertsWrite, &Resource::Teams(vec![other])).is_allowed()
        );
        assert!(
            !authorize(&g, Permission::AlertsDelete, &Resource::Teams(vec![team])).is_allowed()
        );
        let read_only = AccessFlags {
            write: false,
            ..Default::default()
        }
        .grants(None);
        assert!(authorize(&read_only, Permission::AlertsRead, &Resource::Org).is_allowed());
        assert!(!authorize(&read_only, Permission::AlertsWrite, &Resource::Org).is_allowed());
        let config = AccessFlags {
            configuration: true,
            ..Default::default()
        }
        .permissions();
        assert!(config.contains(Permission::IntegrationsWrite));
        assert!(
            !AccessFlags {
                configuration: true,
                ..Default::default()
            }
            .deletes_configuration()
        );
        assert!(
            AccessFlags {
                configuration: true,
                delete: true,
                ..Default::default()
            }
            .deletes_configuration()
        );
    }
}
