//! Batched writers, so no request waits on a disk write of its own: the audit writer
//! appends many events per transaction (and can be awaited for the few that must be durable
//! before a response), and the last-used tracker folds per-request usage into one periodic update.

use crate::Store;
use crate::audit::AuditRecord;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use time::OffsetDateTime;
use tocsin_core::KeyId;
use tokio::sync::{mpsc, oneshot};

const QUEUE: usize = 65_536;
const BATCH: usize = 2_000;

// Nearly every message is an event, so boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Event(AuditRecord, Option<oneshot::Sender<()>>),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::Sender<Msg>,
    depth: Arc<AtomicI64>,
}

impl AuditWriter {
    /// Starts the writer task. It ends once every `AuditWriter` clone is dropped and the
    /// queue is drained, so awaiting the handle after dropping them flushes everything.
    pub fn spawn(store: Store) -> (AuditWriter, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let depth = Arc::new(AtomicI64::new(0));
        let handle = tokio::spawn(run(store, rx, depth.clone()));
        (AuditWriter { tx, depth }, handle)
    }

    /// Queues an event; waits only if the queue is full.
    pub async fn record(&self, event: AuditRecord) {
        self.depth.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(Msg::Event(event, None)).await.is_err() {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("audit writer has stopped; an event was not recorded");
        }
    }

    /// Queues an event and waits until it is committed.
    pub async fn record_durable(&self, event: AuditRecord) {
        let (ack, done) = oneshot::channel();
        self.depth.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(Msg::Event(event, Some(ack))).await.is_err() {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("audit writer has stopped; an event was not recorded");
            return;
        }
        let _ = done.await;
    }

    /// Waits until everything queued before this call is committed.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    pub fn depth(&self) -> i64 {
        self.depth.load(Ordering::Relaxed)
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Msg>, depth: Arc<AtomicI64>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut acks = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Event(e, ack) => {
                    batch.push(e);
                    acks.extend(ack);
                }
                Msg::Flush(ack) => acks.push(ack),
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        let mut attempt = 0u32;
        while let Err(e) = store.append_audit(&batch).await {
            attempt += 1;
            tracing::error!(error = %e, attempt, events = batch.len(), "audit batch write failed; retrying");
            tokio::time::sleep(std::time::Duration::from_millis(
                100 * u64::from(attempt.min(50)),
            ))
            .await;
        }
        depth.fetch_sub(batch.len() as i64, Ordering::Relaxed);
        batch.clear();
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
}

/// Folds key usage into memory; `flush` writes the newest use of each key in one transaction.
#[derive(Default)]
pub struct LastUsedTracker {
    pending: Mutex<HashMap<KeyId, (OffsetDateTime, String)>>,
}

impl LastUsedTracker {
    pub fn record(&self, key: &KeyId, at: OffsetDateTime, ip: &str) {
        let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(key) {
            Some(slot) => {
                if slot.0 < at {
                    *slot = (at, ip.to_owned());
                }
            }
            None => {
                map.insert(key.clone(), (at, ip.to_owned()));
            }
        }
    }

    pub async fn flush(&self, store: &Store) -> crate::Result<usize> {
        let uses: Vec<(KeyId, OffsetDateTime, String)> = {
            let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            map.drain().map(|(k, (at, ip))| (k, at, ip)).collect()
        };
        store.touch_keys(&uses).await?;
        Ok(uses.len())
    }
}
