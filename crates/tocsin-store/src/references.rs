//! What a write names that a delete may take away, or a compare-and-set judge, at the same
//! moment: custom roles, teams, integrations, users. A writer collects them (`Store::references`) and checks them inside its own
//! transaction (`check_references!`), before it writes. On PostgreSQL each row is
//! share-locked (`FOR SHARE`) until the write commits, so a delete, which locks the row
//! `FOR UPDATE` and then looks for what depends on it, either waits and sees the new
//! dependent, or won and the check finds no row (`StoreError::Vanished`). SQLite writes one
//! transaction at a time (`begin_write`), so the plain lookup is enough there.

use crate::Store;

/// The statements that find (and on PostgreSQL share-lock) a row: `$1` the organization, `$2`
/// the role's name or the team's or integration's id.
struct Lookups {
    /// A custom role that may be held as an account role (`scope` not `team`).
    account_role: &'static str,
    /// A custom role that may be held as a team role (`scope` not `account`).
    team_role: &'static str,
    team: &'static str,
    integration: &'static str,
    /// A user: a membership share-locks its user, so that `update_user`, which locks the
    /// user's row for update before it reads the user's memberships, either sees the
    /// membership as written or commits before it is (its compare-and-set then holds). A new
    /// membership's foreign key locks the row too; a change of an existing one's roles does not.
    user: &'static str,
}

const POSTGRES: Lookups = Lookups {
    account_role: "SELECT 1 FROM roles WHERE org_id = $1 AND name = $2 AND scope <> 'team' FOR SHARE",
    team_role: "SELECT 1 FROM roles WHERE org_id = $1 AND name = $2 AND scope <> 'account' FOR SHARE",
    team: "SELECT 1 FROM teams WHERE org_id = $1 AND id = $2 FOR SHARE",
    integration: "SELECT 1 FROM integrations WHERE org_id = $1 AND id = $2 FOR SHARE",
    user: "SELECT 1 FROM users WHERE org_id = $1 AND id = $2 FOR SHARE",
};

const SQLITE: Lookups = Lookups {
    account_role: "SELECT 1 FROM roles WHERE org_id = $1 AND name = $2 AND scope <> 'team'",
    team_role: "SELECT 1 FROM roles WHERE org_id = $1 AND name = $2 AND scope <> 'account'",
    team: "SELECT 1 FROM teams WHERE org_id = $1 AND id = $2",
    integration: "SELECT 1 FROM integrations WHERE org_id = $1 AND id = $2",
    user: "SELECT 1 FROM users WHERE org_id = $1 AND id = $2",
};

/// The custom roles, teams, integrations and users one write names, each once, with the
/// statement that finds it and what to call it when it is gone ("account role", "team role",
/// "team", "integration", "user").
pub(crate) struct References {
    lookups: &'static Lookups,
    pub(crate) items: Vec<(&'static str, String, &'static str)>,
}

impl References {
    /// Custom roles held as account roles (a user's role, a key's `role_names`), by name:
    /// found only while their scope allows that, so a role whose scope changes to `team` at
    /// the same moment is refused here as if deleted (`update_role_unless_held` counts the
    /// holders under the same lock). Built-in roles live in code and are never deleted or
    /// changed, so they are skipped.
    pub(crate) fn account_roles<'a>(mut self, names: impl IntoIterator<Item = &'a String>) -> Self {
        for name in names {
            if !tocsin_core::role::is_builtin_name(name) {
                self.push(self.lookups.account_role, name, "account role");
            }
        }
        self
    }

    /// Custom roles held as team roles (a membership's or a key's `team_role_names`), as
    /// `account_roles` finds account roles.
    pub(crate) fn team_roles<'a>(mut self, names: impl IntoIterator<Item = &'a String>) -> Self {
        for name in names {
            if !tocsin_core::role::is_builtin_name(name) {
                self.push(self.lookups.team_role, name, "team role");
            }
        }
        self
    }

    pub(crate) fn teams<'a>(mut self, ids: impl IntoIterator<Item = &'a str>) -> Self {
        for id in ids {
            self.push(self.lookups.team, id, "team");
        }
        self
    }

    pub(crate) fn integration(mut self, id: Option<&str>) -> Self {
        if let Some(id) = id {
            self.push(self.lookups.integration, id, "integration");
        }
        self
    }

    pub(crate) fn user(mut self, id: &str) -> Self {
        self.push(self.lookups.user, id, "user");
        self
    }

    fn push(&mut self, sql: &'static str, id: &str, what: &'static str) {
        if !self.items.iter().any(|(s, i, _)| *s == sql && i == id) {
            self.items.push((sql, id.to_owned(), what));
        }
    }
}

impl Store {
    /// An empty set of references for this backend's lookups; add what the write names.
    pub(crate) fn references(&self) -> References {
        References {
            lookups: if self.is_postgres() {
                &POSTGRES
            } else {
                &SQLITE
            },
            items: Vec::new(),
        }
    }
}

/// Checks, inside the open write transaction `$tx` (a macro, so the same statements serve
/// whichever typed connection the arm of `on_db!` holds), that everything in `$refs`
/// (`References`) still exists in organization `$org` (`&str`); returns
/// `StoreError::Vanished` naming the first that does not, so the transaction rolls back.
macro_rules! check_references {
    ($tx:expr, $org:expr, $refs:expr) => {
        for &(sql, ref id, what) in &$refs.items {
            let found = sqlx::query(sql)
                .bind($org)
                .bind(id.as_str())
                .fetch_optional(&mut *$tx)
                .await?;
            if found.is_none() {
                return Err($crate::StoreError::Vanished(format!("{what} `{id}`")));
            }
        }
    };
}
pub(crate) use check_references;
