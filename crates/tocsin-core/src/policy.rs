//! Authorization as a pure function of data: `authorize(grants, permission, resource)`,
//! the key-state checks that precede it, the no-escalation rule, and `explain`, which is
//! built from the very same decisions so it can never disagree with them.

use crate::ids::TeamId;
use crate::integration::AccessFlags;
use crate::permission::{PermSet, Permission};
use crate::role::builtin_roles;
use crate::token::MalformedToken;
use ipnet::IpNet;
use std::net::IpAddr;
use time::OffsetDateTime;

/// What a principal may do: permissions org-wide, and permissions within single teams.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    pub account: PermSet,
    /// Sorted by team id, one entry per team.
    pub teams: Vec<(TeamId, PermSet)>,
}

impl Grants {
    pub fn account(perms: PermSet) -> Self {
        Grants {
            account: perms,
            teams: Vec::new(),
        }
    }

    /// Adds `perms` within `team`, merging with what is already there.
    pub fn add_team(&mut self, team: TeamId, perms: PermSet) {
        match self.teams.binary_search_by(|(t, _)| t.cmp(&team)) {
            Ok(i) => self.teams[i].1 = self.teams[i].1.union(perms),
            Err(i) => self.teams.insert(i, (team, perms)),
        }
    }

    pub fn team(&self, team: &TeamId) -> PermSet {
        self.teams
            .binary_search_by(|(t, _)| t.cmp(team))
            .map(|i| self.teams[i].1)
            .unwrap_or(PermSet::EMPTY)
    }

    /// Every permission held anywhere.
    pub fn anywhere(&self) -> PermSet {
        self.teams
            .iter()
            .fold(self.account, |acc, (_, p)| acc.union(*p))
    }

    /// Keeps only `mask` everywhere (a personal key narrowed to some roles).
    pub fn narrowed(&self, mask: PermSet) -> Grants {
        Grants {
            account: self.account.intersect(mask),
            teams: self
                .teams
                .iter()
                .map(|(t, p)| (t.clone(), p.intersect(mask)))
                .filter(|(_, p)| !p.is_empty())
                .collect(),
        }
    }

    /// Teams in which `p` is held by a team grant (not counting account grants).
    pub fn teams_with(&self, p: Permission) -> Vec<TeamId> {
        self.teams
            .iter()
            .filter(|(_, s)| s.contains(p))
            .map(|(t, _)| t.clone())
            .collect()
    }
}

/// What an action touches, as far as authorization cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resource {
    /// An organization-wide object (users, roles, settings, the audit trail).
    Org,
    /// An object owned by these teams (an alert's responders, a team key's team).
    /// An empty list means no team owns it: only account grants reach it.
    Teams(Vec<TeamId>),
    /// A collection that each caller sees filtered to what it may see (lists).
    AnyTeam,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// The principal holds the permission nowhere that applies.
    PermissionDenied {
        required: Permission,
    },
    /// The principal holds the permission, but only within other teams.
    ScopeDenied {
        required: Permission,
        key_teams: Vec<TeamId>,
        resource_teams: Vec<TeamId>,
    },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed)
    }
}

pub fn authorize(grants: &Grants, required: Permission, resource: &Resource) -> Decision {
    if grants.account.contains(required) {
        return Decision::Allowed;
    }
    let holding = grants.teams_with(required);
    match resource {
        Resource::AnyTeam if !holding.is_empty() => Decision::Allowed,
        Resource::Teams(owners) if owners.iter().any(|t| holding.contains(t)) => Decision::Allowed,
        // Held, but only within teams: the object is another team's, or organization-wide
        // (no owners), which only an account grant reaches.
        Resource::Teams(_) | Resource::Org if !holding.is_empty() => Decision::ScopeDenied {
            required,
            key_teams: holding,
            resource_teams: match resource {
                Resource::Teams(owners) => owners.clone(),
                _ => Vec::new(),
            },
        },
        _ => Decision::PermissionDenied { required },
    }
}

