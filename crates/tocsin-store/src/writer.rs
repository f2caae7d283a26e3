//! Batched writes, so no request waits on a disk write of its own: one writer task commits
//! alert ops and audit events together, many requests to a transaction (audit events can be
//! awaited where they must be durable before a response), and the last-used tracker folds
//! per-request usage into one periodic update.

use crate::Store;
use crate::alert_log::{AlertLog, Shared};
use crate::alerts::{AlertMsg, AlertOp, AlertWriter, Reply};
use crate::answer::Answers;
use crate::audit::{AuditEntry, AuditRecord, RequestRecord};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use time::OffsetDateTime;
use tocsin_core::KeyId;
use tokio::sync::{Notify, mpsc, oneshot};

const QUEUE: usize = 65_536;
const BATCH: usize = 2_000;

// Nearly every message is an event, so boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Event(AuditEntry, Option<Ack>),
    Flush(Ack),
}

/// Answers whoever waits on a message: committed, or why its batch failed.
type Ack = oneshot::Sender<std::result::Result<(), String>>;

#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::Sender<Msg>,
    depth: Arc<AtomicI64>,
    /// Rung after queueing a message someone waits on (a durable event, a flush), so that the
    /// writer ends its gathering window at once.
    urgent: Arc<Notify>,
    health: Arc<Health>,
}

/// What the writer's last batches came to, for `/readyz` (the log says why a batch failed).
#[derive(Default)]
struct Health {
    /// When the last batch failed; `None` once a write commits again.
    failed_at: Mutex<Option<std::time::Instant>>,
    /// How many audit events of failed batches are not written yet.
    held: AtomicUsize,
    /// How many accepted alerts (in the alert log) a failed batch left out of the tables:
    /// while any are, writes are failing whatever else commits.
    held_alerts: AtomicUsize,
    /// How many audit events the writer gave up on when it stopped (each logged in full).
    unwritten: AtomicUsize,
    /// How many request events found the queue full (their requests then wait for room),
    /// and when that was last logged (`log_full_at`).
    full_waits: AtomicU64,
    full_logged_at: AtomicI64,
}

