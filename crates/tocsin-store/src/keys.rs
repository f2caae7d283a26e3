//! API keys and their tokens (only digests are stored). A key has one current token and,
//! during a rotation's grace period, one previous token.

use crate::point_read::{PointReads, point};
use crate::references::check_references;
use crate::{
    BeginWrite, Page, Result, Store, StoreError, from_json, from_ms, ms, now_ms, on_db, paginate,
    safe, to_json,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tocsin_core::key::KeyKind;
use tocsin_core::token::TokenDigest;
use tocsin_core::{KeyId, OrgId, ServiceAccountId, TeamId, UserId};

/// Inserts a key's new current token inside an open transaction (a macro, so the same
/// statement serves whichever typed connection the arm of `on_db!` holds).
macro_rules! insert_token {
    ($tx:expr, $key:expr, $org:expr, $digest:expr, $hint:expr) => {
        sqlx::query(
            "INSERT INTO api_key_tokens (digest, key_id, org_id, is_current, hint, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&$digest[..])
        .bind($key.as_str())
        .bind($org.as_str())
        .bind(true)
        .bind($hint)
        .bind(now_ms())
        .execute(&mut *$tx)
        .await?
    };
}

/// Who did something: a user (by session or personal key) or a non-personal key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub name: String,
}

#[derive(Clone, Debug)]
pub struct ApiKey {
    pub id: KeyId,
    pub org_id: OrgId,
    pub kind: KeyKind,
    pub name: String,
    pub description: String,
    pub user_id: Option<UserId>,
    pub team_id: Option<TeamId>,
    pub integration_id: Option<String>,
    pub service_account_id: Option<ServiceAccountId>,
    pub role_names: Vec<String>,
    pub team_ids: Vec<TeamId>,
    pub team_role_names: Vec<String>,
    pub allowed_cidrs: Vec<String>,
    pub region: String,
    pub token_hint: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub created_by: Actor,
    pub expires_at: OffsetDateTime,
    pub token_last_issued_at: OffsetDateTime,
    pub grace_period_ends_at: Option<OffsetDateTime>,
    pub last_used_at: Option<OffsetDateTime>,
    pub last_used_ip: Option<String>,
    pub revoked_at: Option<OffsetDateTime>,
    pub revoked_by: Option<Actor>,
    /// Requests per minute this key may make (429 above it); `None`: no limit of its own.
    pub rate_limit: Option<u32>,
}

impl ApiKey {
    /// True when the key holds roles of its own (`role_names`, `team_role_names` or both): a
    /// personal key so narrowed acts with less than its user's rights, and manages only
    /// itself.
    pub fn is_narrowed(&self) -> bool {
        !self.role_names.is_empty() || !self.team_role_names.is_empty()
    }

    /// A new, live key with no roles, teams or network limits; callers set what their kind needs.
    pub fn new(
        org_id: OrgId,
        kind: KeyKind,
        name: String,
        created_by: Actor,
        expires_at: OffsetDateTime,
        region: String,
        token_hint: String,
    ) -> ApiKey {
        let now = OffsetDateTime::now_utc();
        ApiKey {
            id: KeyId::generate(),
            org_id,
            kind,
            name,
            description: String::new(),
            user_id: None,
            team_id: None,
            integration_id: None,
            service_account_id: None,
            role_names: vec![],
            team_ids: vec![],
            team_role_names: vec![],
            allowed_cidrs: vec![],
            region,
            token_hint,
            created_at: now,
            updated_at: now,
            created_by,
            expires_at,
            token_last_issued_at: now,
            grace_period_ends_at: None,
            last_used_at: None,
            last_used_ip: None,
            revoked_at: None,
            revoked_by: None,
            rate_limit: None,
        }
    }

    /// The id names are unique within: the user, team, organization or integration.
    pub fn scope_id(&self) -> String {
        match self.kind {
            KeyKind::Personal => self.user_id.as_ref().map(ToString::to_string),
            KeyKind::Team => self.team_id.as_ref().map(ToString::to_string),
            KeyKind::Organization => Some(self.org_id.to_string()),
            KeyKind::Integration => self.integration_id.clone(),
        }
        .unwrap_or_default()
    }
}

/// Which token of a key was presented.
#[derive(Clone, Debug)]
pub struct TokenMatch {
    pub is_current: bool,
    pub grace_ends_at: Option<OffsetDateTime>,
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: String,
    org_id: String,
    kind: String,
    name: String,
    description: String,
    user_id: Option<String>,
    team_id: Option<String>,
    integration_id: Option<String>,
    service_account_id: Option<String>,
    role_names: String,
    team_ids: String,
    team_role_names: String,
    allowed_cidrs: String,
    region: String,
    token_hint: String,
    created_at: i64,
    updated_at: i64,
    created_by_type: String,
    created_by_id: String,
    created_by_name: String,
    expires_at: i64,
    token_last_issued_at: i64,
    grace_period_ends_at: Option<i64>,
    last_used_at: Option<i64>,
    last_used_ip: Option<String>,
    revoked_at: Option<i64>,
    revoked_by_type: Option<String>,
    revoked_by_id: Option<String>,
    revoked_by_name: Option<String>,
    rate_limit: Option<i64>,
}

crate::point_read::rusqlite_row!(KeyRow {
    id,
    org_id,
    kind,
    name,
    description,
    user_id,
    team_id,
    integration_id,
    service_account_id,
    role_names,
    team_ids,
    team_role_names,
    allowed_cidrs,
    region,
    token_hint,
    created_at,
    updated_at,
    created_by_type,
    created_by_id,
    created_by_name,
    expires_at,
    token_last_issued_at,
    grace_period_ends_at,
    last_used_at,
    last_used_ip,
    revoked_at,
    revoked_by_type,
    revoked_by_id,
    revoked_by_name,
    rate_limit,
});

impl From<KeyRow> for ApiKey {
    fn from(r: KeyRow) -> Self {
        let team_ids: Vec<String> = from_json(&r.team_ids);
        ApiKey {
            id: KeyId::from_trusted(r.id),
            org_id: OrgId::from_trusted(r.org_id),
            kind: KeyKind::parse(&r.kind).unwrap_or(KeyKind::Personal),
            name: r.name,
            description: r.description,
            user_id: r.user_id.map(UserId::from_trusted),
            team_id: r.team_id.map(TeamId::from_trusted),
            integration_id: r.integration_id,
            service_account_id: r.service_account_id.map(ServiceAccountId::from_trusted),
            role_names: from_json(&r.role_names),
            team_ids: team_ids.into_iter().map(TeamId::from_trusted).collect(),
            team_role_names: from_json(&r.team_role_names),
            allowed_cidrs: from_json(&r.allowed_cidrs),
            region: r.region,
            token_hint: r.token_hint,
            created_at: from_ms(r.created_at),
            updated_at: from_ms(r.updated_at),
            created_by: Actor {
                kind: r.created_by_type,
                id: r.created_by_id,
                name: r.created_by_name,
            },
            expires_at: from_ms(r.expires_at),
            token_last_issued_at: from_ms(r.token_last_issued_at),
            grace_period_ends_at: r.grace_period_ends_at.map(from_ms),
            last_used_at: r.last_used_at.map(from_ms),
            last_used_ip: r.last_used_ip,
            revoked_at: r.revoked_at.map(from_ms),
            revoked_by: match (r.revoked_by_type, r.revoked_by_id, r.revoked_by_name) {
                (Some(kind), Some(id), Some(name)) => Some(Actor { kind, id, name }),
                _ => None,
            },
            rate_limit: r.rate_limit.and_then(|n| u32::try_from(n).ok()),
        }
    }
}

/// How long a token replaced by a rotation is kept after its grace ended, so that it is refused
/// as `expired_key` (saying when) rather than as a token no key has. Pruned at the key's next
/// rotation.
pub const RETIRED_TOKENS_KEPT_DAYS: i64 = 30;

const COLUMNS: &str = "k.id, k.org_id, k.kind, k.name, k.description, k.user_id, k.team_id, k.integration_id,
    k.service_account_id, k.role_names, k.team_ids, k.team_role_names, k.allowed_cidrs, k.region, k.token_hint,
    k.created_at, k.updated_at, k.created_by_type, k.created_by_id, k.created_by_name, k.expires_at,
    k.token_last_issued_at, k.grace_period_ends_at, k.last_used_at, k.last_used_ip, k.revoked_at,
    k.revoked_by_type, k.revoked_by_id, k.revoked_by_name, k.rate_limit";

/// A non-human principal made for a team or organization key.
#[derive(Clone, Debug)]
pub struct ServiceAccount {
    pub id: ServiceAccountId,
    pub name: String,
    pub team_id: Option<TeamId>,
}

/// Which keys a caller may see in a list.
#[derive(Clone, Debug, Default)]
pub struct KeyVisibility {
    /// Every key of the organization.
    pub all: bool,
    /// Team keys of these teams.
    pub teams: Vec<TeamId>,
    /// Personal keys of this user.
    pub user: Option<UserId>,
}

#[derive(Clone, Debug, Default)]
pub struct KeyFilter {
    pub kind: Option<KeyKind>,
    pub team_id: Option<TeamId>,
    pub integration_id: Option<String>,
    pub include_revoked: bool,
}

#[derive(Clone, Debug, Default)]
pub struct KeyPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub role_names: Option<Vec<String>>,
    pub team_role_names: Option<Vec<String>>,
    pub allowed_cidrs: Option<Vec<String>>,
    pub expires_at: Option<OffsetDateTime>,
    /// `Some(None)` removes the key's limit.
    pub rate_limit: Option<Option<u32>>,
}

