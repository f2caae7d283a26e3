//! The audit trail: events in one hash chain per organization. Each event's hash covers
//! its predecessor's hash and its own fields, so editing or deleting a row breaks the chain
//! at that event, which `verify_chain` names.

use crate::audit_segment::{Segment, SegmentBuilder};
use crate::batch::SegmentConn;
use crate::{BeginWrite, Page, Result, Store, StoreError, from_ms, ms, on_db, paginate, safe};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use time::OffsetDateTime;
use tocsin_core::{AuditEventId, KeyId, OrgId};

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditActor {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditTarget {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

/// An event as recorded; the chain fields are added by the writer.
#[derive(Clone, Debug)]
pub struct AuditRecord {
    pub id: AuditEventId,
    pub occurred_at: OffsetDateTime,
    /// `None` for refusals that could not be tied to an organization.
    pub org_id: Option<OrgId>,
    pub actor: Option<AuditActor>,
    pub api_key_id: Option<KeyId>,
    pub token_hint: Option<String>,
    pub action: String,
    pub method: Option<String>,
    pub route: Option<String>,
    pub target: Option<AuditTarget>,
    pub outcome: String,
    pub status: Option<u16>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl AuditRecord {
    pub fn new(
        org_id: Option<OrgId>,
        action: impl Into<String>,
        outcome: impl Into<String>,
    ) -> Self {
        AuditRecord {
            id: AuditEventId::generate(),
            occurred_at: OffsetDateTime::now_utc(),
            org_id,
            actor: None,
            api_key_id: None,
            token_hint: None,
            action: action.into(),
            method: None,
            route: None,
            target: None,
            outcome: outcome.into(),
            status: None,
            ip: None,
            user_agent: None,
            request_id: None,
        }
    }

    pub fn chain(&self) -> &str {
        self.org_id.as_ref().map(|o| o.as_str()).unwrap_or("")
    }

    /// The record's fields as its hash and its segment read them.
    pub(crate) fn view(&self) -> EventView<'_> {
        EventView {
            id: self.id.as_str(),
            id_bytes: None,
            occurred_at: self.occurred_at,
            chain: self.chain(),
            actor: self.actor.as_ref(),
            api_key_id: self.api_key_id.as_ref().map(|k| k.as_str()),
            token_hint: self.token_hint.as_deref(),
            action: &self.action,
            method: self.method.as_deref(),
            route: self.route.as_deref(),
            target: self.target.as_ref(),
            outcome: &self.outcome,
            status: self.status,
            ip: self.ip.as_deref(),
            user_agent: self.user_agent.as_deref(),
            request_id: self.request_id.as_deref(),
            request_id_bytes: None,
        }
    }
}

/// Who made a request, as its audit event names them: the same for every request of one
/// credential, so it is built once per cached credential and shared by its events.
#[derive(Clone, Debug)]
pub struct Caller {
    pub org_id: OrgId,
    pub actor: AuditActor,
    pub api_key_id: Option<KeyId>,
    pub token_hint: String,
}

/// The `http.request` event of one request, in the form the request path builds cheaply:
/// the caller shared, the method and route borrowed where they can be, the address and
/// request id as values. Its id and text are written out by the audit writer, off the
/// request's path (`into_record` gives the same event as an `AuditRecord`).
#[derive(Clone, Debug)]
pub struct RequestRecord {
    pub occurred_at: OffsetDateTime,
    /// `None` for a refusal that could not be tied to a credential.
    pub caller: Option<Arc<Caller>>,
    pub outcome: &'static str,
    pub method: Cow<'static, str>,
    pub route: Cow<'static, str>,
    pub status: u16,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<Box<str>>,
    pub request_id: Option<uuid::Uuid>,
    /// Boxed, as the user agent is: a request event is queued by value, and most have
    /// neither, so it stays small.
    pub target: Option<Box<AuditTarget>>,
}

pub const REQUEST_ACTION: &str = "http.request";

/// Every `action` an audit event has (SPEC section 5): a key's lifecycle changes, and
/// requests. `GET /v1/audit_events` refuses any other value of its `action` filter.
pub const ACTIONS: &[&str] = &[
    "api_key.created",
    "api_key.updated",
    "api_key.rotated",
    "api_key.revoked",
    "api_key.expired",
    REQUEST_ACTION,
];

impl RequestRecord {
    /// The same event as an `AuditRecord`, with a new id.
    pub fn into_record(self) -> AuditRecord {
        let text = RequestText::of(&self);
        let caller = self.caller.as_deref();
        AuditRecord {
            id: AuditEventId::from_trusted(text.id().to_owned()),
            occurred_at: self.occurred_at,
            org_id: caller.map(|c| c.org_id.clone()),
            actor: caller.map(|c| c.actor.clone()),
            api_key_id: caller.and_then(|c| c.api_key_id.clone()),
            token_hint: caller.map(|c| c.token_hint.clone()),
            action: REQUEST_ACTION.to_owned(),
            method: Some(self.method.into_owned()),
            route: Some(self.route.into_owned()),
            target: self.target.map(|t| *t),
            outcome: self.outcome.to_owned(),
            status: Some(self.status),
            ip: text.ip().map(str::to_owned),
            user_agent: self.user_agent.map(String::from),
            request_id: text.request_id().map(str::to_owned),
        }
    }
}

#[cfg(test)]
impl RequestRecord {
    /// An allowed whoami's event with no caller, address, user agent or ids: for tests.
    pub(crate) fn bare() -> Self {
        RequestRecord {
            occurred_at: OffsetDateTime::now_utc(),
            caller: None,
            outcome: "allowed",
            method: Cow::Borrowed("GET"),
            route: Cow::Borrowed("/v1/auth/whoami"),
            status: 200,
            ip: None,
            user_agent: None,
            request_id: None,
            target: None,
        }
    }
}

/// What the audit writer is handed, queued by value. A record, the rarer and larger kind,
/// is boxed: request events then move through the queue at less than half its size.
#[derive(Clone, Debug)]
pub enum AuditEntry {
    Record(Box<AuditRecord>),
    Request(RequestRecord),
}

impl From<AuditRecord> for AuditEntry {
    fn from(r: AuditRecord) -> Self {
        AuditEntry::Record(Box::new(r))
    }
}

impl From<RequestRecord> for AuditEntry {
    fn from(r: RequestRecord) -> Self {
        AuditEntry::Request(r)
    }
}

/// A request event's parts that are written out only as it is stored: its id, address and
/// request id as text, kept inline (the writer makes one of these per request event, and
/// three allocations each were a tenth of its time), beside the 16 bytes that a segment
/// keeps of each id, so that the segment need not read them back out of their text.
pub(crate) struct RequestText {
    id: [u8; 16],
    id_text: [u8; AuditEventId::TEXT_LEN],
    ip: Option<IpText>,
    request_id: Option<([u8; 16], [u8; 36])>,
}

/// An address's text: IPv4, nearly every client, inline; an IPv6 address as `Display`
/// writes it.
enum IpText {
    V4 { text: [u8; 15], len: u8 },
    Other(String),
}

impl IpText {
    fn of(ip: IpAddr) -> Self {
        let IpAddr::V4(v4) = ip else {
            return IpText::Other(ip.to_string());
        };
        let mut text = [0u8; 15];
        let mut len = 0;
        for (i, n) in v4.octets().into_iter().enumerate() {
            if i > 0 {
                text[len] = b'.';
                len += 1;
            }
            for (place, shown) in [(100, n >= 100), (10, n >= 10), (1, true)] {
                if shown {
                    text[len] = b'0' + n / place % 10;
                    len += 1;
                }
            }
        }
        IpText::V4 {
            text,
            len: len as u8,
        }
    }

    fn as_str(&self) -> &str {
        match self {
            IpText::V4 { text, len } => {
                std::str::from_utf8(&text[..usize::from(*len)]).expect("digits and dots are ASCII")
            }
            IpText::Other(s) => s,
        }
    }
}

impl RequestText {
    fn of(r: &RequestRecord) -> Self {
        let uuid = uuid::Uuid::now_v7();
        let mut id_text = [0u8; AuditEventId::TEXT_LEN];
        AuditEventId::write(uuid, &mut id_text);
        RequestText {
            id: uuid.into_bytes(),
            id_text,
            ip: r.ip.map(IpText::of),
            request_id: r.request_id.map(|u| {
                let mut text = [0u8; 36];
                u.hyphenated().encode_lower(&mut text);
                (u.into_bytes(), text)
            }),
        }
    }

    fn id(&self) -> &str {
        std::str::from_utf8(&self.id_text).expect("the prefix and hex digits are ASCII")
    }

    fn ip(&self) -> Option<&str> {
        self.ip.as_ref().map(IpText::as_str)
    }

    fn request_id(&self) -> Option<&str> {
        self.request_id
            .as_ref()
            .map(|(_, text)| std::str::from_utf8(text).expect("a hyphenated UUID is ASCII"))
    }
}

/// An entry ready to be stored: a request event with its text written out, which its view
/// borrows.
pub(crate) enum Prepared<'a> {
    Record(&'a AuditRecord),
    Request(&'a RequestRecord, RequestText),
}

impl<'a> Prepared<'a> {
    pub(crate) fn all(entries: &'a [AuditEntry]) -> Vec<Prepared<'a>> {
        entries
            .iter()
            .map(|e| match e {
                AuditEntry::Record(r) => Prepared::Record(r),
                AuditEntry::Request(r) => Prepared::Request(r, RequestText::of(r)),
            })
            .collect()
    }

    pub(crate) fn view(&self) -> EventView<'_> {
        match self {
            Prepared::Record(r) => r.view(),
            Prepared::Request(r, t) => {
                let caller = r.caller.as_deref();
                EventView {
                    id: t.id(),
                    id_bytes: Some(t.id),
                    occurred_at: r.occurred_at,
                    chain: caller.map_or("", |c| c.org_id.as_str()),
                    actor: caller.map(|c| &c.actor),
                    api_key_id: caller.and_then(|c| c.api_key_id.as_ref().map(|k| k.as_str())),
                    token_hint: caller.map(|c| c.token_hint.as_str()),
                    action: REQUEST_ACTION,
                    method: Some(&r.method),
                    route: Some(&r.route),
                    target: r.target.as_deref(),
                    outcome: r.outcome,
                    status: Some(r.status),
                    ip: t.ip(),
                    user_agent: r.user_agent.as_deref(),
                    request_id: t.request_id(),
                    request_id_bytes: t.request_id.map(|(bytes, _)| bytes),
                }
            }
        }
    }
}

/// An address as `Display` writes it. IPv4, nearly every client, is written digit by digit:
/// the formatting machinery behind `to_string` was a fifth of building a request's audit
/// event.
pub fn ip_text(ip: IpAddr) -> String {
    match IpText::of(ip) {
        IpText::Other(text) => text,
        v4 => v4.as_str().to_owned(),
    }
}

/// An event's fields, borrowed from an `AuditRecord` or a `RequestRecord`: what its hash
/// covers and its segment stores.
#[derive(Clone, Copy)]
pub(crate) struct EventView<'a> {
    pub id: &'a str,
    /// The 16 bytes of the UUID that `id` spells, where the writer made the id itself (a
    /// request event): a segment then keeps them without reading them back out of the text.
    pub id_bytes: Option<[u8; 16]>,
    pub occurred_at: OffsetDateTime,
    pub chain: &'a str,
    pub actor: Option<&'a AuditActor>,
    pub api_key_id: Option<&'a str>,
    pub token_hint: Option<&'a str>,
    pub action: &'a str,
    pub method: Option<&'a str>,
    pub route: Option<&'a str>,
    pub target: Option<&'a AuditTarget>,
    pub outcome: &'a str,
    pub status: Option<u16>,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub request_id: Option<&'a str>,
    /// `request_id`'s 16 bytes, where it is the hyphenated lowercase text of a UUID the
    /// writer was handed as one.
    pub request_id_bytes: Option<[u8; 16]>,
}

#[derive(Clone, Debug)]
pub struct AuditEvent {
    pub record: AuditRecord,
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of an event: SHA-256 over the previous hash, a newline, and the event's fields
/// in a fixed order as a compact JSON array, as serde_json writes one (`hash_fields`).
pub fn event_hash(prev_hash: &str, seq: i64, r: &AuditRecord) -> String {
    hex::encode(event_digest(prev_hash, seq, &r.view()))
}

/// `event_hash` as bytes (segments store hashes as bytes).
pub(crate) fn event_digest(prev_hash: &str, seq: i64, r: &EventView<'_>) -> [u8; 32] {
    // The array is written into a buffer kept per thread and hashed in one call: it is
    // written a few bytes at a time, and each write straight into the hash state cost more
    // than the copy.
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(1024));
    }
    BUF.with_borrow_mut(|buf| {
        buf.clear();
        buf.extend_from_slice(prev_hash.as_bytes());
        buf.push(b'\n');
        hash_fields(buf, seq, r);
        let digest = Sha256::digest(buf.as_slice()).into();
        // A rare huge event (a long user agent is cut at 256 characters; names are not)
        // does not keep its buffer.
        if buf.capacity() > 64 * 1024 {
            *buf = Vec::with_capacity(1024);
        }
        digest
    })
}

/// Whether JSON escapes any of these bytes: a control character, a quote or a backslash.
/// Checked 16 bytes at a time without branching inside a block, which the compiler turns
/// into vector compares.
fn needs_escape(bytes: &[u8]) -> bool {
    let escaped = |b: u8| (b < 0x20) | (b == b'"') | (b == b'\\');
    let mut blocks = bytes.chunks_exact(16);
    for block in &mut blocks {
        if block.iter().fold(0u8, |any, &b| any | u8::from(escaped(b))) != 0 {
            return true;
        }
    }
    blocks.remainder().iter().any(|&b| escaped(b))
}

/// Writes the fields a hash covers, in their fixed order, as serde_json writes them as a
/// compact JSON array (the first chains were hashed that way, and their hashes must not
/// change). Written by hand: serde_json escapes every string byte by byte through a table,
/// which was a tenth of the audit writer's time, where nearly every field here (ids, names,
/// the route) needs no escape at all.
fn hash_fields(buf: &mut Vec<u8>, seq: i64, r: &EventView<'_>) {
    /// One element of the array, as serde_json writes its type: a number (the sequence, the
    /// time, the status), a string or null, an array of strings or null.
    enum Field<'a> {
        Number(Option<i64>),
        Text(Option<&'a str>),
        List(Option<&'a [&'a str]>),
    }
    fn text(buf: &mut Vec<u8>, s: &str) {
        if needs_escape(s.as_bytes()) {
            serde_json::to_writer(&mut *buf, s).expect("writing into memory cannot fail");
        } else {
            buf.reserve(s.len() + 2);
            buf.push(b'"');
            buf.extend_from_slice(s.as_bytes());
            buf.push(b'"');
        }
    }
    let actor = r.actor.map(|a| [&*a.kind, &*a.id, &*a.name]);
    let target = r.target.map(|t| [&*t.kind, &*t.id]);
    let fields = [
        Field::Number(Some(seq)),
        Field::Text(Some(r.id)),
        Field::Number(Some(ms(r.occurred_at))),
        Field::Text(Some(r.chain)),
        Field::List(actor.as_ref().map(|a| &a[..])),
        Field::Text(r.api_key_id),
        Field::Text(r.token_hint),
        Field::Text(Some(r.action)),
        Field::Text(r.method),
        Field::Text(r.route),
        Field::List(target.as_ref().map(|t| &t[..])),
        Field::Text(Some(r.outcome)),
        Field::Number(r.status.map(i64::from)),
        Field::Text(r.ip),
        Field::Text(r.user_agent),
        Field::Text(r.request_id),
    ];
    buf.push(b'[');
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        match field {
            Field::Number(Some(n)) => {
                serde_json::to_writer(&mut *buf, n).expect("writing into memory cannot fail")
            }
            Field::Text(Some(s)) => text(buf, s),
            Field::List(Some(items)) => {
                buf.push(b'[');
                for (j, s) in items.iter().enumerate() {
                    if j > 0 {
                        buf.push(b',');
                    }
                    text(buf, s);
                }
                buf.push(b']');
            }
            Field::Number(None) | Field::Text(None) | Field::List(None) => {
                buf.extend_from_slice(b"null")
            }
        }
    }
    buf.push(b']');
}