/// Whether a full queue seen at `now_ms` (a monotonic clock's milliseconds) is logged: the
/// first, then one every `FULL_LOGGED_EVERY` at most, however many threads see it. `logged`
/// keeps the last logged time plus one (0: none yet).
fn log_full_at(logged: &AtomicI64, now_ms: i64) -> bool {
    let last = logged.load(Ordering::Relaxed);
    (last == 0 || now_ms + 1 - last >= FULL_LOGGED_EVERY)
        && logged
            .compare_exchange(last, now_ms + 1, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// The count of audit events the writer gave up on when it stopped: for the last line of a
/// shutdown. It does not keep the writer running, as an `AuditWriter` would.
#[derive(Clone)]
pub struct UnwrittenEvents(Arc<Health>);

impl UnwrittenEvents {
    pub fn count(&self) -> usize {
        self.0.unwritten.load(Ordering::Relaxed)
    }
}

impl Health {
    /// A request event found the queue full: counted, and logged at most once every
    /// `FULL_LOGGED_EVERY` ms (a stalled commit fills it in a second or two under load,
    /// and every tracked request then waits: issue #5's benchmark saw a node stop answering
    /// for 2 s once, with nothing in its log to say why).
    fn queue_full(&self) {
        let total = self.full_waits.fetch_add(1, Ordering::Relaxed) + 1;
        static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let now = STARTED.get_or_init(std::time::Instant::now).elapsed();
        if log_full_at(&self.full_logged_at, now.as_millis() as i64) {
            tracing::warn!(
                capacity = QUEUE,
                total,
                slow_batch_ms = SLOW_BATCH.as_millis() as u64,
                "the audit queue is full: requests wait for the audit writer to take their events (a slow commit or a failing database: the writer logs batches slower than slow_batch_ms)"
            );
        }
    }

    fn failed(&self) {
        *self.failed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
    }

    /// A write committed: the database takes writes again.
    fn wrote(&self) {
        *self.failed_at.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// What `AuditWriter::health` tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriterHealth {
    /// Whether a write batch failed in the last 10 s with no write committed since, or accepted
    /// alerts are held out of the tables by a failed batch.
    pub failing: bool,
    /// Audit events whose batch failed and that are retried on their own: batches of other
    /// writes go on meanwhile.
    pub held_events: usize,
}

/// How long held events wait before their next try: doubling from the first to the last.
const HELD_FIRST_WAIT: std::time::Duration = std::time::Duration::from_millis(100);
const HELD_LAST_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Once this many events are held, the writer takes no new audit events (their senders wait,
/// as for a full queue) until fewer are.
const HELD_MAX: usize = BATCH;
/// The most transactions, and the most time, one try of the held events takes (each refused
/// piece is split in two).
const HELD_TRIES: usize = 64;
const HELD_TRY_TIME: std::time::Duration = std::time::Duration::from_secs(2);
/// How long `/readyz` reports a failed write batch, unless a write succeeds first: long enough
/// for a load balancer to see it, short enough that a node it stopped sending traffic to (so
/// that nothing is written to prove otherwise) comes back to be tried.
const FAILURE_SHOWN: std::time::Duration = std::time::Duration::from_secs(10);

/// The most ops a transaction takes: many when they are creates the alert log holds, which
/// nobody waits on (a record is never split, so a batch may pass this by one record).
const ALERT_BATCH: usize = 4_096;
/// The most ops one record of the alert log holds.
const RECORD_OPS: usize = 512;
/// The most logged creates not yet in the tables: past it, new creates wait (the writer is
/// behind, or failing), and are refused after `APPEND_WAIT`.
const UNAPPLIED_MAX: usize = 16_384;
const APPEND_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a batch of plain audit events may gather after the last commit.
const AUDIT_WINDOW: std::time::Duration = std::time::Duration::from_millis(30);
/// A batch that takes longer than this to commit is logged: the queue fills behind it (at
/// 50,000 request events a second, 65,536 of them is 1.3 s), and then every tracked request
/// waits for it.
const SLOW_BATCH: std::time::Duration = std::time::Duration::from_secs(1);
/// How often, at most, a full queue is logged (ms).
const FULL_LOGGED_EVERY: i64 = 10_000;

/// Starts the one writer task. Whatever is queued (alert ops and audit events) goes into one
/// transaction, so a batch costs one disk flush however many requests share it; alert ops are
/// answered once it commits. The task ends when every writer handle is dropped and the queues
/// are drained.
pub fn spawn_writers(store: Store) -> (AuditWriter, AlertWriter, tokio::task::JoinHandle<()>) {
    let (audit_tx, audit_rx) = mpsc::channel(QUEUE);
    let (alert_tx, alert_rx) = mpsc::channel(8192);
    let audit_depth = Arc::new(AtomicI64::new(0));
    let alert_depth = Arc::new(AtomicI64::new(0));
    let health = Arc::new(Health::default());
    let embedded = !store.is_postgres();
    // SQLite with its alert log: requests go to the log's appender first, which answers
    // creates once they are flushed to it and passes every op on to the writer in order.
    let log = store.take_alert_log();
    let shared = log.as_ref().map(|(_, shared)| shared.clone());
    let urgent = log.as_ref().map_or_else(
        || Arc::new(Notify::new()),
        |(_, shared)| shared.urgent.clone(),
    );
    let (alert_tx, alert_rx) = match log {
        Some((log, shared)) => {
            let (logged_tx, logged_rx) = mpsc::channel(64);
            let depth = alert_depth.clone();
            let thread = std::thread::Builder::new()
                .name("tocsin-alert-log".into())
                .spawn(move || {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                    {
                        Ok(rt) => rt.block_on(append(log, shared, alert_rx, logged_tx, depth)),
                        Err(e) => tracing::error!(error = %e, "cannot start the alert log's runtime; no alert will be accepted"),
                    }
                });
            if let Err(e) = thread {
                tracing::error!(error = %e, "cannot start the alert log's thread; no alert will be accepted");
            }
            (alert_tx, logged_rx)
        }
        None => (alert_tx, alert_rx),
    };
    let task = run(
        store,
        Queues {
            audit_rx,
            alert_rx,
            urgent: urgent.clone(),
            log: shared,
        },
        audit_depth.clone(),
        alert_depth.clone(),
        health.clone(),
    );
    // On SQLite the batches run on the writer's own thread, through the store's own write
    // connection (embedded.rs): a runtime of its own keeps the blocking commits off the
    // runtime that serves requests. PostgreSQL's batches wait on the network instead, so
    // they run as a task of the caller's runtime, where sqlx's pool lives.
    let handle = if embedded {
        // The thread's outcome, a panic included, is what the returned task ends with.
        let (done_tx, done_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("tocsin-writer".into())
            .spawn(move || {
                behind_the_loops();
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                    {
                        Ok(rt) => rt.block_on(task),
                        Err(e) => tracing::error!(error = %e, "cannot start the writer's runtime; nothing will be written"),
                    }
                }));
                let _ = done_tx.send(outcome);
            });
        if let Err(e) = thread {
            tracing::error!(error = %e, "cannot start the writer thread; nothing will be written");
        }
        tokio::spawn(async move {
            if let Ok(Err(panic)) = done_rx.await {
                std::panic::resume_unwind(panic);
            }
        })
    } else {
        tokio::spawn(task)
    };
    (
        AuditWriter {
            tx: audit_tx,
            depth: audit_depth,
            urgent,
            health,
        },
        AlertWriter {
            tx: alert_tx,
            depth: alert_depth,
        },
        handle,
    )
}

/// Puts the calling thread, the SQLite writer, on the `SCHED_BATCH` policy (Linux): it keeps
/// its full share of the cores, but waking up no longer preempts an event loop in the middle
/// of a request; it runs when a core comes free, which under load is within a loop's next
/// wait. Under tracked whoami the writer wakes every gathering window and works through a
/// few thousand events. In alternating rounds of two tracked nodes, the one whose writer
/// was on SCHED_BATCH answered 0-11% more requests in every round, and alert commits were
/// no slower (issue #5; bench/README.md, "Fourteenth session", where a full run after it
/// still measured tracking's cost at 16%).
fn behind_the_loops() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{
            NormalThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
            set_thread_priority_and_policy, thread_native_id,
        };
        // For the normal policies the crate also sets a niceness, mapping 0..=99 onto
        // 19..=-20: this value is niceness 0 (checked by a test below). So the policy is
        // changed only for a thread at niceness 0 on the default policy: a server started
        // under `nice`, or `chrt`, keeps what it was given.
        if nice_and_policy() != Some((0, SCHED_OTHER)) {
            return;
        }
        let Ok(nice_zero) = ThreadPriorityValue::try_from(NICE_ZERO) else {
            return;
        };
        if let Err(e) = set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Crossplatform(nice_zero),
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch),
        ) {
            tracing::debug!(error = ?e, "could not put the writer thread on SCHED_BATCH");
        }
    }
}

/// The value `thread-priority` maps to niceness 0 under a normal policy.
#[cfg(target_os = "linux")]
const NICE_ZERO: u8 = 47;
#[cfg(target_os = "linux")]
const SCHED_OTHER: i64 = 0;

