//! First start: the server secret, and `init` / `orgs create` (an organization, its owner
//! and the owner's first personal key, whose token is returned exactly once).

use crate::config::Settings;
use anyhow::{Context, bail};
use std::io::Write;
use std::path::PathBuf;
use time::{Duration, OffsetDateTime};
use tocsin_core::key::KeyKind;
use tocsin_core::token::{Token, TokenHasher, generate_secret_hex};
use tocsin_core::{KeyId, OrgId, UserId};
use tocsin_store::Store;
use tocsin_store::audit::{AuditActor, AuditRecord, AuditTarget};
use tocsin_store::keys::{Actor, ApiKey};
use tocsin_store::orgs::Organization;
use tocsin_store::users::User;

/// Writes `contents` to a new file only its owner can read.
pub fn write_private(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// The server secret: `--secret-file`, or `<data-dir>/secret`, generated on first start.
pub fn load_secret(settings: &Settings) -> anyhow::Result<Vec<u8>> {
    let path: PathBuf = match &settings.secret_file {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| {
                format!("invalid setting `secret-file`: cannot read {}", p.display())
            })?;
            let text = text.trim();
            if text.len() < 32 {
                bail!(
                    "invalid setting `secret-file`: {} holds fewer than 32 characters",
                    p.display()
                );
            }
            return Ok(text.as_bytes().to_vec());
        }
        None => settings.data_dir.join("secret"),
    };
    if !path.exists() {
        write_private(&path, &generate_secret_hex())?;
    }
    Ok(std::fs::read_to_string(&path)?.trim().as_bytes().to_vec())
}

/// Opens the store (creating the data directory) and migrates it.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    std::fs::create_dir_all(&settings.data_dir).with_context(|| {
        format!(
            "invalid setting `data-dir`: cannot create {}",
            settings.data_dir.display()
        )
    })?;
    let store = Store::connect(&settings.database_url())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    store
        .migrate()
        .await
        .map_err(|e| anyhow::anyhow!("migration failed: {e}"))?;
    Ok(store)
}

/// Refuses to run with a secret other than the one the database was initialized with.
pub async fn check_secret(store: &Store, secret: &[u8]) -> anyhow::Result<()> {
    let fp = TokenHasher::secret_fingerprint(secret);
    // The first node records its fingerprint; nodes started at the same moment race on
    // the claim, and every loser compares against what the winner recorded.
    store.meta_claim("secret_fingerprint", &fp).await?;
    match store.meta_get("secret_fingerprint").await? {
        Some(stored) if stored != fp => bail!(
            "invalid setting `secret-file`: this database was set up with another server secret (fingerprint {stored}, this one is {fp}); every key would be unknown. Use the original secret file."
        ),
        _ => Ok(()),
    }
}

/// What `init` and `orgs create` print once (`--json` serializes it, token included).
#[derive(serde::Serialize)]
pub struct Created {
    pub organization_id: OrgId,
    pub user_id: UserId,
    pub api_key_id: KeyId,
    pub token: String,
}

/// Never the token: `Debug` output ends up in logs and panic messages.
impl std::fmt::Debug for Created {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hint = self
            .token
            .get(self.token.len().saturating_sub(4)..)
            .unwrap_or("");
        f.debug_struct("Created")
            .field("organization_id", &self.organization_id)
            .field("user_id", &self.user_id)
            .field("api_key_id", &self.api_key_id)
            .field("token", &format_args!("…{hint}"))
            .finish()
    }
}

pub async fn is_initialized(store: &Store) -> anyhow::Result<bool> {
    Ok(store.meta_get("initialized_at").await?.is_some())
}

/// `tocsin init`: the first organization. Refuses when the data is already initialized.
pub async fn init(
    store: &Store,
    hasher: &TokenHasher,
    region: &str,
    org: &str,
    email: &str,
    password_hash: Option<&str>,
) -> anyhow::Result<Created> {
    match try_init(store, hasher, region, org, email, password_hash).await? {
        Some(created) => Ok(created),
        None => bail!(
            "this deployment is already initialized; use `tocsin orgs create` to add an organization"
        ),
    }
}