#[derive(sqlx::FromRow)]
struct EventRow {
    chain: String,
    seq: i64,
    id: String,
    occurred_at: i64,
    actor_type: Option<String>,
    actor_id: Option<String>,
    actor_name: Option<String>,
    api_key_id: Option<String>,
    token_hint: Option<String>,
    action: String,
    method: Option<String>,
    route: Option<String>,
    target_type: Option<String>,
    target_id: Option<String>,
    outcome: String,
    status: Option<i64>,
    ip: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    prev_hash: String,
    hash: String,
}

impl From<EventRow> for AuditEvent {
    fn from(r: EventRow) -> Self {
        AuditEvent {
            seq: r.seq,
            prev_hash: r.prev_hash,
            hash: r.hash,
            record: AuditRecord {
                id: AuditEventId::from_trusted(r.id),
                occurred_at: from_ms(r.occurred_at),
                org_id: (!r.chain.is_empty()).then(|| OrgId::from_trusted(r.chain)),
                actor: match (r.actor_type, r.actor_id, r.actor_name) {
                    (Some(kind), Some(id), Some(name)) => Some(AuditActor { kind, id, name }),
                    _ => None,
                },
                api_key_id: r.api_key_id.map(KeyId::from_trusted),
                token_hint: r.token_hint,
                action: r.action,
                method: r.method,
                route: r.route,
                target: match (r.target_type, r.target_id) {
                    (Some(kind), Some(id)) => Some(AuditTarget { kind, id }),
                    _ => None,
                },
                outcome: r.outcome,
                status: r.status.and_then(|s| u16::try_from(s).ok()),
                ip: r.ip,
                user_agent: r.user_agent,
                request_id: r.request_id,
            },
        }
    }
}