/// The calling thread's niceness and scheduling policy, from `/proc/thread-self/stat`: the
/// fields after the command's closing parenthesis start at the state (field 3), so nice
/// (field 19) is the 17th and the policy (field 41) the 39th.
#[cfg(target_os = "linux")]
fn nice_and_policy() -> Option<(i64, i64)> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let mut fields = stat.get(stat.rfind(')')? + 2..)?.split(' ');
    let nice = fields.nth(16)?.parse().ok()?;
    let policy = fields.nth(21)?.parse().ok()?;
    Some((nice, policy))
}

/// An event's place in the queue's depth count, taken before it is sent: the writer gives
/// the place back once the event is written, and this gives it back itself when the event
/// never reached the queue (the writer had stopped, or the sending future was dropped while
/// it waited for room).
struct Place<'a>(Option<&'a AtomicI64>);

impl<'a> Place<'a> {
    fn take(depth: &'a AtomicI64) -> Self {
        depth.fetch_add(1, Ordering::Relaxed);
        Place(Some(depth))
    }

    /// The event is in the queue: the writer gives the place back.
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if let Some(depth) = self.0 {
            depth.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn stopped() {
    tracing::error!("audit writer has stopped; an event was not recorded");
}

impl AuditWriter {
    /// Queues an event; waits only if the queue is full.
    pub async fn record(&self, event: AuditRecord) {
        self.queue(event.into()).await
    }

    /// Queues a request's event; waits only if the queue is full. The request path calls this
    /// for every request it records (allowed, refused or forbidden): while the queue has
    /// room the event goes in before the returned future is first polled, and that future is
    /// a pointer's size. (An `async fn` would carry the event and the channel's send future,
    /// 800 bytes, in every request's future, which is moved whole into its box: issue #5.)
    pub fn record_request(&self, event: RequestRecord) -> impl Future<Output = ()> + Send + '_ {
        let place = Place::take(&self.depth);
        let waiting = match self.tx.try_send(Msg::Event(event.into(), None)) {
            Ok(()) => {
                place.keep();
                None
            }
            Err(mpsc::error::TrySendError::Full(msg)) => {
                self.health.queue_full();
                Some(Box::pin(self.send_queued(msg, place)))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                stopped();
                None
            }
        };
        async move {
            if let Some(send) = waiting {
                send.await;
            }
        }
    }

    /// Sends a message that holds `place`, waiting for room in the queue; false if the writer
    /// has stopped.
    async fn send_queued(&self, msg: Msg, place: Place<'_>) -> bool {
        if self.tx.send(msg).await.is_err() {
            stopped();
            return false;
        }
        place.keep();
        true
    }

    async fn queue(&self, event: AuditEntry) {
        let place = Place::take(&self.depth);
        self.send_queued(Msg::Event(event, None), place).await;
    }

    /// Queues an event and waits until it is committed. Should its batch fail, the event is
    /// kept and written later (the writer retries it on its own), and this answers the
    /// failure at once: what the event records happened, but it is not in the trail yet.
    pub async fn record_durable(&self, event: AuditRecord) -> crate::Result<()> {
        let (ack, done) = oneshot::channel();
        let place = Place::take(&self.depth);
        if !self
            .send_queued(Msg::Event(event.into(), Some(ack)), place)
            .await
        {
            return Err(crate::StoreError::Closed);
        }
        self.answered(done).await
    }

    /// Waits until everything queued before this call is committed, or held after its batch
    /// failed (`WriterHealth::held_events`); an error says why the batch failed.
    pub async fn flush(&self) -> crate::Result<()> {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Flush(ack)).await.is_err() {
            return Err(crate::StoreError::Closed);
        }
        self.answered(done).await
    }

    /// Ends the writer's gathering window for a message someone waits on, and waits for its
    /// answer.
    async fn answered(
        &self,
        done: oneshot::Receiver<std::result::Result<(), String>>,
    ) -> crate::Result<()> {
        self.urgent.notify_one();
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(crate::StoreError::WriteFailed(why)),
            Err(_) => Err(crate::StoreError::Closed),
        }
    }

    /// Whether writes are going through: for `/readyz`.
    pub fn health(&self) -> WriterHealth {
        let failing = self
            .health
            .failed_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| at.elapsed() < FAILURE_SHOWN)
            || self.health.held_alerts.load(Ordering::Relaxed) > 0;
        WriterHealth {
            failing,
            held_events: self.health.held.load(Ordering::Relaxed),
        }
    }

    pub fn depth(&self) -> i64 {
        self.depth.load(Ordering::Relaxed)
    }

    /// How many request events have found the queue full since the start (each request then
    /// waits for room, unless it is dropped first).
    pub fn full_waits(&self) -> u64 {
        self.health.full_waits.load(Ordering::Relaxed)
    }

    /// See `UnwrittenEvents`.
    pub fn unwritten(&self) -> UnwrittenEvents {
        UnwrittenEvents(self.health.clone())
    }
}

/// What the writer task reads from.
struct Queues {
    audit_rx: mpsc::Receiver<Msg>,
    alert_rx: mpsc::Receiver<AlertMsg>,
    urgent: Arc<Notify>,
    /// The alert log's shared state, told of each record the tables take.
    log: Option<Arc<Shared>>,
}

/// What one commit writes: audit events with the acknowledgements waiting on them, and alert
/// ops beside their reply channels (the ops go to the store as a slice).
struct Batch {
    events: Vec<AuditEntry>,
    acks: Vec<Ack>,
    ops: Vec<AlertOp>,
    /// Beside each op: where its outcome goes (`None`: answered once logged), and whether
    /// the alert log holds it.
    replies: Vec<(Option<Reply>, bool)>,
    /// How many ops wait for their commit.
    waited: usize,
    /// The last alert log record whose ops are all in the batch.
    record: Option<u64>,
}

