//! Shared server state: the store, the token hasher, the credential cache and the writers.

use crate::auth::Principal;
use crate::config::Settings;
use quick_cache::sync::Cache;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Forgets this node's cached credentials: after a key, user, role, membership,
    /// integration or session change this node committed, or when the change log says
    /// another made one. (The other nodes hear of a change from its own transaction: the
    /// store's triggers write the change log and, on PostgreSQL, the NOTIFY.)
    pub fn drop_cached_credentials(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cache.clear();
        self.orgs.clear();
    }
}