/// The two narrowest built-in roles that grant `p`, as a refusal's fix names them.
fn example_roles(p: Permission) -> String {
    roles_granting(p)
        .iter()
        .rev()
        .take(2)
        .copied()
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The two narrowest built-in roles that grant `p` account-wide: for a fix that asks for an
/// account grant, which a team-only role such as `team_admin` can never be.
fn example_account_roles(p: Permission) -> String {
    roles_granting(p)
        .iter()
        .rev()
        .copied()
        .filter(|n| crate::role::builtin(n).is_some_and(|r| r.scope.allows_account()))
        .take(2)
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The names of the built-in roles that grant `p`, for messages that say what would work.
pub fn roles_granting(p: Permission) -> Vec<&'static str> {
    const NAMES: &[&str] = &[
        "owner",
        "admin",
        "viewer",
        "responder",
        "alert_admin",
        "integrations_manage",
        "api_keys_manage",
        "audit_reader",
        "team_admin",
    ];
    let roles = builtin_roles();
    NAMES
        .iter()
        .copied()
        .filter(|n| {
            roles
                .iter()
                .any(|r| r.name == *n && r.permissions.contains(p))
        })
        .collect()
}

/// The state of a credential as the store knows it, reduced to what the checks need.
#[derive(Clone, Debug)]
pub struct CredentialState {
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    pub revoked_by_name: Option<String>,
    /// Set when the presented token is the previous one of a rotated key.
    pub grace_period_ends_at: Option<OffsetDateTime>,
    /// A reason the key is switched off without being revoked (its user deactivated,
    /// its integration disabled).
    pub disabled_reason: Option<String>,
    pub allowed_cidrs: Vec<IpNet>,
}

/// Every refusal Tocsin can give, in the order the checks run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No usable credential. `header` says what was wrong with an `Authorization` header that
    /// was sent but holds no credential Tocsin reads (no scheme, or another scheme); `None`
    /// when there was no header at all. `ignored_query_key`: the query string held Opsgenie's
    /// legacy `apiKey=`, which this server does not read (off, or not a /v2 route).
    MissingCredentials {
        header: Option<String>,
        ignored_query_key: bool,
    },
    MalformedToken(MalformedToken),
    WrongRegion {
        region: String,
        url: Option<String>,
    },
    UnknownKey,
    RevokedKey {
        at: OffsetDateTime,
        by: Option<String>,
    },
    KeyDisabled {
        reason: String,
    },
    ExpiredKey {
        at: OffsetDateTime,
        rotated_out: bool,
    },
    IpNotAllowed {
        ip: IpAddr,
    },
    Denied(Decision),
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::MissingCredentials { .. } => "missing_credentials",
            Refusal::MalformedToken(_) => "malformed_token",
            Refusal::WrongRegion { .. } => "wrong_region",
            Refusal::UnknownKey => "unknown_key",
            Refusal::RevokedKey { .. } => "revoked_key",
            Refusal::KeyDisabled { .. } => "key_disabled",
            Refusal::ExpiredKey { .. } => "expired_key",
            Refusal::IpNotAllowed { .. } => "ip_not_allowed",
            Refusal::Denied(Decision::ScopeDenied { .. }) => "scope_denied",
            Refusal::Denied(_) => "permission_denied",
        }
    }

    /// 401 for the credential itself, 403 for what it may do.
    pub fn http_status(&self) -> u16 {
        match self {
            Refusal::IpNotAllowed { .. } | Refusal::Denied(_) => 403,
            _ => 401,
        }
    }
}

/// The state checks that follow a successful lookup: revoked, disabled, expired, source IP.
pub fn check_state(
    state: &CredentialState,
    now: OffsetDateTime,
    ip: Option<IpAddr>,
) -> Result<(), Refusal> {
    if let Some(at) = state.revoked_at {
        return Err(Refusal::RevokedKey {
            at,
            by: state.revoked_by_name.clone(),
        });
    }
    if let Some(reason) = &state.disabled_reason {
        return Err(Refusal::KeyDisabled {
            reason: reason.clone(),
        });
    }
    if let Some(grace) = state.grace_period_ends_at
        && now >= grace
    {
        return Err(Refusal::ExpiredKey {
            at: grace,
            rotated_out: true,
        });
    }
    if now >= state.expires_at {
        return Err(Refusal::ExpiredKey {
            at: state.expires_at,
            rotated_out: false,
        });
    }
    if !state.allowed_cidrs.is_empty() {
        let allowed =
            ip.is_some_and(|ip| state.allowed_cidrs.iter().any(|net| in_network(net, ip)));
        if !allowed {
            return Err(Refusal::IpNotAllowed {
                ip: ip.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            });
        }
    }
    Ok(())
}

