//! The stored form of audit events: a segment holds the events one commit appended to one
//! chain, encoded with postcard after a format byte. Strings that repeat from event to event
//! (actor, key, route, address, user agent, ...) are kept once in the segment's string table
//! and referred to by index; ids and hashes are kept per event. A busy key's hundreds of
//! events per commit then cost one row of about a hundred bytes per event, where a row per
//! event cost two b-tree inserts and four to five hundred bytes of pages each.

use crate::audit::{AuditActor, AuditEvent, AuditFilter, AuditRecord, AuditTarget, EventView};
use crate::{StoreError, from_ms, ms};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use tocsin_core::{AuditEventId, KeyId, OrgId};

/// The first byte of every stored segment; a new encoding gets a new value. Format 1 kept
/// event and request ids as text; format 2 (written since) keeps them as the 16 bytes of the
/// UUID they spell (`Id`), a third of a request event's bytes, and so of the WAL and
/// checkpoint writes behind it (issue #5). Both are read.
const FORMAT: u8 = 2;

/// A segment's content as read, its ids as text (format 1) or as `Id`s (format 2); `BodyRef`
/// is the same wire form, written from borrows.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct Body<I> {
    strings: Vec<String>,
    events: Vec<Packed<I>>,
}

/// One event; `u32` fields index the segment's string table, `I` is how ids are kept.
#[derive(Serialize, Deserialize)]
struct Packed<I> {
    seq: i64,
    id: I,
    occurred_at: i64,
    actor: Option<[u32; 3]>,
    api_key_id: Option<u32>,
    token_hint: Option<u32>,
    action: u32,
    method: Option<u32>,
    route: Option<u32>,
    target: Option<[u32; 2]>,
    outcome: u32,
    status: Option<u16>,
    ip: Option<u32>,
    user_agent: Option<u32>,
    request_id: Option<I>,
    hash: [u8; 32],
}

impl<I> Packed<I> {
    /// The same event with its event id and request id kept another way.
    fn map_ids<J>(self, event: impl FnOnce(I) -> J, request: impl FnOnce(I) -> J) -> Packed<J> {
        Packed {
            seq: self.seq,
            id: event(self.id),
            occurred_at: self.occurred_at,
            actor: self.actor,
            api_key_id: self.api_key_id,
            token_hint: self.token_hint,
            action: self.action,
            method: self.method,
            route: self.route,
            target: self.target,
            outcome: self.outcome,
            status: self.status,
            ip: self.ip,
            user_agent: self.user_agent,
            request_id: self.request_id.map(request),
            hash: self.hash,
        }
    }
}

/// An id as format 2 keeps it: the 16 bytes of the UUID when the id is written the way
/// Tocsin writes them (`evt_` and 32 lowercase hex digits for an event, the lowercase
/// hyphenated form for a request), its text otherwise (an id from an older store, a
/// client's request id), so that every id reads back exactly as it was.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Id<S> {
    Text(S),
    Uuid([u8; 16]),
}

impl<'a> Id<&'a str> {
    fn event(id: &'a str) -> Self {
        let mut bytes = [0u8; 16];
        match id
            .strip_prefix(AuditEventId::PREFIX)
            .and_then(|r| r.strip_prefix('_'))
        {
            Some(hex)
                if hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                    && hex::decode_to_slice(hex, &mut bytes).is_ok() =>
            {
                Id::Uuid(bytes)
            }
            _ => Id::Text(id),
        }
    }

    fn request(id: &'a str) -> Self {
        let mut buf = uuid::Uuid::encode_buffer();
        match uuid::Uuid::try_parse(id) {
            Ok(u) if u.hyphenated().encode_lower(&mut buf) == id => Id::Uuid(u.into_bytes()),
            _ => Id::Text(id),
        }
    }
}

impl Id<String> {
    fn event_text(self) -> String {
        match self {
            Id::Text(s) => s,
            Id::Uuid(b) => format!("{}_{}", AuditEventId::PREFIX, hex::encode(b)),
        }
    }

    fn request_text(self) -> String {
        match self {
            Id::Text(s) => s,
            Id::Uuid(b) => uuid::Uuid::from_bytes(b).hyphenated().to_string(),
        }
    }
}

