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
    pub audit: AuditWriter,
    pub alerts: AlertWriter,
    pub last_used: LastUsedTracker,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
}

impl App {
    /// Forgets every cached credential: called after any key, user, role or membership change.
    pub fn invalidate_credentials(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cache.clear();
    }
}