/// Whether `ip` lies in `net`, an IPv4 address and its IPv4-mapped IPv6 form
/// (`::ffff:a.b.c.d`) being one address: a key fenced with `::ffff:10.0.0.0/104` and one
/// fenced with `10.0.0.0/8` admit the same clients, whichever form the listener reports.
fn in_network(net: &IpNet, ip: IpAddr) -> bool {
    if net.contains(&ip) {
        return true;
    }
    match ip {
        IpAddr::V4(v4) => net.contains(&IpAddr::V6(v4.to_ipv6_mapped())),
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .is_some_and(|v4| net.contains(&IpAddr::V4(v4))),
    }
}

/// A grant the creator lacks, by scope (`None` is the account).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingGrant {
    pub team: Option<TeamId>,
    pub permissions: PermSet,
}

/// No escalation: every permission of `requested`, in every scope, must be held by
/// `creator` in that scope (an account grant covers every team).
pub fn check_no_escalation(creator: &Grants, requested: &Grants) -> Result<(), Vec<MissingGrant>> {
    let mut missing = Vec::new();
    let lacking = requested.account.minus(creator.account);
    if !lacking.is_empty() {
        missing.push(MissingGrant {
            team: None,
            permissions: lacking,
        });
    }
    for (team, perms) in &requested.teams {
        let held = creator.account.union(creator.team(team));
        let lacking = perms.minus(held);
        if !lacking.is_empty() {
            missing.push(MissingGrant {
                team: Some(team.clone()),
                permissions: lacking,
            });
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing)
    }
}

/// The answer of `POST /v1/auth/explain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub allowed: bool,
    pub code: Option<&'static str>,
    pub reasons: Vec<String>,
    pub fixes: Vec<String>,
}

/// Describes a principal for messages: "team key `deploy-bot` (roles: responder)".
#[derive(Clone, Debug, Default)]
pub struct Describe {
    pub kind: String,
    pub name: String,
    pub role_names: Vec<String>,
    pub team_role_names: Vec<String>,
    /// An integration key's access flags (its permissions), so a refusal names only the
    /// flags that are off.
    pub flags: Option<AccessFlags>,
}

impl Describe {
    pub fn summary(&self) -> String {
        let mut roles = self.role_names.clone();
        roles.extend(self.team_role_names.iter().map(|r| format!("{r} (team)")));
        let roles = if roles.is_empty() {
            "no roles".to_owned()
        } else {
            format!("roles: {}", roles.join(", "))
        };
        format!("{} `{}` ({roles})", self.kind, self.name)
    }
}

fn kinds_allowed(p: Permission) -> &'static str {
    match p {
        Permission::AlertsRead
        | Permission::AlertsWrite
        | Permission::AlertsDelete
        | Permission::IntegrationsRead
        | Permission::IntegrationsWrite => "personal, team, organization or integration keys",
        _ => {
            "personal, team or organization keys (integration keys only reach alerts and integrations)"
        }
    }
}

/// What to do about an expired key, in `expired_key` and in `key_expired` (rotate and PATCH
/// of an expired key): an expired key cannot be renewed, only replaced.
pub const EXPIRED_KEY_FIX: &str = "An expired key cannot be rotated or extended: create a new key (POST /v1/api_keys, or `tocsin keys create`) and use its token; revoke the expired one to free its name. To keep a key from expiring, rotate it (POST /v1/api_keys/{id}/rotate) or extend it (PATCH /v1/api_keys/{id} with a later `expires_at`) before it expires.";