/// A segment being built from one commit's events of one chain.
pub(crate) struct SegmentBuilder<'a> {
    /// The hash of the event before the segment.
    pub prev_hash: String,
    /// The hash of the segment's last event (`prev_hash` while it is empty).
    pub head: String,
    pub first_seq: i64,
    pub last_seq: i64,
    pub first_at: i64,
    pub last_at: i64,
    strings: Vec<&'a str>,
    /// Hashed with foldhash, seeded per process: SipHash was 3% of the writer's time under
    /// request events, whose addresses and user agents miss `interned` (each event has its
    /// own copy). Chosen knowing that foldhash resists strings crafted to collide far less:
    /// a table holds one commit's strings at most (2,000 events' worth), and clients choose
    /// only their user agent among them.
    index: HashMap<&'a str, u32, foldhash::fast::RandomState>,
    events: Vec<Packed<Id<&'a str>>>,
    terms: BTreeSet<(char, &'a str)>,
    /// String indexes and search terms by the string's address, tried before the table and
    /// the term set: most strings of a segment are the same few values borrowed again and
    /// again (a credential's shared caller, the interned route, the method and outcome), so
    /// their address finds them without hashing or comparing their text.
    interned: ByAddress<u32>,
    termed: ByAddress<char>,
}

/// A small direct-mapped cache keyed by a string's address and length. Every string a
/// builder sees is borrowed for its whole life, so one address and length is one text.
struct ByAddress<T>([(usize, usize, T); 64]);

impl<T: Copy + Default + PartialEq> ByAddress<T> {
    fn new() -> Self {
        // No string lives at address 0, so the empty slots match nothing.
        ByAddress([(0, 0, T::default()); 64])
    }

    fn slot(s: &str) -> usize {
        ((s.as_ptr() as usize >> 3) ^ s.len()) % 64
    }

    fn get(&self, s: &str) -> Option<T> {
        let (addr, len, v) = self.0[Self::slot(s)];
        (addr == s.as_ptr() as usize && len == s.len()).then_some(v)
    }

    fn put(&mut self, s: &str, v: T) {
        self.0[Self::slot(s)] = (s.as_ptr() as usize, s.len(), v);
    }
}

impl<'a> SegmentBuilder<'a> {
    /// A segment continuing a chain whose last event is `head_seq` with hash `prev_hash`.
    pub(crate) fn new(head_seq: i64, prev_hash: String) -> Self {
        SegmentBuilder {
            head: prev_hash.clone(),
            prev_hash,
            first_seq: head_seq + 1,
            last_seq: head_seq,
            first_at: i64::MAX,
            last_at: i64::MIN,
            strings: Vec::new(),
            index: HashMap::default(),
            events: Vec::new(),
            terms: BTreeSet::new(),
            interned: ByAddress::new(),
            termed: ByAddress::new(),
        }
    }

    fn intern(&mut self, s: &'a str) -> u32 {
        if let Some(i) = self.interned.get(s) {
            return i;
        }
        let i = match self.index.get(s) {
            Some(&i) => i,
            None => {
                let i =
                    u32::try_from(self.strings.len()).expect("a segment holds far fewer strings");
                self.strings.push(s);
                self.index.insert(s, i);
                i
            }
        };
        self.interned.put(s, i);
        i
    }

    fn add_term(&mut self, kind: char, id: &'a str) {
        if self.termed.get(id) != Some(kind) {
            self.terms.insert((kind, id));
            self.termed.put(id, kind);
        }
    }

    /// Appends `r` to the chain as its next event: its hash covers the previous event's.
    pub(crate) fn append(&mut self, r: EventView<'a>) {
        let seq = self.last_seq + 1;
        let hash = crate::audit::event_digest(&self.head, seq, &r);
        self.push(r, seq, hash);
    }

