//! First start: the server secret, and `init` / `orgs create` (an organization, its owner
//! and the owner's first personal key, whose token is returned exactly once).

use crate::config::Settings;
use anyhow::{Context, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};
use tocsin_core::key::KeyKind;
use tocsin_core::token::{Token, TokenHasher, generate_secret_hex};
use tocsin_core::{KeyId, OrgId, UserId};
use tocsin_store::Store;
use tocsin_store::audit::{AuditActor, AuditRecord, AuditTarget};
use tocsin_store::keys::{Actor, ApiKey};
use tocsin_store::orgs::Organization;
use tocsin_store::users::User;

/// Creates a new, empty file only its owner can read. A path that already exists is refused,
/// a symlink (even a dangling one) included, since `O_CREAT | O_EXCL` never follows one: a
/// file left there would keep its own mode, and a planted link would lead the write
/// elsewhere.
pub fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)
}

/// `<data-dir>/owner-token`, created (empty, mode 0600) before an empty database is
/// initialized, so that a file already there stops the start before an owner token exists
/// that could not be written anywhere safe.
pub struct OwnerTokenFile {
    path: PathBuf,
    file: std::fs::File,
}

impl OwnerTokenFile {
    pub fn create(data_dir: &Path) -> anyhow::Result<OwnerTokenFile> {
        let path = data_dir.join("owner-token");
        // An empty regular file there is this very step's, left by a first start that was
        // stopped before the owner existed: it holds nothing, and a fresh one (O_EXCL) takes
        // its place. Anything else (a token, a link) is refused below.
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file() && m.len() == 0) {
            let _ = std::fs::remove_file(&path);
        }
        match create_private(&path) {
            Ok(file) => Ok(OwnerTokenFile { path, file }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
                "{} already exists, but the database has no owner yet, so it is not this deployment's owner token: move it away (or delete it) and start again, and the new owner token is written there",
                path.display()
            ),
            Err(e) => bail!(
                "invalid setting `data-dir`: cannot create {}: {e}",
                path.display()
            ),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the token and syncs it to disk.
    pub fn write(mut self, token: &str) -> anyhow::Result<()> {
        self.file
            .write_all(format!("{token}\n").as_bytes())
            .and_then(|()| self.file.sync_all())
            .with_context(|| {
                format!(
                    "the deployment was initialized, but its owner token could not be written to {}",
                    self.path.display()
                )
            })
    }

    /// Another node initialized the database, or initializing failed: no token to write.
    pub fn discard(self) {
        drop(self.file);
        let _ = std::fs::remove_file(&self.path);
    }
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
            warn_if_shared(p);
            return Ok(text.as_bytes().to_vec());
        }
        None => settings.data_dir.join("secret"),
    };
    // `symlink_metadata`: a dangling link is something there, not a place to write.
    if std::fs::symlink_metadata(&path).is_err() {
        create_secret(&path).with_context(|| {
            format!(
                "invalid setting `data-dir`: cannot create the server secret {}",
                path.display()
            )
        })?;
    }
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "invalid setting `data-dir`: cannot read the server secret {}",
            path.display()
        )
    })?;
    let text = text.trim();
    if text.len() < 32 {
        bail!(
            "invalid setting `data-dir`: the server secret {} holds fewer than 32 characters; restore it from a backup (tokens are checked with it), or remove it on a deployment that has no data yet",
            path.display()
        );
    }
    Ok(text.as_bytes().to_vec())
}

/// Writes a new secret to `path` whole or not at all: into a private file of its own first,
/// then linked into place (a link never replaces what is there). A process starting at the
/// same moment thus reads either no secret or a complete one, never an empty file it would
/// then hash tokens with; the one whose link fails reads the other's.
fn create_secret(path: &Path) -> std::io::Result<()> {
    let staging = path.with_extension(format!("new-{}", std::process::id()));
    let _ = std::fs::remove_file(&staging);
    let mut f = create_private(&staging)?;
    let written = f
        .write_all(generate_secret_hex().as_bytes())
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::hard_link(&staging, path));
    let _ = std::fs::remove_file(&staging);
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// Creates the data directory, only its owner may enter it (it holds the database, the
/// secret and the owner token); a directory that already exists keeps its mode, the
/// operator's choice.
pub fn create_data_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).with_context(|| {
        format!(
            "invalid setting `data-dir`: cannot create {}",
            dir.display()
        )
    })
}