impl Store {
    /// Creates a key, its first token and (for team and organization keys) its service account, atomically.
    pub async fn insert_key(
        &self,
        key: &ApiKey,
        digest: &TokenDigest,
        account: Option<&ServiceAccount>,
    ) -> Result<()> {
        let team_ids: Vec<&str> = key.team_ids.iter().map(|t| t.as_str()).collect();
        let references = self
            .references()
            .account_roles(&key.role_names)
            .team_roles(&key.team_role_names)
            .teams(key.team_id.iter().chain(&key.team_ids).map(TeamId::as_str))
            .integration(key.integration_id.as_deref());
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            // What the key names must still exist as it is written. A delete racing this
            // create (the route checked a moment ago) either finds the key once this commits
            // (PostgreSQL: it waits for the shared row lock; SQLite writes one at a time) or
            // wins, and then this create is refused.
            check_references!(tx, key.org_id.as_str(), references);
            if let Some(sa) = account {
                sqlx::query("INSERT INTO service_accounts (id, org_id, name, team_id, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(sa.id.as_str())
                    .bind(key.org_id.as_str())
                    .bind(&sa.name)
                    .bind(sa.team_id.as_ref().map(|t| t.as_str()))
                    .bind(ms(key.created_at))
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO api_keys (id, org_id, kind, name, name_folded, scope_id, description, user_id, team_id,
                   integration_id, service_account_id, role_names, team_ids, team_role_names, allowed_cidrs, region,
                   token_hint, created_at, updated_at, created_by_type, created_by_id, created_by_name, expires_at,
                   token_last_issued_at, rate_limit)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $18, $19, $20, $21, $22, $18, $23)",
            )
            .bind(key.id.as_str())
            .bind(key.org_id.as_str())
            .bind(key.kind.name())
            .bind(&key.name)
            .bind(key.name.to_lowercase())
            .bind(key.scope_id())
            .bind(&key.description)
            .bind(key.user_id.as_ref().map(|u| u.as_str()))
            .bind(key.team_id.as_ref().map(|t| t.as_str()))
            .bind(key.integration_id.as_deref())
            .bind(key.service_account_id.as_ref().map(|s| s.as_str()))
            .bind(to_json(&key.role_names))
            .bind(to_json(&team_ids))
            .bind(to_json(&key.team_role_names))
            .bind(to_json(&key.allowed_cidrs))
            .bind(&key.region)
            .bind(&key.token_hint)
            .bind(ms(key.created_at))
            .bind(&key.created_by.kind)
            .bind(&key.created_by.id)
            .bind(&key.created_by.name)
            .bind(ms(key.expires_at))
            .bind(key.rate_limit.map(i64::from))
            .execute(&mut *tx)
            .await?;
            insert_token!(tx, key.id, key.org_id, digest, &key.token_hint);
            tx.commit().await?;
        });
        Ok(())
    }

    /// The key a token digest belongs to, with which of its tokens it is. Not tenant-scoped:
    /// this is how a request's organization is found.
    pub async fn find_key_by_digest(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<(ApiKey, TokenMatch)>> {
        let sql = format!(
            "SELECT {COLUMNS}, t.is_current, t.grace_ends_at FROM api_key_tokens t JOIN api_keys k ON k.id = t.key_id WHERE t.digest = $1"
        );
        #[derive(sqlx::FromRow)]
        struct Joined {
            #[sqlx(flatten)]
            key: KeyRow,
            is_current: bool,
            grace_ends_at: Option<i64>,
        }
        let point = point(self.reads.as_deref(), |reads| {
            reads.optional(&sql, [&digest[..]], |r| {
                Ok(Joined {
                    key: KeyRow::from_rusqlite(r)?,
                    is_current: r.get("is_current")?,
                    grace_ends_at: r.get("grace_ends_at")?,
                })
            })
        })?;
        let row: Option<Joined> = match point {
            Some(row) => row,
            None => on_db!(&self.db, |pool| sqlx::query_as(safe(&sql))
                .bind(&digest[..])
                .fetch_optional(pool)
                .await?),
        };
        Ok(row.map(|j| {
            (
                j.key.into(),
                TokenMatch {
                    is_current: j.is_current,
                    grace_ends_at: j.grace_ends_at.map(from_ms),
                },
            )
        }))
    }

    pub async fn get_key(&self, org: &OrgId, id: &KeyId) -> Result<ApiKey> {
        let sql = format!("SELECT {COLUMNS} FROM api_keys k WHERE k.org_id = $1 AND k.id = $2");
        let row: KeyRow = on_db!(&self.db, |pool| sqlx::query_as(safe(&sql))
            .bind(org.as_str())
            .bind(id.as_str())
            .fetch_one(pool)
            .await?);
        Ok(row.into())
    }

    pub async fn list_keys(
        &self,
        org: &OrgId,
        filter: &KeyFilter,
        visible: &KeyVisibility,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<ApiKey>> {
        // Fixed parameters first; the visible teams follow as $8.. so the statement stays one string.
        let mut vis = vec!["$7 = 1".to_owned(), "k.user_id = $6".to_owned()];
        if !visible.teams.is_empty() {
            let ps: Vec<String> = (0..visible.teams.len())
                .map(|i| format!("${}", i + 9))
                .collect();
            vis.push(format!("k.team_id IN ({})", ps.join(", ")));
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM api_keys k WHERE k.org_id = $1
               AND ($2 IS NULL OR k.kind = $2) AND ($3 IS NULL OR k.team_id = $3) AND ($4 IS NULL OR k.integration_id = $4)
               AND ($5 = 1 OR k.revoked_at IS NULL) AND ({})
               AND ($8 IS NULL OR k.id < $8)
             ORDER BY k.id DESC LIMIT {}",
            vis.join(" OR "),
            limit + 1
        );
        let rows: Vec<KeyRow> = on_db!(&self.db, |pool| {
            let mut q = sqlx::query_as(safe(&sql))
                .bind(org.as_str())
                .bind(filter.kind.map(|k| k.name()))
                .bind(filter.team_id.as_ref().map(|t| t.as_str()))
                .bind(filter.integration_id.as_deref())
                .bind(filter.include_revoked as i64)
                .bind(visible.user.as_ref().map(|u| u.as_str()))
                .bind(visible.all as i64)
                .bind(cursor);
            for t in &visible.teams {
                q = q.bind(t.as_str());
            }
            q.fetch_all(pool).await?
        });
        Ok(paginate(
            rows.into_iter().map(ApiKey::from).collect(),
            limit,
            |k: &ApiKey| k.id.to_string(),
        ))
    }

    /// Changes a key. The custom roles the patch gives it are checked inside the update's
    /// transaction, as `insert_key` checks a new key's: a role deleted at the same moment
    /// either counts this key as a holder (and is not deleted) or is gone, and then nothing
    /// is written (`StoreError::Vanished`).
    pub async fn update_key(&self, org: &OrgId, id: &KeyId, patch: &KeyPatch) -> Result<ApiKey> {
        let references = self
            .references()
            .account_roles(patch.role_names.iter().flatten())
            .team_roles(patch.team_role_names.iter().flatten());
        let n = on_db!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            check_references!(tx, org.as_str(), references);
            let n = sqlx::query(
                "UPDATE api_keys SET name = COALESCE($3, name), name_folded = COALESCE($4, name_folded),
                   description = COALESCE($5, description), role_names = COALESCE($6, role_names),
                   team_role_names = COALESCE($7, team_role_names), allowed_cidrs = COALESCE($8, allowed_cidrs),
                   expires_at = COALESCE($9, expires_at), updated_at = $10,
                   rate_limit = CASE WHEN $11 THEN $12 ELSE rate_limit END
                 WHERE org_id = $1 AND id = $2",
            )
            .bind(org.as_str())
            .bind(id.as_str())
            .bind(patch.name.as_deref())
            .bind(patch.name.as_deref().map(str::to_lowercase))
            .bind(patch.description.as_deref())
            .bind(patch.role_names.as_ref().map(to_json))
            .bind(patch.team_role_names.as_ref().map(to_json))
            .bind(patch.allowed_cidrs.as_ref().map(to_json))
            .bind(patch.expires_at.map(ms))
            .bind(now_ms())
            .bind(patch.rate_limit.is_some())
            .bind(patch.rate_limit.flatten().map(i64::from))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            n
        });
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        self.get_key(org, id).await
    }

    /// Issues a new current token. The old current token stays valid until `grace_ends_at`
    /// (ends at once when `None`), and any older token's grace ends now, so at most two are
    /// valid. Replaced tokens are kept for `RETIRED_TOKENS_KEPT_DAYS` after their grace.
    pub async fn rotate_key(
        &self,
        org: &OrgId,
        id: &KeyId,
        digest: &TokenDigest,
        hint: &str,
        grace_ends_at: Option<OffsetDateTime>,
    ) -> Result<ApiKey> {
        let now = now_ms();
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            // The key row first: only a live key of this organization is rotated, and
            // nothing else is touched (the transaction rolls back) when there is none.
            let found = sqlx::query(
                "UPDATE api_keys SET token_hint = $3, token_last_issued_at = $4, grace_period_ends_at = $5, updated_at = $4
                 WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL",
            )
            .bind(org.as_str())
            .bind(id.as_str())
            .bind(hint)
            .bind(now)
            .bind(grace_ends_at.map(ms))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if found == 0 {
                return Err(StoreError::NotFound);
            }
            // Tokens replaced earlier end their grace now, and the current one starts its own
            // (or ends at once). Replaced tokens are kept, not deleted, so that one presented
            // later is refused as `expired_key` with when it ended, not as an unknown token;
            // those that ended more than `RETIRED_TOKENS_KEPT_DAYS` ago go.
            sqlx::query(
                "DELETE FROM api_key_tokens WHERE org_id = $1 AND key_id = $2 AND is_current = $3 AND grace_ends_at < $4",
            )
            .bind(org.as_str())
            .bind(id.as_str())
            .bind(false)
            .bind(now - RETIRED_TOKENS_KEPT_DAYS * 86_400_000)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE api_key_tokens SET grace_ends_at = $4
                 WHERE org_id = $1 AND key_id = $2 AND is_current = $3 AND (grace_ends_at IS NULL OR grace_ends_at > $4)",
            )
            .bind(org.as_str())
            .bind(id.as_str())
            .bind(false)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE api_key_tokens SET is_current = $3, grace_ends_at = $4 WHERE org_id = $1 AND key_id = $2 AND is_current = $5",
            )
            .bind(org.as_str())
            .bind(id.as_str())
            .bind(false)
            .bind(grace_ends_at.map_or(now, ms))
            .bind(true)
            .execute(&mut *tx)
            .await?;
            insert_token!(tx, id, org, digest, hint);
            tx.commit().await?;
        });
        self.get_key(org, id).await
    }

    /// Revokes every token of the key. Idempotent: a second revocation keeps the first's time and author.
    pub async fn revoke_key(&self, org: &OrgId, id: &KeyId, by: &Actor) -> Result<(ApiKey, bool)> {
        let n = on_db!(&self.db, |pool| {
            sqlx::query(
                "UPDATE api_keys SET revoked_at = $3, revoked_by_type = $4, revoked_by_id = $5, revoked_by_name = $6, updated_at = $3
                 WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL",
            )
            .bind(org.as_str())
            .bind(id.as_str())
            .bind(now_ms())
            .bind(&by.kind)
            .bind(&by.id)
            .bind(&by.name)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok((self.get_key(org, id).await?, n > 0))
    }

    /// Records last use for many keys in one transaction; never moves a time backwards.
    pub async fn touch_keys(&self, uses: &[(KeyId, OffsetDateTime, String)]) -> Result<()> {
        if uses.is_empty() {
            return Ok(());
        }
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            for (id, at, ip) in uses {
                sqlx::query(
                    "UPDATE api_keys SET last_used_at = $2, last_used_ip = $3 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
                )
                .bind(id.as_str())
                .bind(ms(*at))
                .bind(ip)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Keys past their expiry whose `api_key.expired` event has not been recorded yet; marks them.
    pub async fn take_newly_expired(&self, now: OffsetDateTime) -> Result<Vec<ApiKey>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM api_keys k WHERE k.expires_at <= $1 AND k.expiry_recorded = $2 AND k.revoked_at IS NULL ORDER BY k.id LIMIT 500"
        );
        let rows: Vec<KeyRow> = on_db!(&self.db, |pool| sqlx::query_as(safe(&sql))
            .bind(ms(now))
            .bind(false)
            .fetch_all(pool)
            .await?);
        let keys: Vec<ApiKey> = rows.into_iter().map(Into::into).collect();
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            for k in &keys {
                sqlx::query("UPDATE api_keys SET expiry_recorded = $2 WHERE id = $1")
                    .bind(k.id.as_str())
                    .bind(true)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(keys)
    }

    pub async fn get_service_account_name(
        &self,
        org: &OrgId,
        id: &ServiceAccountId,
    ) -> Result<String> {
        const SQL: &str = "SELECT name FROM service_accounts WHERE org_id = $1 AND id = $2";
        let read = |reads: &PointReads| reads.one(SQL, (org.as_str(), id.as_str()), |r| r.get(0));
        if let Some(name) = point(self.reads.as_deref(), read)? {
            return Ok(name);
        }
        let (name,): (String,) = on_db!(&self.db, |pool| {
            sqlx::query_as(SQL)
                .bind(org.as_str())
                .bind(id.as_str())
                .fetch_one(pool)
                .await?
        });
        Ok(name)
    }
}