impl Batch {
    fn take(&mut self, msg: Msg) {
        match msg {
            Msg::Event(e, ack) => {
                self.events.push(e);
                self.acks.extend(ack);
            }
            Msg::Flush(ack) => self.acks.push(ack),
        }
    }

    fn push_ops(&mut self, msg: AlertMsg) {
        for r in msg.requests {
            self.waited += usize::from(r.reply.is_some());
            self.ops.push(r.op);
            self.replies.push((r.reply, r.logged));
        }
        if msg.record.is_some() {
            self.record = msg.record;
        }
    }

    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.acks.is_empty() && self.ops.is_empty()
    }

    /// Takes what is queued, up to a batch of each kind (no audit events unless `events`),
    /// without waiting.
    fn drain(&mut self, queues: &mut Queues, events: bool) {
        while events && self.events.len() < BATCH {
            match queues.audit_rx.try_recv() {
                Ok(m) => self.take(m),
                Err(_) => break,
            }
        }
        while self.ops.len() < ALERT_BATCH {
            match queues.alert_rx.try_recv() {
                Ok(msg) => self.push_ops(msg),
                Err(_) => break,
            }
        }
    }

    /// True when nothing in it is waited on: audit events and logged creates only.
    fn unwaited(&self) -> bool {
        self.waited == 0 && self.acks.is_empty()
    }
}

/// Audit events of failed batches, retried on their own so that a failing event cannot hold
/// back the writes queued behind it.
struct Held {
    events: Vec<AuditEntry>,
    wait: std::time::Duration,
    next_try: tokio::time::Instant,
}

impl Held {
    /// Keeps a failed batch's events; their next try comes after the shortest wait.
    fn keep(&mut self, events: &mut Vec<AuditEntry>) {
        if self.events.is_empty() {
            self.wait = HELD_FIRST_WAIT;
            self.next_try = tokio::time::Instant::now() + self.wait;
        }
        self.events.append(events);
    }

    /// Tries the held events again: all in one transaction, and should the database refuse
    /// them, in halves and halves of halves, so that the events it takes are written and only
    /// those it refuses on their own stay held (to be tried again after a longer wait). A try
    /// ends at the first sign that the database cannot be reached at all, after `HELD_TRIES`
    /// transactions or after `HELD_TRY_TIME`: the writer's other work waits meanwhile.
    /// Returns false once the store is closed (the events are still held, for the log).
    async fn retry(&mut self, store: &Store, depth: &AtomicI64, health: &Health) -> bool {
        let mut written = vec![false; self.events.len()];
        let mut pieces: Vec<std::ops::Range<usize>> = Vec::new();
        pieces.push(0..self.events.len());
        let started = std::time::Instant::now();
        let mut tries = 0;
        let mut why = None;
        let mut open = true;
        while let Some(piece) = pieces.pop() {
            if tries == HELD_TRIES || started.elapsed() > HELD_TRY_TIME {
                break;
            }
            tries += 1;
            match store.apply_batch(&[], &self.events[piece.clone()]).await {
                Ok(_) => written[piece].fill(true),
                Err(crate::StoreError::Closed) => {
                    open = false;
                    break;
                }
                Err(e) => {
                    let unreachable = e.is_unreachable();
                    why = Some(e.to_string());
                    if unreachable {
                        break;
                    }
                    if piece.len() > 1 {
                        let middle = piece.start + piece.len() / 2;
                        pieces.push(middle..piece.end);
                        pieces.push(piece.start..middle);
                    }
                }
            }
        }
        let done = written.iter().filter(|w| **w).count();
        if done > 0 {
            depth.fetch_sub(done as i64, Ordering::Relaxed);
            let mut written = written.into_iter();
            self.events.retain(|_| !written.next().unwrap_or(false));
            health.wrote();
        }
        if open && !self.events.is_empty() {
            let why = why.unwrap_or_default();
            tracing::error!(error = %why, events = self.events.len(), retry_in_ms = self.wait.as_millis() as u64, "audit events still cannot be written; retrying");
            self.wait = (self.wait * 2).min(HELD_LAST_WAIT);
            self.next_try = tokio::time::Instant::now() + self.wait;
        }
        health.held.store(self.events.len(), Ordering::Relaxed);
        open
    }
}

/// Creates the alert log holds whose batch failed: retried on their own, with a doubling
/// wait, until the tables take them.
struct HeldOps {
    ops: Vec<AlertOp>,
    replies: Vec<Option<Reply>>,
    record: Option<u64>,
    /// Why their batch failed.
    why: String,
    wait: std::time::Duration,
    next_try: tokio::time::Instant,
    /// When the last try ended, and how long it took (`hasten`).
    tried_at: tokio::time::Instant,
    try_took: std::time::Duration,
}

/// A read that waits for held creates brings their next try forward, but no nearer to the
/// last one than this many times what it took (nor than `HELD_FIRST_WAIT`): reads during an
/// outage then hold the writer in retries a tenth of its time at most.
const HASTENED_GAP: u32 = 10;

impl HeldOps {
    /// A read waits for the held creates (it rang `urgent`): their next try comes as soon as
    /// `HASTENED_GAP` allows, instead of when their doubling wait (up to 5 s) is over, so
    /// that once the database takes writes again the read gets its answer within moments.
    fn hasten(&mut self) {
        let soonest = self.tried_at + (self.try_took * HASTENED_GAP).max(HELD_FIRST_WAIT);
        self.next_try = self.next_try.min(soonest);
    }