/// Opens the store (creating the data directory, and the SQLite file only its owner can
/// read) and migrates it.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    create_data_dir(&settings.data_dir)?;
    if let Some(path) = settings.sqlite_path() {
        // SQLite gives the -wal and -shm files the mode of the database file.
        match create_private(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => bail!(
                "invalid setting `{}`: cannot create {}: {e}",
                settings.database_setting(),
                path.display()
            ),
        }
    }
    let store = connect(settings).await?;
    store
        .migrate()
        .await
        .map_err(|e| anyhow::anyhow!("migration failed: {e}"))?;
    Ok(store)
}

/// Opens a store that must already exist, never creating one: a mistyped path given to
/// `audit verify`, `migrate` or `orgs create` would otherwise be answered about a new,
/// empty database. (PostgreSQL refuses a database that does not exist by itself.)
pub async fn open_existing_store(settings: &Settings) -> anyhow::Result<Store> {
    if let Some(path) = settings.sqlite_path()
        && !path.is_file()
    {
        bail!(
            "invalid setting `{}`: there is no database at {}; check the path (`tocsin serve` or `tocsin init` creates one)",
            settings.database_setting(),
            path.display()
        );
    }
    connect(settings).await
}

async fn connect(settings: &Settings) -> anyhow::Result<Store> {
    Store::connect(&settings.database_url())
        .await
        .map_err(|e| match settings.sqlite_path() {
            Some(path) => anyhow::anyhow!(
                "invalid setting `{}`: cannot open {}: {e}",
                settings.database_setting(),
                path.display()
            ),
            None => anyhow::anyhow!("invalid setting `{}`: {e}", settings.database_setting()),
        })
}

/// Warns when a given secret file can be read by users other than its owner: whoever reads
/// it can check guessed tokens offline. (The generated one is made 0600.)
fn warn_if_shared(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            let mode = format!("{:o}", meta.permissions().mode() & 0o777);
            let why = "the server secret file can be read by other users; make it readable by the server's user alone (chmod 600)";
            // `init` and `orgs create` have no log: they say it on standard error.
            if tracing::dispatcher::has_been_set() {
                tracing::warn!(path = %path.display(), mode, "{why}");
            } else {
                eprintln!("warning: {why}: {} (mode {mode})", path.display());
            }
        }
    }
}

/// The server secret and the store. A secret file that was given is read first, so that a
/// bad one stops the start before a data directory or database is made; the generated
/// secret lives in the data directory that opening the store makes.
pub async fn secret_and_store(
    settings: &Settings,
    open: impl std::future::Future<Output = anyhow::Result<Store>>,
) -> anyhow::Result<(Vec<u8>, Store)> {
    let given = match &settings.secret_file {
        Some(_) => Some(load_secret(settings)?),
        None => None,
    };
    let store = open.await?;
    let secret = match given {
        Some(secret) => secret,
        None => {
            // A database set up with a secret whose file is gone: a new one would make every
            // key unknown (check_secret would refuse it, leaving the wrong file behind).
            let path = settings.data_dir.join("secret");
            if std::fs::symlink_metadata(&path)
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
                && let Some(fingerprint) = store.meta_get("secret_fingerprint").await?
            {
                bail!(
                    "invalid setting `data-dir`: the server secret {} is missing, but this database was set up with one (fingerprint {fingerprint}); restore the file from a backup, or give it with --secret-file. A new secret would make every key unknown.",
                    path.display()
                );
            }
            load_secret(settings)?
        }
    };
    Ok((secret, store))
}

/// Refuses to run as another region than the one the database serves: every token carries
/// its region, so a changed `region` would answer every existing key `wrong_region`. The
/// region served is the one recorded (`meta`), else the one its keys carry (a database set
/// up before the region was recorded); the first start that finds keys, or makes the first
/// one, records it. A database with no key yet records nothing, so a mistaken first start
/// fixes nothing.
pub async fn check_region(store: &Store, region: &str) -> anyhow::Result<()> {
    let served = match store.meta_get("region").await? {
        Some(recorded) => Some(recorded),
        None => store.some_key_region().await?,
    };
    match served {
        Some(served) if served != region => bail!(
            "invalid setting `region`: this database serves region `{served}` (every key's token carries it), not `{region}`; start it with --region {served}"
        ),
        Some(served) => {
            store.meta_claim("region", &served).await?;
            Ok(())
        }
        None => Ok(()),
    }
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
    // Named as every later event of the owner names them: by the user's name.
    event.actor = Some(AuditActor {
        kind: "user".into(),
        id: user.id.to_string(),
        name: user.name.clone(),
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