    /// Adds the event `r` at `seq` with the hash it has; events come in sequence order.
    fn push(&mut self, r: EventView<'a>, seq: i64, hash: [u8; 32]) {
        // The head is rewritten in place: its buffer is reused from event to event.
        let mut hex = [0u8; 64];
        hex::encode_to_slice(hash, &mut hex).expect("64 hex digits hold 32 bytes");
        self.head.clear();
        self.head
            .push_str(std::str::from_utf8(&hex).expect("hex digits are ASCII"));
        if self.events.is_empty() {
            self.first_seq = seq;
        }
        self.last_seq = seq;
        let at = ms(r.occurred_at);
        self.first_at = self.first_at.min(at);
        self.last_at = self.last_at.max(at);
        if let Some(k) = r.api_key_id {
            self.add_term('k', k);
        }
        if let Some(a) = r.actor {
            self.add_term('a', &a.id);
        }
        if let Some(t) = r.target {
            self.add_term('t', &t.id);
        }
        let packed = Packed {
            seq,
            id: match r.id_bytes {
                Some(bytes) => {
                    debug_assert_eq!(Id::event(r.id), Id::Uuid(bytes), "the id's text and bytes");
                    Id::Uuid(bytes)
                }
                None => Id::event(r.id),
            },
            occurred_at: at,
            actor: r.actor.map(|a| {
                [
                    self.intern(&a.kind),
                    self.intern(&a.id),
                    self.intern(&a.name),
                ]
            }),
            api_key_id: r.api_key_id.map(|k| self.intern(k)),
            token_hint: r.token_hint.map(|s| self.intern(s)),
            action: self.intern(r.action),
            method: r.method.map(|s| self.intern(s)),
            route: r.route.map(|s| self.intern(s)),
            target: r.target.map(|t| [self.intern(&t.kind), self.intern(&t.id)]),
            outcome: self.intern(r.outcome),
            status: r.status,
            ip: r.ip.map(|s| self.intern(s)),
            user_agent: r.user_agent.map(|s| self.intern(s)),
            request_id: r.request_id.map(|text| match r.request_id_bytes {
                Some(bytes) => {
                    debug_assert_eq!(
                        Id::request(text),
                        Id::Uuid(bytes),
                        "the request id's text and bytes"
                    );
                    Id::Uuid(bytes)
                }
                None => Id::request(text),
            }),
            hash,
        };
        self.events.push(packed);
    }

    /// The stored bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let body = BodyRef {
            strings: &self.strings,
            events: &self.events,
        };
        let mut out = Vec::with_capacity(64 + self.events.len() * 128);
        out.push(FORMAT);
        postcard::to_io(&body, &mut out).expect("writing into memory cannot fail");
        out
    }

    /// The segment's search terms: `k:` key ids, `a:` actor ids, `t:` target ids.
    pub(crate) fn terms(&self) -> impl Iterator<Item = String> + '_ {
        self.terms.iter().map(|(kind, id)| term(*kind, id))
    }
}

/// A search term: `k:` a key id, `a:` an actor id, `t:` a target id.
pub(crate) fn term(kind: char, id: &str) -> String {
    format!("{kind}:{id}")
}

/// `Body` by reference, for encoding (the same wire form).
#[derive(Serialize)]
struct BodyRef<'s, 'a, I> {
    strings: &'s [&'a str],
    events: &'s [Packed<I>],
}

/// A stored segment, parsed: its events are built one at a time, so that a search builds
/// only those it keeps.
pub(crate) struct Segment {
    chain: String,
    prev_hash: String,
    body: Body<String>,
}