    /// A try of these creates (the batch that failed, or a retry) ended now, after `took`.
    fn tried(&mut self, took: std::time::Duration) {
        self.tried_at = tokio::time::Instant::now();
        self.try_took = took;
    }

    /// While creates are held, the alert ops taken meanwhile go behind them: the logged
    /// creates join them (in order), and every other op is refused at once with the reason
    /// the tables gave, rather than run before creates accepted ahead of it.
    fn absorb(&mut self, batch: &mut Batch, depth: &AtomicI64) {
        if self.ops.is_empty() || batch.ops.is_empty() {
            return;
        }
        let mut refused = 0;
        let mut answers = Answers::default();
        for (op, (reply, logged)) in batch.ops.drain(..).zip(batch.replies.drain(..)) {
            if logged {
                self.ops.push(op);
                self.replies.push(reply);
            } else {
                refused += 1;
                if let Some(reply) = reply {
                    let why = format!(
                        "alerts accepted before this request are not written yet: {}",
                        self.why
                    );
                    answers.add(reply, Err(crate::StoreError::WriteFailed(why)));
                }
            }
        }
        answers.send();
        depth.fetch_sub(refused, Ordering::Relaxed);
        if let Some(record) = batch.record.take() {
            self.record = Some(record);
        }
        batch.waited = 0;
    }

    /// One try. Returns false once the store is closed (the log keeps them).
    async fn retry(
        &mut self,
        store: &Store,
        queues: &Queues,
        depth: &AtomicI64,
        health: &Health,
    ) -> bool {
        let started = tokio::time::Instant::now();
        let applied = store.apply_logged_batch(&self.ops, &[], self.record).await;
        self.tried(started.elapsed());
        match applied {
            Ok(statuses) => {
                health.wrote();
                health.held_alerts.store(0, Ordering::Relaxed);
                if let (Some(log), Some(seq)) = (&queues.log, self.record.take()) {
                    log.applied(seq);
                }
                depth.fetch_sub(self.ops.len() as i64, Ordering::Relaxed);
                self.ops.clear();
                let mut answers = Answers::default();
                for (reply, status) in self.replies.drain(..).zip(statuses) {
                    if let Some(reply) = reply {
                        answers.add(reply, Ok(Some(status)));
                    }
                }
                answers.send();
                true
            }
            Err(crate::StoreError::Closed) => {
                tracing::warn!(
                    alerts = self.ops.len(),
                    "the store was closed with accepted alerts not yet in its tables; the alert log keeps them, and the next start writes them"
                );
                false
            }
            Err(e) => {
                health.failed();
                self.why = e.to_string();
                tracing::error!(error = %e, alerts = self.ops.len(), retry_in_ms = self.wait.as_millis() as u64, "accepted alerts still cannot be written to the tables (the alert log keeps them); retrying");
                self.wait = (self.wait * 2).min(HELD_LAST_WAIT);
                self.next_try = tokio::time::Instant::now() + self.wait;
                true
            }
        }
    }
}