/// The message and fixes of a refusal: the single source for HTTP errors and `explain`.
pub fn describe_refusal(refusal: &Refusal, who: Option<&Describe>) -> (String, Vec<String>) {
    let fmt_time = |t: &OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| t.to_string())
    };
    match refusal {
        Refusal::MissingCredentials { header, ignored_query_key } => (
            match header {
                None if *ignored_query_key => "No credentials were sent in the Authorization header, and the `apiKey` query parameter (Opsgenie's legacy way) is not read here: this server reads it only on /v2 routes, and only when it runs with `--allow-query-api-key`. Send `Authorization: GenieKey <token>` (or `Bearer <token>`) instead.".into(),
                None => "No credentials were sent. Send `Authorization: Bearer <token>` or, from an Opsgenie client, `Authorization: GenieKey <token>`.".into(),
                Some(problem) => format!("The Authorization header was sent, but {problem}. Send `Authorization: Bearer <token>` or, from an Opsgenie client, `Authorization: GenieKey <token>`."),
            },
            vec![
                "Create a key with `tocsin keys create` or POST /v1/api_keys and send it in the Authorization header.".into(),
                "A key in the query string (Opsgenie's legacy `?apiKey=`) is read only on /v2 routes, and only when the server runs with `--allow-query-api-key`.".into(),
            ],
        ),
        Refusal::MalformedToken(why) => (
            format!("The token is damaged, not unknown: {why}."),
            vec!["Copy the token again in full (tcs_, a kind letter, the region, then 38 letters and digits), without quotes or spaces; `tocsin doctor <token>` checks it offline.".into()],
        ),
        Refusal::WrongRegion { region, url } => match url {
            Some(url) => (
                format!("This token belongs to region `{region}`, which this deployment does not serve. Send it to {url}."),
                vec![format!("Use the base URL {url} for this token.")],
            ),
            None => (
                format!("This token belongs to region `{region}`, which this deployment does not serve, and no base URL is configured for that region."),
                vec![format!("Send the token to the deployment of region `{region}`, or use a key created here.")],
            ),
        },
        Refusal::UnknownKey => (
            "No key has this token in this deployment's region. It may have been typed for another deployment, or deleted.".into(),
            vec!["Check which deployment issued the token, or create a new key.".into()],
        ),
        Refusal::RevokedKey { at, by } => (
            match by {
                Some(by) => format!("This key was revoked at {} by {by}.", fmt_time(at)),
                None => format!("This key was revoked at {}.", fmt_time(at)),
            },
            vec!["Revocation is permanent: create a new key.".into()],
        ),
        Refusal::KeyDisabled { reason } => (
            format!("This key is switched off: {reason}."),
            vec!["Ask an administrator to re-enable what it belongs to, or use another key.".into()],
        ),
        Refusal::ExpiredKey { at, rotated_out } => (
            if *rotated_out {
                format!("This token was replaced by a rotation and its grace period ended at {}.", fmt_time(at))
            } else {
                format!("This key expired at {}.", fmt_time(at))
            },
            vec![if *rotated_out {
                "Use the token the rotation returned, or rotate the key again to get a new one.".into()
            } else {
                EXPIRED_KEY_FIX.into()
            }],
        ),
        Refusal::IpNotAllowed { ip } => (
            format!("This key is restricted to certain networks (allowed_cidrs) and the request came from {ip}."),
            vec!["Call from an allowed network, or have the key's allowed_cidrs widened.".into()],
        ),
        Refusal::Denied(Decision::PermissionDenied { required })
            if who.is_some_and(|w| w.kind == "integration key") =>
        {
            // An integration key's permissions are its integration's access flags, not roles.
            let flags = who.and_then(|w| w.flags);
            let who = who.map(Describe::summary).unwrap_or_default();
            match missing_flags(*required, flags) {
                Some(flag) => (
                    format!(
                        "This action requires the permission `{required}`, which {who} does not hold: its integration's access flags do not include {flag}."
                    ),
                    vec![format!(
                        "Turn on {flag} for the integration (PATCH /v1/integrations/{{id}}, or allow*Access in PUT /v2/integrations/{{id}}; either needs integrations:write), or use a personal, team or organization key."
                    )],
                ),
                None => (
                    format!(
                        "This action requires the permission `{required}`, which integration keys never hold: they reach alerts and their integration only."
                    ),
                    vec![format!(
                        "Use a personal, team or organization key with a role that grants `{required}` (for example {}).",
                        example_roles(*required)
                    )],
                ),
            }
        }
        Refusal::Denied(Decision::PermissionDenied { required }) => {
            let who = who.map(Describe::summary).unwrap_or_else(|| "this credential".into());
            (
                format!(
                    "This action requires the permission `{required}`, which {who} does not hold. It is granted by the roles {} to {}.",
                    roles_granting(*required).join(", "),
                    kinds_allowed(*required)
                ),
                vec![format!(
                    "Use a key holding a role that grants `{required}` (for example {}), or ask an administrator to add one to this key.",
                    example_roles(*required)
                )],
            )
        }
        Refusal::Denied(Decision::ScopeDenied { required, key_teams, resource_teams }) => {
            let who = who.map(Describe::summary).unwrap_or_else(|| "this credential".into());
            let held = format!(
                "{who} holds `{required}` only within team(s) {}",
                key_teams.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
            );
            if resource_teams.is_empty() {
                (
                    format!("{held}, and this resource belongs to no team (it is organization-wide), which only an account-wide grant reaches."),
                    vec![format!(
                        "Use a personal or organization key whose role grants `{required}` account-wide (for example {}).",
                        example_account_roles(*required)
                    )],
                )
            } else {
                (
                    format!(
                        "{held}, and this resource belongs to {}.",
                        resource_teams.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                    vec![format!("Use a key of the resource's team, or one holding `{required}` account-wide.")],
                )
            }
        }
        Refusal::Denied(Decision::Allowed) => ("Allowed.".into(), vec![]),
    }
}

