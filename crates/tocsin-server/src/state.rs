//! Shared server state: the store, the token hasher, the credential cache and the writers.

use crate::auth::Principal;
use crate::config::Settings;
use quick_cache::sync::Cache;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tocsin_core::token::{TokenDigest, TokenHasher};
use tocsin_store::alerts::AlertWriter;
use tocsin_store::{AuditWriter, LastUsedTracker, Store};

pub type AppState = Arc<App>;

pub struct App {
    pub store: Store,
    pub settings: Settings,
    pub hasher: TokenHasher,
    /// Digest -> resolved credential, or `None` for a digest no key has (safe to cache:
    /// a new key's token is fresh randomness, never a digest looked up before).
    pub cache: Cache<TokenDigest, Option<Arc<Principal>>>,
    /// Bumped by every change that can alter a credential; a lookup that started under an
    /// older generation does not fill the cache.
    pub generation: AtomicU64,
    /// A committed change whose announcement to the other nodes failed (the database was
    /// unreachable, or the connection died mid-statement): the credential watcher retries it
    /// until it is written, since the others would otherwise keep serving what changed.
    pub announce_pending: AtomicBool,
    /// Organization id -> its roles and settings, for credentials not in `cache` (dropped
    /// with it).
    pub orgs: Cache<tocsin_core::OrgId, Arc<crate::auth::OrgContext>>,
    pub audit: AuditWriter,
    pub alerts: AlertWriter,
    pub last_used: LastUsedTracker,
    /// Failed authentications per client address (GCRA; no allocation on the hot path).
    pub failed_auth: governor::DefaultKeyedRateLimiter<std::net::IpAddr>,
    /// Keys' own limits on a single node (`rate_limit`).
    pub key_limits: crate::rate_limit::LocalKeyLimits,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
}

impl App {
    /// Forgets every cached credential, here and on every other node: called after any
    /// committed key, user, role, membership or integration change.
    pub async fn invalidate_credentials(&self) {
        self.drop_cached_credentials();
        if let Err(e) = self.store.note_credential_change().await {
            // The change itself is committed: the watcher announces it as soon as the store
            // answers again, and the other nodes follow within their poll interval.
            self.announce_pending.store(true, Ordering::SeqCst);
            tracing::error!(error = %e, "could not announce a credential change to other nodes; retrying");
        }
    }

    /// Retries a failed announcement (see `announce_pending`); true once nothing is pending.
    pub async fn retry_announcement(&self) -> bool {
        if !self.announce_pending.swap(false, Ordering::SeqCst) {
            return true;
        }
        match self.store.note_credential_change().await {
            Ok(()) => {
                // On every start too (a node announces once, in case it stopped between a
                // change and its announcement): not worth an info line each time.
                tracing::debug!("announced a credential change that was pending");
                true
            }
            Err(_) => {
                self.announce_pending.store(true, Ordering::SeqCst);
                false
            }
        }
    }

    /// Forgets this node's cached credentials (another node announced a change).
    pub fn drop_cached_credentials(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cache.clear();
        self.orgs.clear();
    }
}