async fn run(
    store: Store,
    mut queues: Queues,
    audit_depth: Arc<AtomicI64>,
    alert_depth: Arc<AtomicI64>,
    health: Arc<Health>,
) {
    let mut batch = Batch {
        events: Vec::with_capacity(BATCH),
        acks: Vec::new(),
        ops: Vec::with_capacity(ALERT_BATCH),
        replies: Vec::with_capacity(ALERT_BATCH),
        waited: 0,
        record: None,
    };
    // Logged creates of a failed batch: tried again on their own, with the logged creates
    // that come meanwhile behind them, so that they reach the tables in the order they came
    // (other alert ops are refused meanwhile).
    let mut held_ops = HeldOps {
        ops: Vec::new(),
        replies: Vec::new(),
        record: None,
        why: String::new(),
        wait: HELD_FIRST_WAIT,
        next_try: tokio::time::Instant::now(),
        tried_at: tokio::time::Instant::now(),
        try_took: std::time::Duration::ZERO,
    };
    let mut held = Held {
        events: Vec::new(),
        wait: HELD_FIRST_WAIT,
        next_try: tokio::time::Instant::now(),
    };
    let (mut audit_open, mut alerts_open) = (true, true);
    let mut last_commit = tokio::time::Instant::now();
    loop {
        // Held events go first when their wait is over.
        if !held.events.is_empty()
            && tokio::time::Instant::now() >= held.next_try
            && !held.retry(&store, &audit_depth, &health).await
        {
            break;
        }
        if !held_ops.ops.is_empty()
            && tokio::time::Instant::now() >= held_ops.next_try
            && !held_ops.retry(&store, &queues, &alert_depth, &health).await
        {
            break;
        }
        // While too many events are held, new ones stay queued (their senders wait).
        let take_events = held.events.len() < HELD_MAX;
        // Wait for the first thing to write, or for the held events' or creates' next try.
        tokio::select! {
            m = queues.audit_rx.recv(), if audit_open && take_events => match m {
                Some(m) => batch.take(m),
                None => audit_open = false,
            },
            o = queues.alert_rx.recv(), if alerts_open => match o {
                Some(msg) => batch.push_ops(msg),
                None => alerts_open = false,
            },
            _ = tokio::time::sleep_until(held.next_try), if !held.events.is_empty() => continue,
            _ = tokio::time::sleep_until(held_ops.next_try), if !held_ops.ops.is_empty() => continue,
            _ = queues.urgent.notified(), if !held_ops.ops.is_empty() => {
                held_ops.hasten();
                continue;
            }
            else => break,
        }
        batch.drain(&mut queues, take_events);
        held_ops.absorb(&mut batch, &alert_depth);
        if batch.is_empty() {
            continue;
        }
        // Nothing waits on a batch of plain audit events, so it gathers for up to AUDIT_WINDOW
        // after the last commit: under load that makes fewer, larger commits (each flush and
        // each partly filled page is paid once per commit). The writer sleeps through the
        // window rather than waking for each event; an alert op, a durable event or a flush
        // ends it at once.
        // Creates the alert log holds gather the same way: nobody waits on them, and a read
        // of alerts that does rings `urgent`.
        let deadline = last_commit + AUDIT_WINDOW;
        while batch.unwaited()
            && batch.events.len() < BATCH
            && batch.ops.len() < ALERT_BATCH
            && tokio::time::Instant::now() < deadline
        {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = queues.urgent.notified() => break,
                o = queues.alert_rx.recv(), if alerts_open => match o {
                    Some(msg) => batch.push_ops(msg),
                    None => alerts_open = false,
                },
            }
        }
        batch.drain(&mut queues, take_events);
        held_ops.absorb(&mut batch, &alert_depth);
        last_commit = tokio::time::Instant::now();
        let (n_ops, n_events) = (batch.ops.len(), batch.events.len());
        let Batch {
            events,
            acks,
            ops,
            replies,
            waited,
            record,
        } = &mut batch;
        let applied = store.apply_logged_batch(ops, events, *record).await;
        let took = last_commit.elapsed();
        if took > SLOW_BATCH {
            // (Retries of held events and creates, which run while the database fails, are
            // not timed: their failures are logged instead.)
            tracing::warn!(
                took_ms = took.as_millis() as u64,
                slow_batch_ms = SLOW_BATCH.as_millis() as u64,
                ops = n_ops,
                events = n_events,
                // Messages: request and lifecycle events, and flushes.
                queued_messages = queues.audit_rx.len(),
                "a write batch was slow to commit (the disk or the database is slow); requests whose events find the audit queue full wait meanwhile"
            );
        }
        match applied {
            Ok(statuses) => {
                if !(ops.is_empty() && events.is_empty()) {
                    // (A batch of flushes alone writes nothing, so it proves nothing.)
                    health.wrote();
                }
                if let (Some(log), Some(seq)) = (&queues.log, record.take()) {
                    log.applied(seq);
                }
                alert_depth.fetch_sub(ops.len() as i64, Ordering::Relaxed);
                ops.clear();
                *waited = 0;
                let mut answers = Answers::default();
                for ((reply, _), status) in replies.drain(..).zip(statuses) {
                    if let Some(reply) = reply {
                        answers.add(reply, Ok(Some(status)));
                    }
                }
                answers.send();
                audit_depth.fetch_sub(events.len() as i64, Ordering::Relaxed);
                events.clear();
                for ack in acks.drain(..) {
                    let _ = ack.send(Ok(()));
                }
            }
            Err(crate::StoreError::Closed) => {
                // Nothing can be written any more: whoever waits is told (their
                // acknowledgements are dropped) and the writer stops, so later writes fail at
                // once instead of waiting for a retry that cannot succeed.
                let logged = replies.iter().filter(|(_, logged)| *logged).count();
                if logged > 0 {
                    tracing::warn!(
                        alerts = logged,
                        "the store was closed with accepted alerts not yet in its tables; the alert log keeps them, and the next start writes them"
                    );
                }
                if ops.len() > logged || !events.is_empty() {
                    tracing::error!(
                        ops = ops.len() - logged,
                        events = events.len(),
                        "the store was closed with writes queued; they are not recorded"
                    );
                }
                for event in events.iter() {
                    tracing::error!(event = ?event, "audit event not written before the writer stopped");
                }
                health.unwritten.fetch_add(events.len(), Ordering::Relaxed);
                break;
            }
            Err(e) => {
                // Nothing of the batch was written. Alert requests and whoever waits on an
                // event learn at once; the audit events are held and retried on their own,
                // so an acknowledged request's event is not lost and a failing event does not
                // hold back the batches after it.
                let why = e.to_string();
                tracing::error!(error = %why, ops = ops.len(), events = events.len(), "write batch failed; its audit events are held and retried, and so are the alerts the alert log holds");
                health.failed();
                held.keep(events);
                health.held.store(held.events.len(), Ordering::Relaxed);
                // The creates the alert log holds were accepted: they are held, in order, and
                // tried again on their own (logged creates taken meanwhile join them; other
                // alert ops are refused). Every other op of the batch is answered with the
                // failure. They are never dropped while the writer runs: a later batch
                // recording a later record as written would make a restart skip them. (A stop
                // closes the store, which ends the writer; the log keeps them for the next
                // start.)
                let mut refused = 0;
                let mut kept = false;
                let mut answers = Answers::default();
                for (op, (reply, logged)) in ops.drain(..).zip(replies.drain(..)) {
                    if logged {
                        held_ops.ops.push(op);
                        held_ops.replies.push(reply);
                        kept = true;
                    } else {
                        refused += 1;
                        if let Some(reply) = reply {
                            answers.add(reply, Err(crate::StoreError::WriteFailed(why.clone())));
                        }
                    }
                }
                answers.send();
                alert_depth.fetch_sub(refused, Ordering::Relaxed);
                if kept {
                    health
                        .held_alerts
                        .store(held_ops.ops.len(), Ordering::Relaxed);
                    held_ops.why = why.clone();
                    held_ops.record = record.take();
                    held_ops.wait = HELD_FIRST_WAIT;
                    held_ops.next_try = tokio::time::Instant::now() + held_ops.wait;
                    held_ops.tried(took);
                }
                *record = None;
                *waited = 0;
                for ack in acks.drain(..) {
                    let _ = ack.send(Err(why.clone()));
                }
            }
        }
    }
    // The writer stops with events it could not write (held, or still queued behind them):
    // the log is their last record.
    queues.audit_rx.close();
    let queued = std::iter::from_fn(|| queues.audit_rx.try_recv().ok()).filter_map(|m| match m {
        Msg::Event(event, _) => Some(event),
        Msg::Flush(_) => None,
    });
    for event in held.events.iter().cloned().chain(queued) {
        tracing::error!(event = ?event, "audit event not written before the writer stopped");
        health.unwritten.fetch_add(1, Ordering::Relaxed);
    }
}