/// The access flags an integration key needs on for `required`, less those `flags` has on
/// already, as words ("allow_configuration and allow_write"); `None` for a permission no flag
/// grants. All of them when the flags are not known.
fn missing_flags(required: Permission, flags: Option<AccessFlags>) -> Option<String> {
    let needed: &[&str] = match required {
        Permission::AlertsRead => &["allow_read"],
        Permission::AlertsWrite => &["allow_write"],
        Permission::AlertsDelete => &["allow_delete"],
        Permission::IntegrationsRead => &["allow_configuration"],
        Permission::IntegrationsWrite => &["allow_configuration", "allow_write"],
        _ => return None,
    };
    let on = |name: &str| {
        flags.is_some_and(|f| match name {
            "allow_read" => f.read,
            "allow_write" => f.write,
            "allow_delete" => f.delete,
            _ => f.configuration,
        })
    };
    let off: Vec<&str> = needed.iter().copied().filter(|n| !on(n)).collect();
    // Every flag on and still refused cannot be (the flags are the permissions); name them
    // all rather than none.
    Some(if off.is_empty() { needed.to_vec() } else { off }.join(" and "))
}

/// The message and fix of an integration key refused a configuration delete (a heartbeat, an
/// integration) because its integration's delete access is off, though it holds
/// `integrations:write` (`AccessFlags::deletes_configuration`).
pub fn configuration_delete_refusal(who: &Describe) -> (String, String) {
    (
        format!(
            "Deleting heartbeats and integrations takes an integration's delete access as well as its configuration and write access: {} holds `integrations:write`, but its integration's access flags do not include allow_delete.",
            who.summary()
        ),
        "Turn on allow_delete for the integration (PATCH /v1/integrations/{id} with \"allow_delete\": true, or \"allowDeleteAccess\": true in PUT /v2/integrations/{id}; either needs integrations:write), or use a personal, team or organization key.".into(),
    )
}

/// Explains a permission decision in the words the refusal would use.
pub fn explain(
    grants: &Grants,
    required: Permission,
    resource: &Resource,
    who: &Describe,
) -> Explanation {
    let decision = authorize(grants, required, resource);
    explain_outcome(Ok(decision), who, required)
}