impl Segment {
    /// Parses the stored `bytes` of a segment of `chain` whose previous event's hash is
    /// `prev_hash`.
    pub(crate) fn parse(chain: &str, prev_hash: String, bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |why: String| {
            StoreError::Config(format!(
                "an audit segment of chain `{chain}` cannot be read ({why}): the stored events were altered"
            ))
        };
        let Some((&format, rest)) = bytes.split_first() else {
            return Err(corrupt("it is empty".into()));
        };
        let body: Body<String> = match format {
            1 => postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string()))?,
            2 => {
                let body: Body<Id<String>> =
                    postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string()))?;
                Body {
                    strings: body.strings,
                    events: body
                        .events
                        .into_iter()
                        .map(|p| p.map_ids(Id::event_text, Id::request_text))
                        .collect(),
                }
            }
            _ => return Err(corrupt(format!("unknown format {format}"))),
        };
        let n = body.strings.len();
        let bad = |i: &u32| *i as usize >= n;
        let indexes_ok = body.events.iter().all(|p| {
            let opt = |o: Option<u32>| o.as_ref().is_some_and(bad);
            !(p.actor.iter().flatten().any(bad)
                || p.target.iter().flatten().any(bad)
                || bad(&p.action)
                || bad(&p.outcome)
                || opt(p.api_key_id)
                || opt(p.token_hint)
                || opt(p.method)
                || opt(p.route)
                || opt(p.ip)
                || opt(p.user_agent))
        });
        if !indexes_ok {
            return Err(corrupt("a string index is out of range".into()));
        }
        Ok(Segment {
            chain: chain.to_owned(),
            prev_hash,
            body,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.body.events.len()
    }

    pub(crate) fn seq(&self, i: usize) -> i64 {
        self.body.events[i].seq
    }

    fn text(&self, i: u32) -> &str {
        &self.body.strings[i as usize]
    }

    /// True when event `i` passes the filter's field tests (the caller applies the cursor).
    pub(crate) fn matches(&self, i: usize, f: &AuditFilter) -> bool {
        let p = &self.body.events[i];
        let is = |want: &Option<String>, have: Option<u32>| match want {
            None => true,
            Some(w) => have.is_some_and(|h| self.text(h) == w),
        };
        is(&f.api_key_id, p.api_key_id)
            && is(&f.actor_id, p.actor.map(|a| a[1]))
            && is(&f.target_id, p.target.map(|t| t[1]))
            && is(&f.action, Some(p.action))
            && is(&f.outcome, Some(p.outcome))
            && f.since.is_none_or(|s| p.occurred_at >= ms(s))
            && f.until.is_none_or(|u| p.occurred_at < ms(u))
    }

    /// Event `i`, with the hash of the event before it.
    pub(crate) fn event(&self, i: usize) -> AuditEvent {
        let p = &self.body.events[i];
        let prev_hash = match i {
            0 => self.prev_hash.clone(),
            _ => hex::encode(self.body.events[i - 1].hash),
        };
        let text = |i: u32| self.text(i).to_owned();
        let record = AuditRecord {
            id: AuditEventId::from_trusted(p.id.clone()),
            occurred_at: from_ms(p.occurred_at),
            org_id: (!self.chain.is_empty()).then(|| OrgId::from_trusted(self.chain.clone())),
            actor: p.actor.map(|[kind, id, name]| AuditActor {
                kind: text(kind),
                id: text(id),
                name: text(name),
            }),
            api_key_id: p.api_key_id.map(|k| KeyId::from_trusted(text(k))),
            token_hint: p.token_hint.map(text),
            action: text(p.action),
            method: p.method.map(text),
            route: p.route.map(text),
            target: p.target.map(|[kind, id]| AuditTarget {
                kind: text(kind),
                id: text(id),
            }),
            outcome: text(p.outcome),
            status: p.status,
            ip: p.ip.map(text),
            user_agent: p.user_agent.map(text),
            request_id: p.request_id.clone(),
        };
        AuditEvent {
            record,
            seq: p.seq,
            prev_hash,
            hash: hex::encode(p.hash),
        }
    }

    /// What the segment's row says of it, as its events say it: the first and last seq, the
    /// earliest and latest time (ms), and its search terms. `None` for a segment with no
    /// events (no writer stores one).
    pub(crate) fn index(&self) -> Option<(i64, i64, i64, i64, BTreeSet<String>)> {
        let (first, last) = (self.body.events.first()?, self.body.events.last()?);
        let times = self.body.events.iter().map(|p| p.occurred_at);
        let (earliest, latest) = (times.clone().min()?, times.max()?);
        let mut terms = BTreeSet::new();
        for p in &self.body.events {
            if let Some(k) = p.api_key_id {
                terms.insert(term('k', self.text(k)));
            }
            if let Some([_, id, _]) = p.actor {
                terms.insert(term('a', self.text(id)));
            }
            if let Some([_, id]) = p.target {
                terms.insert(term('t', self.text(id)));
            }
        }
        Some((first.seq, last.seq, earliest, latest, terms))
    }

    /// Every event, in sequence order.
    pub(crate) fn events(&self) -> Vec<AuditEvent> {
        (0..self.len()).map(|i| self.event(i)).collect()
    }
}