/// Initializes unless some process already has: nodes started together on one empty database
/// race here, and the one whose claim on `initialized_at` lands first does the work.
pub async fn try_init(
    store: &Store,
    hasher: &TokenHasher,
    region: &str,
    org: &str,
    email: &str,
    password_hash: Option<&str>,
) -> anyhow::Result<Option<Created>> {
    let now = OffsetDateTime::now_utc().unix_timestamp().to_string();
    if !store.meta_claim("initialized_at", &now).await? {
        return Ok(None);
    }
    match create_org(store, hasher, region, org, email, password_hash).await {
        Ok(created) => Ok(Some(created)),
        Err(e) => {
            // Give the claim back, so that a corrected retry can initialize.
            store.meta_delete("initialized_at").await?;
            Err(e)
        }
    }
}

/// An organization with its owner and the owner's first personal key (one year).
pub async fn create_org(
    store: &Store,
    hasher: &TokenHasher,
    region: &str,
    org_name: &str,
    email: &str,
    password_hash: Option<&str>,
) -> anyhow::Result<Created> {
    let name = tocsin_core::key::KeyName::parse(org_name)
        .map_err(|r| anyhow::anyhow!("invalid `--org`: {r}"))?;
    if !email.contains('@') {
        bail!("invalid `--email`: `{email}` is not an email address");
    }
    let now = OffsetDateTime::now_utc();
    let org = Organization {
        id: OrgId::generate(),
        name: name.as_str().to_owned(),
        max_key_days: None,
        alerts_require_integration_key: false,
        created_at: now,
    };
    store.insert_org(&org).await?;
    let user = User {
        id: UserId::generate(),
        org_id: org.id.clone(),
        email: email.to_owned(),
        name: "Owner".into(),
        role_name: "owner".into(),
        active: true,
        created_at: now,
        updated_at: now,
    };
    store.insert_user(&user, password_hash).await?;
    let token = Token::generate(KeyKind::Personal.token_kind(), region);
    let owner = Actor {
        kind: "user".into(),
        id: user.id.to_string(),
        name: user.name.clone(),
    };
    let mut key = ApiKey::new(
        org.id.clone(),
        KeyKind::Personal,
        "owner key".into(),
        owner,
        now + Duration::days(365),
        region.to_owned(),
        token.hint(),
    );
    key.description = "Created by tocsin init.".into();
    key.user_id = Some(user.id.clone());
    store.insert_key(&key, &hasher.digest(&token), None).await?;
    let mut event = AuditRecord::new(Some(org.id.clone()), "api_key.created", "allowed");
    event.actor = Some(AuditActor {
        kind: "user".into(),
        id: user.id.to_string(),
        name: user.email.clone(),
    });
    event.target = Some(AuditTarget {
        kind: "api_key".into(),
        id: key.id.to_string(),
    });
    store.append_audit(&[event]).await?;
    Ok(Created {
        organization_id: org.id,
        user_id: user.id,
        api_key_id: key.id,
        token: token.expose().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_core::token::{MalformedToken, TokenKind};

    /// Item 8 of issue 6: no type that holds a token or the server secret shows it in
    /// `Debug` (or `Display`), since either may end up in a log line or a panic message.
    #[test]
    fn secrets_never_show_in_debug_output() {
        for kind in [
            TokenKind::Personal,
            TokenKind::Integration,
            TokenKind::Session,
        ] {
            let t = Token::generate(kind, "us");
            let secret = &t.expose()[9..];
            for shown in [format!("{t:?}"), format!("{t}"), format!("{:?}", Some(&t))] {
                assert!(!shown.contains(secret), "{shown}");
                assert!(shown.contains(&t.hint()), "{shown}");
            }
            // A damaged token's refusal names the damage, never the token.
            let damaged = &t.expose()[..t.expose().len() - 1];
            let e = Token::parse(damaged).unwrap_err();
            assert_eq!(e, MalformedToken::Length { found: 37 });
            assert!(!format!("{e:?} {e}").contains(&damaged[9..]));

            let created = Created {
                organization_id: OrgId::generate(),
                user_id: UserId::generate(),
                api_key_id: KeyId::generate(),
                token: t.expose().to_owned(),
            };
            let shown = format!("{created:?}");
            assert!(!shown.contains(secret), "{shown}");
            assert!(shown.contains(&t.hint()), "{shown}");
            // `--json` is where the token is meant to be shown, once.
            assert!(
                serde_json::to_string(&created)
                    .unwrap()
                    .contains(t.expose())
            );
        }
        // The server secret lives only in `TokenHasher`, which has no `Debug` at all, and
        // `Settings` holds its path, never its content.
    }
}