/// Explains a full outcome: a refusal before the permission check, or a permission decision.
pub fn explain_outcome(
    outcome: Result<Decision, Refusal>,
    who: &Describe,
    required: Permission,
) -> Explanation {
    match outcome {
        Ok(Decision::Allowed) => Explanation {
            allowed: true,
            code: None,
            reasons: vec![format!(
                "{} holds `{required}` where this action applies.",
                who.summary()
            )],
            fixes: vec![],
        },
        Ok(decision) => {
            let refusal = Refusal::Denied(decision);
            let (message, fixes) = describe_refusal(&refusal, Some(who));
            Explanation {
                allowed: false,
                code: Some(refusal.code()),
                reasons: vec![message],
                fixes,
            }
        }
        Err(refusal) => {
            let (message, fixes) = describe_refusal(&refusal, Some(who));
            Explanation {
                allowed: false,
                code: Some(refusal.code()),
                reasons: vec![message],
                fixes,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::Duration;

    fn team(n: u8) -> TeamId {
        TeamId::from_trusted(format!("team_{n:032x}"))
    }

    /// A fix that asks for an account-wide grant names only roles that can be one.
    #[test]
    fn an_account_wide_fix_names_account_roles_only() {
        for required in Permission::ALL.iter().copied() {
            let refusal = Refusal::Denied(Decision::ScopeDenied {
                required,
                key_teams: vec![team(1)],
                resource_teams: vec![],
            });
            let (_, fixes) = describe_refusal(&refusal, None);
            assert!(!fixes[0].contains("team_admin"), "{required}: {}", fixes[0]);
            assert!(
                fixes[0].contains("for example "),
                "{required}: {}",
                fixes[0]
            );
        }
    }

    fn perms() -> impl Strategy<Value = PermSet> {
        any::<u32>().prop_map(PermSet::from_bits)
    }

    fn grants() -> impl Strategy<Value = Grants> {
        (perms(), proptest::collection::vec((0u8..4, perms()), 0..4)).prop_map(
            |(account, teams)| {
                let mut g = Grants::account(account);
                for (t, p) in teams {
                    g.add_team(team(t), p);
                }
                g
            },
        )
    }

    fn permission() -> impl Strategy<Value = Permission> {
        (0..Permission::ALL.len()).prop_map(|i| Permission::ALL[i])
    }

    fn resource() -> impl Strategy<Value = Resource> {
        prop_oneof![
            Just(Resource::Org),
            Just(Resource::AnyTeam),
            proptest::collection::vec(0u8..4, 0..3)
                .prop_map(|ts| Resource::Teams(ts.into_iter().map(team).collect())),
        ]
    }

    proptest! {
        #[test]
        fn no_escalation_means_subset_in_every_scope(creator in grants(), requested in grants()) {
            let ok = check_no_escalation(&creator, &requested).is_ok();
            let subset = requested.account.is_subset(creator.account)
                && requested.teams.iter().all(|(t, p)| p.is_subset(creator.account.union(creator.team(t))));
            prop_assert_eq!(ok, subset);
            // And whatever passes can do nothing the creator cannot.
            if ok {
                for p in Permission::ALL {
                    for r in [Resource::Org, Resource::AnyTeam, Resource::Teams(vec![team(0)]), Resource::Teams(vec![team(1), team(2)])] {
                        if authorize(&requested, *p, &r).is_allowed() {
                            prop_assert!(authorize(&creator, *p, &r).is_allowed());
                        }
                    }
                }
            }
        }

        #[test]
        fn team_grants_never_reach_other_teams(team_perms in perms(), p in permission(), owners in proptest::collection::vec(1u8..4, 0..3)) {
            let mut g = Grants::default();
            g.add_team(team(0), team_perms);
            let r = Resource::Teams(owners.into_iter().map(team).collect());
            prop_assert!(!authorize(&g, p, &r).is_allowed());
            prop_assert!(!authorize(&g, p, &Resource::Org).is_allowed());
        }

        #[test]
        fn explain_agrees_with_authorize(g in grants(), p in permission(), r in resource()) {
            let decision = authorize(&g, p, &r);
            let e = explain(&g, p, &r, &Describe::default());
            prop_assert_eq!(e.allowed, decision.is_allowed());
            if !e.allowed {
                prop_assert_eq!(e.code, Some(Refusal::Denied(decision).code()));
                prop_assert!(!e.fixes.is_empty());
            }
        }

        #[test]
        fn revoked_or_expired_never_passes(offset in -1000i64..1000, revoked in any::<bool>(), grace in proptest::option::of(-1000i64..1000)) {
            let now = OffsetDateTime::now_utc();
            let state = CredentialState {
                expires_at: now + Duration::seconds(offset),
                revoked_at: revoked.then_some(now),
                revoked_by_name: None,
                grace_period_ends_at: grace.map(|g| now + Duration::seconds(g)),
                disabled_reason: None,
                allowed_cidrs: vec![],
            };
            let passes = check_state(&state, now, None).is_ok();
            let should = !revoked && offset > 0 && grace.is_none_or(|g| g > 0);
            prop_assert_eq!(passes, should);
        }
    }

    #[test]
    fn scope_denied_names_both_sides() {
        let mut g = Grants::default();
        g.add_team(team(0), [Permission::AlertsRead].into_iter().collect());
        let d = authorize(&g, Permission::AlertsRead, &Resource::Teams(vec![team(1)]));
        assert!(matches!(d, Decision::ScopeDenied { .. }));
        let (msg, _) = describe_refusal(&Refusal::Denied(d), None);
        assert!(msg.contains(team(0).as_str()) && msg.contains(team(1).as_str()));
        assert!(authorize(&g, Permission::AlertsRead, &Resource::AnyTeam).is_allowed());
    }

    #[test]
    fn a_team_grant_on_an_org_wide_object_is_named_as_held_only_within_the_team() {
        let mut g = Grants::default();
        g.add_team(team(0), [Permission::TeamsWrite].into_iter().collect());
        for r in [Resource::Org, Resource::Teams(vec![])] {
            let d = authorize(&g, Permission::TeamsWrite, &r);
            assert!(matches!(d, Decision::ScopeDenied { .. }), "{r:?}");
            let (msg, fixes) = describe_refusal(&Refusal::Denied(d), None);
            assert!(
                msg.contains(team(0).as_str()) && msg.contains("organization-wide"),
                "{msg}"
            );
            assert!(
                fixes[0].contains("account-wide") && fixes[0].contains("admin"),
                "{fixes:?}"
            );
        }
        // Not held anywhere: still a permission refusal.
        let d = authorize(&g, Permission::UsersRead, &Resource::Org);
        assert!(matches!(d, Decision::PermissionDenied { .. }));
    }

    #[test]
    fn cidrs_restrict_source() {
        let now = OffsetDateTime::now_utc();
        let state = CredentialState {
            expires_at: now + Duration::hours(1),
            revoked_at: None,
            revoked_by_name: None,
            grace_period_ends_at: None,
            disabled_reason: None,
            allowed_cidrs: vec!["10.0.0.0/8".parse().unwrap()],
        };
        assert!(check_state(&state, now, Some("10.1.2.3".parse().unwrap())).is_ok());
        let r = check_state(&state, now, Some("192.0.2.1".parse().unwrap())).unwrap_err();
        assert_eq!(r.code(), "ip_not_allowed");
        assert_eq!(r.http_status(), 403);
        // An address and its IPv4-mapped form are one address, on either side.
        assert!(check_state(&state, now, Some("::ffff:10.1.2.3".parse().unwrap())).is_ok());
        assert!(check_state(&state, now, Some("::ffff:192.0.2.1".parse().unwrap())).is_err());
        let mapped = CredentialState {
            allowed_cidrs: vec!["::ffff:10.0.0.0/104".parse().unwrap()],
            ..state
        };
        assert!(check_state(&mapped, now, Some("10.1.2.3".parse().unwrap())).is_ok());
        assert!(check_state(&mapped, now, Some("::ffff:10.1.2.3".parse().unwrap())).is_ok());
        assert!(check_state(&mapped, now, Some("192.0.2.1".parse().unwrap())).is_err());
        assert!(check_state(&mapped, now, Some("::1".parse().unwrap())).is_err());
    }

    #[test]
    fn permission_denied_says_which_roles_grant() {
        let (msg, fixes) = describe_refusal(
            &Refusal::Denied(Decision::PermissionDenied {
                required: Permission::AlertsDelete,
            }),
            Some(&Describe {
                kind: "team key".into(),
                name: "bot".into(),
                role_names: vec![],
                team_role_names: vec!["responder".into()],
                flags: None,
            }),
        );
        assert!(
            msg.contains("alerts:delete")
                && msg.contains("alert_admin")
                && msg.contains("team key `bot`")
        );
        assert!(!fixes.is_empty());
    }
}