/// The alert log's appender (SQLite): takes what requests queue, appends the creates among
/// them to the log as one record, flushes it, answers the creates that wait only for that
/// (`AlertWriter::accept`), and passes every op on to the writer, in the order they came.
/// New creates wait while the tables are more than `UNAPPLIED_MAX` creates behind the log,
/// and while the log, at the end of its file, waits for the tables to take all of it
/// before it starts over at the beginning.
async fn append(
    mut log: AlertLog,
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<AlertMsg>,
    tx: mpsc::Sender<AlertMsg>,
    depth: Arc<AtomicI64>,
) {
    let mut applied = shared.applied.subscribe();
    // Records appended and not yet in the tables, with their creates.
    let mut unapplied: std::collections::VecDeque<(u64, usize)> = Default::default();
    let mut unapplied_creates = 0;
    let mut requests = Vec::with_capacity(RECORD_OPS);
    while let Some(first) = rx.recv().await {
        requests.extend(first.requests);
        while requests.len() < RECORD_OPS {
            match rx.try_recv() {
                Ok(msg) => requests.extend(msg.requests),
                Err(_) => break,
            }
        }
        let ops: Vec<&AlertOp> = requests
            .iter()
            .map(|r| &r.op)
            .filter(|op| op.is_create())
            .collect();
        let creates = ops.len();
        let mut record = None;
        if creates > 0 {
            let encoded = log.encode(&ops).map_err(|e| e.to_string());
            let mut all_applied;
            let since = tokio::time::Instant::now();
            let mut refused_why = None;
            loop {
                let done = *applied.borrow_and_update();
                while let Some(&(seq, n)) = unapplied.front() {
                    if seq > done {
                        break;
                    }
                    unapplied.pop_front();
                    unapplied_creates -= n;
                }
                all_applied = done >= log.last_seq();
                let wraps_waits = encoded.as_ref().is_ok_and(|r| !log.fits(r)) && !all_applied;
                if unapplied_creates <= UNAPPLIED_MAX && !wraps_waits {
                    break;
                }
                shared.urgent.notify_one();
                let left = APPEND_WAIT.saturating_sub(since.elapsed());
                match tokio::time::timeout(left, applied.changed()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return,
                    Err(_) => {
                        refused_why = Some(format!(
                            "the database has not taken the alerts accepted before these for {} s (its writes are failing, or it is far behind)",
                            APPEND_WAIT.as_secs()
                        ));
                        break;
                    }
                }
            }
            let appended = match (refused_why, encoded) {
                (Some(why), _) => Err(why),
                (None, encoded) => encoded
                    .and_then(|r| log.write(&r, all_applied).map_err(|e| e.to_string()))
                    .map_err(|e| {
                        tracing::error!(error = %e, log = %log.path().display(), creates, "cannot write the alert log; the alerts are refused");
                        format!("the alert log {} could not be written: {e}", log.path().display())
                    }),
            };
            match appended {
                Ok(seq) => {
                    shared
                        .appended
                        .store(seq, std::sync::atomic::Ordering::Release);
                    unapplied.push_back((seq, creates));
                    unapplied_creates += creates;
                    record = Some(seq);
                    let mut answers = Answers::default();
                    for r in requests.iter_mut() {
                        if r.op.is_create() {
                            r.logged = true;
                            if !r.applied
                                && let Some(reply) = r.reply.take()
                            {
                                answers.add(reply, Ok(None));
                            }
                        }
                    }
                    answers.send();
                }
                Err(why) => {
                    let mut refused = 0;
                    let mut answers = Answers::default();
                    requests.retain_mut(|r| {
                        if !r.op.is_create() {
                            return true;
                        }
                        refused += 1;
                        if let Some(reply) = r.reply.take() {
                            answers.add(reply, Err(crate::StoreError::WriteFailed(why.clone())));
                        }
                        false
                    });
                    answers.send();
                    depth.fetch_sub(refused, Ordering::Relaxed);
                }
            }
        }
        if requests.is_empty() {
            continue;
        }
        let msg = AlertMsg {
            requests: std::mem::replace(&mut requests, Vec::with_capacity(RECORD_OPS)),
            record,
        };
        let sent = msg.requests.len() as i64;
        if tx.send(msg).await.is_err() {
            depth.fetch_sub(sent, Ordering::Relaxed);
            tracing::warn!(
                "the writer stopped; the alert log keeps what it accepted, and the next start writes it"
            );
            return;
        }
    }
}

/// Uses taken out of the tracker for a write: recorded again when dropped before `written`
/// (the write failed, or the flush was cancelled).
struct Unwritten<'a> {
    tracker: &'a LastUsedTracker,
    uses: Option<Vec<(KeyId, OffsetDateTime, String)>>,
}

impl Unwritten<'_> {
    fn written(mut self) {
        self.uses = None;
    }
}