impl<'a> SegmentBuilder<'a> {
    /// A segment of events as they are (the legacy conversion, the tests' tampering
    /// helpers): each keeps the hash it has, whatever its fields now say, and the first
    /// one's `prev_hash` is the segment's.
    pub(crate) fn of_events(events: &'a [AuditEvent]) -> Self {
        let first = events
            .first()
            .map(|e| e.prev_hash.clone())
            .unwrap_or_default();
        let mut b = SegmentBuilder::new(0, first);
        for e in events {
            // A stored hash that is not one (edited, in a legacy row) is kept as zeros, which
            // no event hashes to: verify then names the event instead of the conversion
            // refusing to start.
            let mut hash = [0u8; 32];
            if hex::decode_to_slice(&e.hash, &mut hash).is_err() {
                hash = [0u8; 32];
            }
            b.push(e.record.view(), e.seq, hash);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::GENESIS;

    fn full(org: &OrgId, key: &KeyId, n: usize) -> AuditRecord {
        let mut r = AuditRecord::new(Some(org.clone()), "http.request", "allowed");
        r.actor = Some(AuditActor {
            kind: "integration".into(),
            id: "int_1".into(),
            name: "Name with \"quotes\" and ünïcode ✓".into(),
        });
        r.api_key_id = Some(key.clone());
        r.token_hint = Some("n23C".into());
        r.method = Some("GET".into());
        r.route = Some("/v1/auth/whoami".into());
        r.target = Some(AuditTarget {
            kind: "api_key".into(),
            id: format!("key_{n}"),
        });
        r.status = Some(200);
        r.ip = Some("2001:db8::1".into());
        r.user_agent = Some("curl/8".into());
        r.request_id = Some(uuid::Uuid::new_v4().to_string());
        // Times are stored to the millisecond, as they always were.
        r.occurred_at = from_ms(ms(r.occurred_at));
        r
    }

    /// What is appended reads back field for field, with each event's hash linking to the
    /// one before; strings shared by events are stored once.
    #[test]
    fn events_read_back_as_they_were_appended() {
        let org = OrgId::generate();
        let keys = [KeyId::generate(), KeyId::generate()];
        let mut records: Vec<AuditRecord> =
            (0..50).map(|n| full(&org, &keys[n % 2], n % 2)).collect();
        let mut bare = AuditRecord::new(Some(org.clone()), "api_key.created", "allowed");
        bare.occurred_at = from_ms(ms(bare.occurred_at));
        records.push(bare);
        let mut b = SegmentBuilder::new(0, GENESIS.to_owned());
        for r in &records {
            b.append(r.view());
        }
        let bytes = b.encode();
        // About 100 bytes an event, a third of it the hash: a row per event took 450 and
        // more, format 1's text ids about 140.
        assert!(
            bytes.len() < 51 * 110,
            "{} bytes for 51 events: shared strings should be stored once, ids as bytes",
            bytes.len()
        );
        let segment = Segment::parse(org.as_str(), GENESIS.to_owned(), &bytes).unwrap();
        let events = segment.events();
        assert_eq!(events.len(), records.len());
        let mut prev = GENESIS.to_owned();
        for (i, (e, r)) in events.iter().zip(&records).enumerate() {
            assert_eq!(e.seq, i as i64 + 1);
            assert_eq!(e.prev_hash, prev);
            assert_eq!(e.hash, crate::audit::event_hash(&prev, e.seq, r));
            assert_eq!(format!("{:?}", e.record), format!("{r:?}"));
            prev = e.hash.clone();
        }
        assert_eq!(b.head, prev);
        let terms: Vec<String> = b.terms().collect();
        assert_eq!(terms.iter().filter(|t| t.starts_with("k:")).count(), 2);
        assert!(terms.contains(&"a:int_1".to_owned()));
        assert!(terms.contains(&"t:key_1".to_owned()));
    }

    /// Segments written before format 2, with their ids as text, read as they always did.
    #[test]
    fn format_1_segments_still_read() {
        let org = OrgId::generate();
        let records: Vec<AuditRecord> = (0..3).map(|n| full(&org, &KeyId::generate(), n)).collect();
        let mut b = SegmentBuilder::new(0, GENESIS.to_owned());
        for r in &records {
            b.append(r.view());
        }
        let format_2 = Segment::parse(org.as_str(), GENESIS.into(), &b.encode())
            .unwrap()
            .events();
        // The same events as format 1 wrote them: ids as text.
        let events: Vec<Packed<&str>> = b
            .events
            .iter()
            .zip(&records)
            .map(|(p, r)| Packed {
                seq: p.seq,
                id: r.id.as_str(),
                occurred_at: p.occurred_at,
                actor: p.actor,
                api_key_id: p.api_key_id,
                token_hint: p.token_hint,
                action: p.action,
                method: p.method,
                route: p.route,
                target: p.target,
                outcome: p.outcome,
                status: p.status,
                ip: p.ip,
                user_agent: p.user_agent,
                request_id: r.request_id.as_deref(),
                hash: p.hash,
            })
            .collect();
        let mut format_1 = vec![1u8];
        postcard::to_io(
            &BodyRef {
                strings: &b.strings,
                events: &events,
            },
            &mut format_1,
        )
        .unwrap();
        let read = Segment::parse(org.as_str(), GENESIS.into(), &format_1)
            .unwrap()
            .events();
        assert_eq!(format!("{read:?}"), format!("{format_2:?}"));
        let mut prev = GENESIS.to_owned();
        for (e, r) in read.iter().zip(&records) {
            assert_eq!(format!("{:?}", e.record), format!("{r:?}"));
            assert_eq!(e.hash, crate::audit::event_hash(&prev, e.seq, r));
            prev = e.hash.clone();
        }
    }

    /// Only ids written exactly as Tocsin writes them are kept as bytes; any other id is
    /// kept as its text, so every id reads back as it was given.
    #[test]
    fn ids_are_bytes_only_when_they_read_back_the_same() {
        let event = AuditEventId::generate();
        assert!(matches!(Id::event(event.as_str()), Id::Uuid(_)));
        let request = uuid::Uuid::now_v7().hyphenated().to_string();
        assert!(matches!(Id::request(&request), Id::Uuid(_)));
        let upper = event.as_str().to_uppercase().replacen("EVT", "evt", 1);
        let not_ours = [
            "evt_1",
            "legacy-event-7",
            upper.as_str(),
            "evt_0123456789abcdef0123456789abcdef00",
        ];
        for id in not_ours {
            assert_eq!(Id::event(id), Id::Text(id), "{id}");
        }
        let braced = format!("{{{request}}}");
        let simple = request.replace('-', "");
        let upper = request.to_uppercase();
        for id in ["req-42", braced.as_str(), simple.as_str(), upper.as_str()] {
            assert_eq!(Id::request(id), Id::Text(id), "{id}");
        }
        let own = |i: Id<&str>| match i {
            Id::Text(s) => Id::Text(s.to_owned()),
            Id::Uuid(b) => Id::Uuid(b),
        };
        assert_eq!(own(Id::event(event.as_str())).event_text(), event.as_str());
        assert_eq!(own(Id::request(&request)).request_text(), request);
    }

    #[test]
    fn damaged_bytes_are_an_error_not_a_panic() {
        let org = OrgId::generate();
        let r = full(&org, &KeyId::generate(), 0);
        let mut b = SegmentBuilder::new(0, GENESIS.to_owned());
        b.append(r.view());
        let bytes = b.encode();
        for cut in 0..bytes.len() {
            assert!(Segment::parse(org.as_str(), GENESIS.into(), &bytes[..cut]).is_err());
        }
        let mut other_format = bytes.clone();
        other_format[0] = 9;
        assert!(Segment::parse(org.as_str(), GENESIS.into(), &other_format).is_err());
        // A string index pointing past the table.
        let mut body: Body<Id<String>> = postcard::from_bytes(&bytes[1..]).unwrap();
        body.strings.truncate(1);
        let mut short = vec![FORMAT];
        postcard::to_io(&body, &mut short).unwrap();
        let err = Segment::parse(org.as_str(), GENESIS.into(), &short)
            .err()
            .unwrap();
        assert!(err.to_string().contains("out of range"), "{err}");
    }
}