const COLUMNS: &str = "chain, seq, id, occurred_at, actor_type, actor_id, actor_name, api_key_id, token_hint, action,
    method, route, target_type, target_id, outcome, status, ip, user_agent, request_id, prev_hash, hash";

#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub api_key_id: Option<String>,
    /// Events about an object (a key's rotations and revocation, requests addressing it).
    pub target_id: Option<String>,
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
}

/// The result of checking one chain.
#[derive(Clone, Debug, Serialize)]
pub struct ChainReport {
    pub chain: String,
    pub events: i64,
    /// The first event whose stored hash or link does not match, with why.
    pub broken_at: Option<BrokenLink>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BrokenLink {
    /// The event named: the broken one, or where none can be read (an unreadable segment,
    /// removed events) the nearest real one the reason speaks of; `None` (JSON `null`) only
    /// when no event at all can be named, never an empty id.
    pub event_id: Option<String>,
    pub seq: i64,
    pub reason: String,
}

/// Appends `records` to their chains inside an open transaction: each chain's head is taken
/// (`segments_in`), then its events are written as one segment with their search terms and
/// the head is moved (`SegmentConn::write_segments`).
pub(crate) async fn append_audit_in<C: SegmentConn>(
    conn: &mut C,
    records: &[EventView<'_>],
) -> Result<()> {
    let segments = segments_in(conn, records).await?;
    conn.write_segments(&segments).await
}

/// `records` as one segment per chain, in the chains' order, each chain's head taken (and on
/// PostgreSQL locked until the transaction ends); nothing written yet.
pub(crate) async fn segments_in<'a, C: SegmentConn>(
    conn: &mut C,
    records: &[EventView<'a>],
) -> Result<Vec<(&'a str, SegmentBuilder<'a>)>> {
    // The heads are taken in one order on every node (as the tinyId counters are), so that
    // two nodes' batches holding events of the same chains wait for each other's commit
    // instead of deadlocking on their head rows.
    let mut chains: Vec<&str> = records.iter().map(|r| r.chain).collect();
    chains.sort_unstable();
    chains.dedup();
    let mut segments = Vec::with_capacity(chains.len());
    for chain in chains {
        let (seq, hash) = conn.audit_head(chain).await?;
        segments.push((chain, SegmentBuilder::new(seq, hash)));
    }
    for r in records {
        let i = segments
            .binary_search_by(|(chain, _)| (*chain).cmp(r.chain))
            .expect("each record's chain has its segment");
        segments[i].1.append(*r);
    }
    Ok(segments)
}

impl Store {
    /// Appends records to their chains in one transaction.
    pub async fn append_audit(&self, records: &[AuditRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let records: Vec<EventView> = records.iter().map(AuditRecord::view).collect();
        let records = records.as_slice();
        match (&self.db, &self.embedded) {
            (crate::Db::Postgres(pool), _) => {
                let mut tx = pool.begin().await?;
                append_audit_in(&mut *tx, records).await?;
                tx.commit().await?;
            }
            (crate::Db::Sqlite(_), Some(embedded)) => {
                embedded.transaction(|conn| {
                    crate::embedded::now(append_audit_in(conn, records)).map(Some)
                })?;
            }
            (crate::Db::Sqlite(_), None) => {
                return Err(StoreError::Closed);
            }
        }
        Ok(())
    }

    /// The chain's events that pass `filter`, newest first, below the `cursor` (a `seq`).
    /// Segments are read newest first, a few at a time, and only those that may hold a match:
    /// the id filters go through the search terms, the time filters through each segment's
    /// time range; the events of a segment are then tested one by one.
    pub async fn list_audit(
        &self,
        org: &OrgId,
        filter: &AuditFilter,
        limit: usize,
        cursor: Option<i64>,
    ) -> Result<Page<AuditEvent>> {
        self.list_chain(org.as_str(), filter, limit, cursor).await
    }

    /// The refusals recorded before any key was identified (a malformed, unknown or other
    /// region's token), which belong to no organization: their own chain, `""`, newest
    /// first. For the operator's `tocsin audit refusals`; no API route lists them, since no
    /// tenant owns them.
    pub async fn list_unattributed(
        &self,
        filter: &AuditFilter,
        limit: usize,
        cursor: Option<i64>,
    ) -> Result<Page<AuditEvent>> {
        self.list_chain("", filter, limit, cursor).await
    }

    async fn list_chain(
        &self,
        chain: &str,
        filter: &AuditFilter,
        limit: usize,
        cursor: Option<i64>,
    ) -> Result<Page<AuditEvent>> {
        const SEGMENTS: usize = 16;
        let sql = "SELECT first_seq, prev_hash, events FROM audit_segments WHERE chain = $1 AND first_seq < $2
               AND ($3 IS NULL OR last_at >= $3) AND ($4 IS NULL OR first_at < $4)
               AND ($5 IS NULL OR first_seq IN (SELECT first_seq FROM audit_segment_terms WHERE chain = $1 AND term = $5))
               AND ($6 IS NULL OR first_seq IN (SELECT first_seq FROM audit_segment_terms WHERE chain = $1 AND term = $6))
               AND ($7 IS NULL OR first_seq IN (SELECT first_seq FROM audit_segment_terms WHERE chain = $1 AND term = $7))
             ORDER BY first_seq DESC LIMIT $8";
        let term = |kind: char, id: &Option<String>| {
            id.as_deref().map(|id| crate::audit_segment::term(kind, id))
        };
        let (key, actor, target) = (
            term('k', &filter.api_key_id),
            term('a', &filter.actor_id),
            term('t', &filter.target_id),
        );
        let below = cursor.unwrap_or(i64::MAX);
        let mut bound = below;
        let mut found = Vec::new();
        'segments: loop {
            let rows: Vec<(i64, String, Vec<u8>)> = on_db!(&self.db, |pool| {
                sqlx::query_as(sql)
                    .bind(chain)
                    .bind(bound)
                    .bind(filter.since.map(ms))
                    .bind(filter.until.map(ms))
                    .bind(key.as_deref())
                    .bind(actor.as_deref())
                    .bind(target.as_deref())
                    .bind(SEGMENTS as i64)
                    .fetch_all(pool)
                    .await?
            });
            let more = rows.len() == SEGMENTS;
            for (first_seq, prev_hash, bytes) in rows {
                bound = first_seq;
                // A damaged segment is left out of listings, not allowed to stop them: verify
                // names it.
                let segment = match Segment::parse(chain, prev_hash, &bytes) {
                    Ok(segment) => segment,
                    Err(e) => {
                        tracing::warn!(chain, first_seq, error = %e, "skipping an unreadable audit segment; run `tocsin audit verify`");
                        continue;
                    }
                };
                for i in (0..segment.len()).rev() {
                    if segment.seq(i) < below && segment.matches(i, filter) {
                        found.push(segment.event(i));
                        if found.len() > limit {
                            break 'segments;
                        }
                    }
                }
            }
            if !more {
                break;
            }
        }
        Ok(paginate(found, limit, |e: &AuditEvent| e.seq.to_string()))
    }

    /// Moves the events written one row each before migration 0008 into segments, a
    /// thousand at a time, each batch in one transaction with the deletion of its rows. Runs
    /// at every migration and finds nothing once done. Returns how many events moved.
    pub(crate) async fn convert_legacy_audit(&self) -> Result<usize> {
        let chains: Vec<(String,)> = on_db!(&self.db, |pool| {
            sqlx::query_as("SELECT DISTINCT chain FROM audit_events_legacy")
                .fetch_all(pool)
                .await?
        });
        let select = format!(
            "SELECT {COLUMNS} FROM audit_events_legacy WHERE chain = $1 ORDER BY seq LIMIT 1000"
        );
        let mut moved = 0;
        for (chain,) in chains {
            loop {
                let n = on_db!(&self.db, |pool| {
                    let mut tx = pool.begin_write().await?;
                    // Taking the head locks the chain on PostgreSQL: a node converting it at
                    // the same time waits, then finds the rows gone.
                    SegmentConn::audit_head(&mut *tx, &chain).await?;
                    let rows: Vec<EventRow> = sqlx::query_as(safe(&select))
                        .bind(&chain)
                        .fetch_all(&mut *tx)
                        .await?;
                    let events: Vec<AuditEvent> = rows.into_iter().map(AuditEvent::from).collect();
                    // A gap in the sequence, or a link that does not match, starts a new
                    // segment (which keeps that event's stored link), so verify still
                    // reports it.
                    for run in events.chunk_by(|a, b| b.seq == a.seq + 1 && b.prev_hash == a.hash) {
                        let segment = SegmentBuilder::of_events(run);
                        SegmentConn::insert_segment(&mut *tx, &chain, &segment).await?;
                    }
                    if let Some(last) = events.last() {
                        sqlx::query(
                            "DELETE FROM audit_events_legacy WHERE chain = $1 AND seq <= $2",
                        )
                        .bind(&chain)
                        .bind(last.seq)
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    events.len()
                });
                moved += n;
                if n == 0 {
                    break;
                }
            }
        }
        Ok(moved)
    }

    /// The chain's head: its last seq and hash.
    async fn read_audit_head(&self, chain: &str) -> Result<Option<(i64, String)>> {
        Ok(on_db!(&self.db, |pool| {
            sqlx::query_as("SELECT seq, hash FROM audit_heads WHERE chain = $1")
                .bind(chain)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// The id of the event at `seq` in `chain`, when its segment can be read.
    async fn audit_event_id_at(&self, chain: &str, seq: i64) -> Result<Option<String>> {
        let row: Option<(String, Vec<u8>)> = on_db!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT prev_hash, events FROM audit_segments
                 WHERE chain = $1 AND first_seq <= $2 AND last_seq >= $2 ORDER BY first_seq LIMIT 1",
            )
            .bind(chain)
            .bind(seq)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.and_then(|(prev_hash, bytes)| {
            let segment = Segment::parse(chain, prev_hash, &bytes).ok()?;
            segment
                .events()
                .into_iter()
                .find(|e| e.seq == seq)
                .map(|e| e.record.id.to_string())
        }))
    }

    /// Verifies every chain (`verify_chain`), and reports as broken every organization that
    /// has no chain at all: each one has at least its owner key's `api_key.created`, so
    /// none means its whole chain was removed. Organizations created in the last minute are
    /// left out: `init` and `orgs create` record that event just after the organization.
    pub async fn verify_all_chains(&self) -> Result<Vec<ChainReport>> {
        let settled = ms(OffsetDateTime::now_utc() - time::Duration::minutes(1));
        let orgs: Vec<(String,)> = on_db!(&self.db, |pool| {
            sqlx::query_as("SELECT id FROM organizations WHERE created_at < $1 ORDER BY id")
                .bind(settled)
                .fetch_all(pool)
                .await?
        });
        let chains = self.audit_chains().await?;
        let mut reports = Vec::new();
        for chain in &chains {
            reports.push(self.verify_chain(chain).await?);
        }
        for (org,) in orgs {
            if !chains.contains(&org) {
                reports.push(ChainReport {
                    chain: org,
                    events: 0,
                    broken_at: Some(BrokenLink {
                        event_id: None,
                        seq: 1,
                        reason: "this organization exists but has no audit events at all (it has at least its owner key's api_key.created): its whole chain was removed".into(),
                    }),
                });
            }
        }
        reports.sort_by(|a, b| a.chain.cmp(&b.chain));
        Ok(reports)
    }

    /// Every chain present: organization ids, and '' for unattributed refusals.
    pub async fn audit_chains(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = on_db!(&self.db, |pool| {
            sqlx::query_as(
                // A chain whose every event was deleted still has its head: it must be checked too.
                "SELECT chain FROM audit_segments UNION SELECT chain FROM audit_heads ORDER BY chain",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(|(c,)| c).collect())
    }

    /// Recomputes a chain from its first event and reports the first break. The chain may be
    /// growing meanwhile (a running node): the head is read first, and the events up to it are
    /// the ones checked against it; events after it must be covered by the head as it is at
    /// the end (they were committed meanwhile), or they were added outside the writer.
    pub async fn verify_chain(&self, chain: &str) -> Result<ChainReport> {
        let head = self.read_audit_head(chain).await?;
        let bound = head.as_ref().map_or(i64::MAX, |h| h.0);
        let mut prev = GENESIS.to_owned();
        let mut expected_seq = 1i64;
        let mut count = 0i64;
        // The newest event verified, as (seq, id): named when the ones after it are missing.
        let mut last_found: Option<(i64, String)> = None;
        let mut after = i64::MIN;
        loop {
            type SegmentRow = (i64, i64, i64, i64, String, Vec<u8>);
            let rows: Vec<SegmentRow> = on_db!(&self.db, |pool| {
                sqlx::query_as(
                    "SELECT first_seq, last_seq, first_at, last_at, prev_hash, events FROM audit_segments
                     WHERE chain = $1 AND first_seq > $2 AND first_seq <= $3 ORDER BY first_seq LIMIT 64",
                )
                .bind(chain)
                .bind(after)
                .bind(bound)
                .fetch_all(pool)
                .await?
            });
            let Some(last) = rows.last().map(|r| r.0) else {
                break;
            };
            // The search terms of these segments: listings trust them, so they are checked
            // against the events like the rest of each segment's row.
            let term_rows: Vec<(i64, String)> = on_db!(&self.db, |pool| {
                sqlx::query_as(
                    "SELECT first_seq, term FROM audit_segment_terms
                     WHERE chain = $1 AND first_seq > $2 AND first_seq <= $3",
                )
                .bind(chain)
                .bind(after)
                .bind(last)
                .fetch_all(pool)
                .await?
            });
            let mut terms: std::collections::HashMap<i64, std::collections::BTreeSet<String>> =
                Default::default();
            for (first_seq, term) in term_rows {
                terms.entry(first_seq).or_default().insert(term);
            }
            for (first_seq, last_seq, first_at, last_at, prev_hash, bytes) in rows {
                after = first_seq;
                // A break in the segment as a whole (named by where it starts).
                let segment = match Segment::parse(chain, prev_hash, &bytes) {
                    Ok(s) => s,
                    // No event of it can be read: named by where it starts.
                    Err(e) => {
                        return Ok(ChainReport {
                            chain: chain.to_owned(),
                            events: count,
                            broken_at: Some(BrokenLink {
                                event_id: None,
                                seq: first_seq,
                                reason: e.to_string(),
                            }),
                        });
                    }
                };
                for e in segment.events() {
                    let broken = |reason: String| ChainReport {
                        chain: chain.to_owned(),
                        events: count,
                        broken_at: Some(BrokenLink {
                            event_id: Some(e.record.id.to_string()),
                            seq: e.seq,
                            reason,
                        }),
                    };
                    if e.seq != expected_seq {
                        return Ok(broken(format!(
                            "sequence jumps from {} to {}: events were removed",
                            expected_seq - 1,
                            e.seq
                        )));
                    }
                    if e.prev_hash != prev {
                        return Ok(broken("its link to the previous event does not match: an earlier event was changed or removed".into()));
                    }
                    if event_hash(&prev, e.seq, &e.record) != e.hash {
                        return Ok(broken(
                            "its contents do not match its hash: this event was edited".into(),
                        ));
                    }
                    prev = e.hash;
                    last_found = Some((e.seq, e.record.id.to_string()));
                    expected_seq += 1;
                    count += 1;
                }
                // Listings choose segments by these columns and terms: one that disagrees
                // with its events could hide them from a listing while they verify.
                let stored = (
                    first_seq,
                    last_seq,
                    first_at,
                    last_at,
                    terms.remove(&first_seq).unwrap_or_default(),
                );
                if segment.index().as_ref() != Some(&stored) {
                    // Named by the segment's first event, whose own seq is the true start
                    // (the row's `first_seq` may be what was edited).
                    let first = segment.events().into_iter().next();
                    return Ok(ChainReport {
                        chain: chain.to_owned(),
                        events: count,
                        broken_at: Some(BrokenLink {
                            event_id: first.as_ref().map(|e| e.record.id.to_string()),
                            seq: first.as_ref().map_or(first_seq, |e| e.seq),
                            reason: format!(
                                "the index of the segment starting at seq {first_seq} (its seq or time bounds, or its search terms) does not match its events: they could be hidden from listings"
                            ),
                        }),
                    });
                }
            }
        }
        let (newer,): (Option<i64>,) = on_db!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT MAX(last_seq) FROM audit_segments WHERE chain = $1 AND first_seq > $2",
            )
            .bind(chain)
            .bind(bound)
            .fetch_one(pool)
            .await?
        });
        if let Some(newer) = newer {
            let now = self.read_audit_head(chain).await?.map_or(0, |h| h.0);
            if newer > now {
                return Ok(ChainReport {
                    chain: chain.to_owned(),
                    events: count,
                    broken_at: Some(BrokenLink {
                        event_id: self.audit_event_id_at(chain, now + 1).await?,
                        seq: now + 1,
                        reason: format!(
                            "events up to seq {newer} are stored after the chain head (seq {now}): they were added outside the writer"
                        ),
                    }),
                });
            }
        }
        if let Some((seq, hash)) = head
            && (seq != count || hash != prev)
        {
            // The missing events cannot be named: the last one found is, with the first
            // seq that is missing.
            let (event_id, at, reason) = match &last_found {
                Some((last, id)) if seq != count => (
                    Some(id.clone()),
                    *last,
                    format!(
                        "the chain head records {seq} events but {count} were found: the newest events were removed, from seq {} on; this is the last event found",
                        count + 1
                    ),
                ),
                None if seq != count => (
                    None,
                    count + 1,
                    format!(
                        "the chain head records {seq} events but none were found: every event from seq 1 on was removed"
                    ),
                ),
                _ => (
                    last_found.as_ref().map(|(_, id)| id.clone()),
                    count,
                    "the chain head's hash does not match the newest event: it was replaced, or events after it were removed and the head edited".to_owned(),
                ),
            };
            return Ok(ChainReport {
                chain: chain.to_owned(),
                events: count,
                broken_at: Some(BrokenLink {
                    event_id,
                    seq: at,
                    reason,
                }),
            });
        }
        Ok(ChainReport {
            chain: chain.to_owned(),
            events: count,
            broken_at: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for a in [0u8, 1, 9, 10, 99, 100, 199, 200, 255] {
            for b in 0..=255u8 {
                let ip = IpAddr::V4(Ipv4Addr::new(a, b, 255 - b, b / 3));
                assert_eq!(ip_text(ip), ip.to_string());
            }
        }
        for ip in [
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            "2001:db8::1".parse().unwrap(),
            "::ffff:192.0.2.1".parse().unwrap(),
        ] {
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    /// A request event's id is an audit event id, and the bytes kept beside it are those of
    /// the UUID it spells.
    #[test]
    fn a_request_events_id_is_an_audit_event_id_of_its_bytes() {
        let text = RequestText::of(&RequestRecord::bare());
        assert!(AuditEventId::parse(text.id()).is_some(), "{}", text.id());
        let mut buf = [0u8; AuditEventId::TEXT_LEN];
        assert_eq!(
            text.id(),
            AuditEventId::write(uuid::Uuid::from_bytes(text.id), &mut buf)
        );
        assert!(
            text.id()
                .ends_with(&uuid::Uuid::from_bytes(text.id).simple().to_string())
        );
    }

    /// A request event stored from its cheap form hashes and stores as the same event built
    /// as an `AuditRecord` would: the two forms are one event.
    #[test]
    fn a_request_record_is_stored_as_its_audit_record() {
        let caller = Arc::new(Caller {
            org_id: OrgId::generate(),
            actor: AuditActor {
                kind: "integration".into(),
                id: "int_1".into(),
                name: "Datadog \"prod\"".into(),
            },
            api_key_id: Some(KeyId::generate()),
            token_hint: "tcs_i_us_ab...yz".into(),
        });
        let full = RequestRecord {
            occurred_at: from_ms(ms(OffsetDateTime::now_utc())),
            caller: Some(caller),
            outcome: "allowed",
            method: Cow::Borrowed("POST"),
            route: Cow::Borrowed("/v1/api_keys/{id}/rotate"),
            status: 202,
            ip: Some("192.0.2.7".parse().unwrap()),
            user_agent: Some("curl/8".into()),
            request_id: Some(uuid::Uuid::now_v7()),
            target: Some(Box::new(AuditTarget {
                kind: "api_key".into(),
                id: "key_1".into(),
            })),
        };
        let bare = RequestRecord {
            caller: None,
            ip: None,
            user_agent: None,
            request_id: None,
            target: None,
            method: Cow::Owned("PROPFIND".into()),
            ..full.clone()
        };
        let other = RequestRecord {
            outcome: "permission_denied",
            status: 403,
            route: Cow::Borrowed("/v1/teams"),
            target: None,
            ip: Some("2001:db8::7".parse().unwrap()),
            ..full.clone()
        };
        let mut created = AuditRecord::new(Some(OrgId::generate()), "api_key.created", "allowed");
        created.occurred_at = full.occurred_at;
        // Request events of one caller share its strings (and the static ones) by address;
        // stored, they must be the same bytes as the same events with strings of their own.
        let entries: Vec<AuditEntry> = vec![
            full.clone().into(),
            bare.into(),
            created.into(),
            other.into(),
            full.clone().into(),
            full.into(),
        ];
        let prepared = Prepared::all(&entries);
        let views: Vec<EventView> = prepared.iter().map(Prepared::view).collect();
        let records: Vec<AuditRecord> = entries
            .iter()
            .zip(&views)
            .map(|(e, v)| {
                let mut r = match e.clone() {
                    AuditEntry::Record(r) => *r,
                    AuditEntry::Request(r) => r.into_record(),
                };
                r.id = AuditEventId::from_trusted(v.id.to_owned());
                r
            })
            .collect();
        let mut a = SegmentBuilder::new(0, GENESIS.to_owned());
        let mut b = SegmentBuilder::new(0, GENESIS.to_owned());
        for (v, r) in views.iter().zip(&records) {
            assert_eq!(
                event_digest(GENESIS, 7, v),
                event_digest(GENESIS, 7, &r.view())
            );
            assert_eq!(r.request_id.as_deref(), v.request_id);
            assert_eq!(r.ip.as_deref(), v.ip);
            a.append(*v);
            b.append(r.view());
        }
        assert_eq!(a.encode(), b.encode());
        assert_eq!(a.head, b.head);
        assert_eq!(a.terms().collect::<Vec<_>>(), b.terms().collect::<Vec<_>>());
    }

    /// The hashed fields as the first chains were written: built as a JSON value, then
    /// printed. `hash_fields` must keep writing the same bytes, or existing chains would no
    /// longer verify.
    fn fields_via_value(seq: i64, r: &EventView<'_>) -> String {
        serde_json::json!([
            seq,
            r.id,
            ms(r.occurred_at),
            r.chain,
            r.actor.map(|a| [&a.kind, &a.id, &a.name]),
            r.api_key_id,
            r.token_hint,
            r.action,
            r.method,
            r.route,
            r.target.map(|t| [&t.kind, &t.id]),
            r.outcome,
            r.status,
            r.ip,
            r.user_agent,
            r.request_id,
        ])
        .to_string()
    }

    /// The hash as the first chains were written.
    fn hash_via_value(prev_hash: &str, seq: i64, r: &AuditRecord) -> String {
        let mut h = Sha256::new();
        h.update(prev_hash.as_bytes());
        h.update(b"\n");
        h.update(fields_via_value(seq, &r.view()).as_bytes());
        hex::encode(h.finalize())
    }

    #[test]
    fn an_escape_is_found_wherever_it_stands() {
        for len in 0..48 {
            let clean = "aé✓/{} ~\u{7f}"
                .chars()
                .cycle()
                .take(len)
                .collect::<String>();
            assert!(!needs_escape(clean.as_bytes()), "{clean:?}");
            for at in 0..clean.len() {
                for c in [b'"', b'\\', b'\n', 0, 0x1f] {
                    let mut bytes = clean.clone().into_bytes();
                    bytes[at] = c;
                    assert!(needs_escape(&bytes), "{bytes:?}");
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn hash_fields_are_written_as_serde_json_writes_them(
            seq in proptest::prelude::any::<i64>(),
            at in -62_000_000_000_000i64..250_000_000_000_000,
            // ASCII with its control characters, quotes and backslashes, or any text at all
            // (`any::<String>()` alone never makes a control character).
            texts in proptest::collection::vec(
                proptest::prop_oneof!["[\\x00-\\x7f]{0,40}", "(?s:.){0,40}"],
                13,
            ),
            present in proptest::collection::vec(proptest::prelude::any::<bool>(), 10),
            status in proptest::prelude::any::<u16>(),
        ) {
            let actor = AuditActor { kind: texts[4].clone(), id: texts[5].clone(), name: texts[6].clone() };
            let target = AuditTarget { kind: texts[7].clone(), id: texts[8].clone() };
            let pick = |i: usize, t: usize| present[i].then_some(texts[t].as_str());
            let view = EventView {
                id: &texts[0],
                id_bytes: None,
                occurred_at: from_ms(at),
                chain: &texts[1],
                actor: present[0].then_some(&actor),
                api_key_id: pick(1, 2),
                token_hint: pick(2, 3),
                action: &texts[9],
                method: pick(3, 10),
                route: pick(4, 11),
                target: present[5].then_some(&target),
                outcome: &texts[12],
                status: present[6].then_some(status),
                ip: pick(7, 2),
                user_agent: pick(8, 3),
                request_id: pick(9, 10),
                request_id_bytes: None,
            };
            let mut buf = Vec::new();
            hash_fields(&mut buf, seq, &view);
            proptest::prop_assert_eq!(String::from_utf8(buf).unwrap(), fields_via_value(seq, &view));
        }
    }

    #[test]
    fn streamed_hash_matches_the_original_encoding() {
        let bare = AuditRecord::new(None, "http.request", "unknown_key");
        let mut full = AuditRecord::new(Some(OrgId::generate()), "http.request", "allowed");
        full.actor = Some(AuditActor {
            kind: "integration".into(),
            id: "int_1".into(),
            name: "Name with \"quotes\", a tab\t and ünïcode ✓".into(),
        });
        full.api_key_id = Some(KeyId::generate());
        full.token_hint = Some("n23C".into());
        full.method = Some("POST".into());
        full.route = Some("/v1/api_keys/{id}/rotate".into());
        full.target = Some(AuditTarget {
            kind: "api_key".into(),
            id: "key_1".into(),
        });
        full.status = Some(202);
        full.ip = Some("2001:db8::1".into());
        full.user_agent = Some("curl/8 \u{0}\u{1f}".into());
        full.request_id = Some("4f97d1b0-6256-4fae-82e2-69c42aa5ee31".into());
        for (seq, r) in [(1, &bare), (42, &full), (i64::MAX, &full)] {
            assert_eq!(
                event_hash(GENESIS, seq, r),
                hash_via_value(GENESIS, seq, r),
                "seq {seq}"
            );
        }
    }
}