impl Drop for Unwritten<'_> {
    fn drop(&mut self) {
        for (key, at, ip) in self.uses.take().unwrap_or_default() {
            self.tracker.record(&key, at, &ip);
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

    /// Writes the uses recorded since the last flush. Should the write fail, or the flush be
    /// cancelled (a task aborted at shutdown), they are recorded again (a newer use of a key
    /// recorded meanwhile wins), for the next flush.
    pub async fn flush(&self, store: &Store) -> crate::Result<usize> {
        let mut uses: Vec<(KeyId, OffsetDateTime, String)> = {
            let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            map.drain().map(|(k, (at, ip))| (k, at, ip)).collect()
        };
        // In the keys' order, as every node writes them: two nodes' flushes of the same keys
        // then wait for each other instead of deadlocking.
        uses.sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        let unwritten = Unwritten {
            tracker: self,
            uses: Some(uses),
        };
        let uses = unwritten.uses.as_deref().unwrap_or_default();
        store.touch_keys(uses).await?;
        let n = uses.len();
        unwritten.written();
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose queue holds one message and is never read.
    fn stalled_writer() -> (AuditWriter, mpsc::Receiver<Msg>) {
        let (tx, rx) = mpsc::channel(1);
        let writer = AuditWriter {
            tx,
            depth: Arc::new(AtomicI64::new(0)),
            urgent: Arc::new(Notify::new()),
            health: Arc::new(Health::default()),
        };
        (writer, rx)
    }

    /// A read waiting for held creates brings their next try forward: to ten times the last
    /// try's length after it ended (100 ms at least), never later than it was due.
    #[tokio::test]
    async fn a_waiting_read_brings_the_held_creates_next_try_forward() {
        let now = tokio::time::Instant::now();
        let held = |took_ms: u64, due_ms: u64| HeldOps {
            ops: Vec::new(),
            replies: Vec::new(),
            record: None,
            why: String::new(),
            wait: HELD_LAST_WAIT,
            next_try: now + std::time::Duration::from_millis(due_ms),
            tried_at: now,
            try_took: std::time::Duration::from_millis(took_ms),
        };
        let ms = std::time::Duration::from_millis;
        for (took, due, hastened) in [
            (50, 5_000, 500),
            (1, 5_000, 100),
            (0, 5_000, 100),
            (400, 5_000, 4_000),
            (900, 5_000, 5_000),
            (50, 300, 300),
        ] {
            let mut h = held(took, due);
            h.hasten();
            assert_eq!(
                h.next_try,
                now + ms(hastened),
                "took {took} ms, due in {due}"
            );
            h.hasten();
            assert_eq!(
                h.next_try,
                now + ms(hastened),
                "a second ring changes nothing"
            );
        }
    }

    /// A full queue is logged the first time, then at most once every 10 s.
    #[test]
    fn a_full_queue_is_logged_once_in_ten_seconds() {
        let logged = AtomicI64::new(0);
        assert!(log_full_at(&logged, 0), "the first");
        assert!(!log_full_at(&logged, 0));
        assert!(!log_full_at(&logged, 9_999));
        assert!(log_full_at(&logged, 10_000));
        assert!(!log_full_at(&logged, 19_999));
        assert!(log_full_at(&logged, 25_000));
        let later = AtomicI64::new(0);
        assert!(log_full_at(&later, 123_456), "the first, whenever it comes");
    }

    /// The writer thread runs on SCHED_BATCH at niceness 0, the default: the policy changes,
    /// its share of the cores does not. A thread started niced, or on another policy, is
    /// left as it was.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_writer_thread_is_batch_scheduled_at_niceness_zero() {
        let (before, after) = std::thread::spawn(|| {
            let before = nice_and_policy();
            behind_the_loops();
            (before, nice_and_policy())
        })
        .join()
        .unwrap();
        let before = before.expect("/proc/thread-self/stat reads");
        // SCHED_OTHER is 0, SCHED_BATCH 3.
        if before == (0, SCHED_OTHER) {
            assert_eq!(after, Some((0, 3)), "niceness 0, policy SCHED_BATCH");
        } else {
            assert_eq!(
                after,
                Some(before),
                "a niced or rescheduled thread is left alone"
            );
        }
    }

    #[tokio::test]
    async fn a_request_event_counts_in_the_depth_until_written_and_not_after_it_is_dropped() {
        let (writer, mut rx) = stalled_writer();
        // Room in the queue: the event is in it before the future is polled, and counted.
        let queued = writer.record_request(RequestRecord::bare());
        assert_eq!(writer.depth(), 1);
        drop(queued);
        assert_eq!(
            writer.depth(),
            1,
            "a queued event stays counted until written"
        );
        // The queue is full now: a second event waits, counted, and a dropped wait gives its
        // place back (a request whose client went away, or that timed out).
        let waiting = writer.record_request(RequestRecord::bare());
        assert_eq!(writer.depth(), 2);
        assert_eq!(writer.full_waits(), 1, "the full queue is counted");
        drop(waiting);
        assert_eq!(
            writer.depth(),
            1,
            "an event that never reached the queue is not counted"
        );
        // Once there is room, a waiting event goes in when its future runs.
        let waiting = writer.record_request(RequestRecord::bare());
        assert!(rx.recv().await.is_some());
        waiting.await;
        assert_eq!(
            writer.depth(),
            2,
            "the first (read, not yet written) and the second"
        );
        assert!(rx.try_recv().is_ok(), "the waiting event reached the queue");
        assert_eq!(writer.full_waits(), 2);
        // A stopped writer: nothing is counted.
        drop(rx);
        writer.record_request(RequestRecord::bare()).await;
        assert_eq!(writer.depth(), 2);
    }
}
