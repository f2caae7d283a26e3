//! The embedded store's alert log: a new alert is durable, and answered `202`, once it is
//! appended to this file and the file is flushed; it is written into the SQLite tables
//! afterwards, in large batches that no request waits on (issue #5).
//!
//! Why: a SQLite commit writes every page it touches in full, and a new alert touches the
//! last pages of about a dozen b-trees (the alert, its indexes, its request status, the audit
//! trail), so a commit of the fifteen or so alerts that 32 waiting connections gather costs
//! about 2.5 pages of WAL per alert. Appended here, an alert costs its own few hundred bytes;
//! the tables then take hundreds of alerts per commit, a fraction of a page each.
//!
//! Reads of alerts wait until everything logged before them is in the tables
//! (`Store::alerts_settled`), so a client reads its own writes as before; the writer is told
//! to commit at once when a read waits. Ops other than creates (acknowledge, close, ...) are
//! not logged: they resolve an alert the request's audit event names, so they are answered
//! when their commit is durable, as before, and they follow the logged creates through the
//! writer in the order they came.
//!
//! The file is a sequence of records, each one batch of creates:
//! `[length u32 LE][crc32 u32 LE][seq u64 LE][payload]`, the checksum covering the seq and
//! the payload (JSON, since an alert's details are free-form JSON). Records are numbered
//! from the last one the tables took (`meta` key `alert_log_applied`, written in the same
//! transaction as the record's alerts), so a restart writes into the tables exactly the
//! records after it. The file is made `LOG_BYTES` long, of zeros, when created, and records
//! overwrite it from its start: a flush then writes the record's pages and nothing of the
//! file's size or extents (growing the file made each flush write its metadata too, about a
//! third of the log's cost). Each record is written with zeros after it, an end mark the
//! next record overwrites. When the next record would pass the end and the tables hold
//! every record, the log starts over at the beginning. What reads back is the run of whole,
//! consecutively numbered records from the start up to the end mark; anything else where
//! the end mark should be is a record cut short or damaged by a crash during its write
//! (before its flush: nobody was answered), and the rest of the file is cleared. A record
//! that does not fit even an empty file grows it.
//! The file is locked while a process uses it: another process (an offline command beside a
//! running server) neither writes it nor replays it.
//!
//! Records are written with direct I/O (`O_DIRECT`) where the file system allows it: each
//! write is the page-aligned run of 4 KiB pages the record covers, made in memory from the
//! bytes before it on its first page (kept from the previous write) and the record. The
//! direct descriptor is opened with `O_DSYNC` as well, so that the write returns once the
//! record is on stable storage, as a write and an `fdatasync` would (the kernel flushes the
//! disk's cache after it, or writes it with FUA where the disk offers that): one system call
//! and one wait a record instead of two (measured: about 3% less CPU an alert,
//! bench/README.md). Through the page cache, a kernel that caches files in large folios
//! (Linux 6.x on ext4 keeps a file written in 1 MiB pieces, as this one is made, in 1 MiB
//! folios) wrote the whole folio holding a record at each flush: about 1 MiB to the disk for
//! a record of a few hundred bytes (measured: 15 GB written for 72 MB of records in a 6 s
//! benchmark round, bench/README.md). Where direct I/O is refused (a file system without
//! it), records go through the page cache, each written and then flushed.

use crate::alerts::{AlertDraft, AlertOp, OpKind};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use tocsin_core::OrgId;

/// The `meta` key of the last record the tables hold.
pub(crate) const APPLIED_KEY: &str = "alert_log_applied";
/// The log file's size: records go round in it.
pub(crate) const LOG_BYTES: u64 = 32 << 20;
/// A record longer than this is damage, not a record.
const MAX_RECORD: usize = 256 << 20;
const HEADER: usize = 16;
/// The alignment of direct writes: their memory, offset and length. (The logical block size
/// of disks is 512 bytes or 4 KiB; the page size suits both.)
const PAGE: usize = 4096;
/// The direct writer's memory for a write: made this large, grown (to a power of two) for a
/// larger record, and given back at the next record that fits this size once it has grown
/// past `DIRECT_BUF_KEPT`, so that one large record does not hold its memory for good.
const DIRECT_BUF: usize = 1 << 16;
const DIRECT_BUF_KEPT: usize = 1 << 20;

/// One logged create: borrowed from its op when written, owned when read back.
#[derive(Serialize, Deserialize)]
struct Logged<'a> {
    org_id: Cow<'a, str>,
    request_id: Cow<'a, str>,
    integration_id: Cow<'a, Option<String>>,
    draft: Cow<'a, AlertDraft>,
}

/// A record read back: its number and its creates.
pub(crate) type Record = (u64, Vec<AlertOp>);

/// A record as written: header, payload, and the end mark after it.
pub(crate) struct Encoded(Vec<u8>);

impl Encoded {
    /// Its length without the end mark (which the next record overwrites).
    fn len(&self) -> u64 {
        (self.0.len() - HEADER) as u64
    }
}

/// The log file beside a SQLite database, locked by this process.
pub(crate) struct AlertLog {
    file: File,
    /// The same file opened for direct writes, where the file system allows them.
    direct: Option<Direct>,
    path: PathBuf,
    /// Where the next record goes: the end of the newest.
    len: u64,
    /// The file's size.
    size: u64,
    /// The number of the next record.
    next_seq: u64,
}

/// The log's file name beside the database `db`.
pub(crate) fn path_for(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-alerts");
    PathBuf::from(name)
}

impl AlertLog {
    /// Opens (creating) the log of the database at `db` and locks it. `applied` is the last
    /// record the tables hold. Returns the log and the records after `applied`, oldest first;
    /// `None` when another process holds the lock.
    pub(crate) fn open(db: &Path, applied: u64) -> io::Result<Option<(AlertLog, Vec<Record>)>> {
        let path = path_for(db);
        // Private, as the database is: it holds what the alerts say.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (records, whole) = parse(&bytes);
        // A whole number of pages, so that a direct write of the last page stays inside it.
        let size = round_up((bytes.len() as u64).max(LOG_BYTES));
        if (bytes.len() as u64) < size {
            zero_fill(&file, bytes.len() as u64, size)?;
        }
        // Each record is written with zeros after it (an end mark the next record
        // overwrites), so the run ends at zeros. Anything else is a record damaged or cut
        // short (a crash during its write, before its flush: nobody was answered for it).
        // The rest of the file is cleared then, so that nothing after the damage can ever
        // follow a new record as if it were its successor.
        let tail = &bytes[whole..];
        if tail[..tail.len().min(HEADER)].iter().any(|b| *b != 0) {
            tracing::warn!(
                path = %path.display(),
                at = whole,
                "the alert log ends in a record cut short or damaged (a crash during its write, before anyone was answered for it); the rest of the file is cleared"
            );
            zero_fill(&file, whole as u64, size)?;
        }
        // Every time, not only when this opening made the file: one that died between
        // making it and this flush left its name unflushed.
        sync_dir(&path)?;
        let mut pending = Vec::new();
        let mut last = applied;
        let run_last = records.last().map(|(seq, _)| *seq);
        for (seq, payload) in records {
            last = last.max(seq);
            if seq <= applied {
                continue;
            }
            let logged: Vec<Logged> = serde_json::from_slice(payload).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("record {seq} of {} does not read back: {e}", path.display()),
                )
            })?;
            let ops = logged
                .into_iter()
                .map(Logged::into_op)
                .collect::<io::Result<_>>()?;
            pending.push((seq, ops));
        }
        // When the tables hold every record the file holds (a clean stop, or a crash during
        // a write that started over at the beginning and left older records readable before
        // the damage), the next record goes to the start: written after such a run, it would
        // not follow its last record's number, and the next opening would read it as damage.
        let len = match run_last {
            Some(seq) if seq > applied => whole as u64,
            _ => 0,
        };
        let first_page = (len as usize / PAGE) * PAGE;
        let direct = Direct::open(&path, &bytes[first_page..len as usize]);
        let log = AlertLog {
            file,
            direct,
            path,
            len,
            size,
            next_seq: last + 1,
        };
        Ok(Some((log, pending)))
    }

    /// The next record, holding `creates` (other ops are left out), with its end mark.
    pub(crate) fn encode(&self, creates: &[&AlertOp]) -> io::Result<Encoded> {
        let logged: Vec<Logged<'_>> = creates.iter().filter_map(|op| Logged::of(op)).collect();
        let mut record = vec![0u8; HEADER];
        serde_json::to_writer(&mut record, &logged).map_err(io::Error::other)?;
        let payload_len = record.len() - HEADER;
        record[0..4].copy_from_slice(&(payload_len as u32).to_le_bytes());
        record[8..16].copy_from_slice(&self.next_seq.to_le_bytes());
        let crc = crc32fast::hash(&record[8..]);
        record[4..8].copy_from_slice(&crc.to_le_bytes());
        record.extend_from_slice(&[0u8; HEADER]);
        Ok(Encoded(record))
    }

    /// Whether `record` fits after the newest record; if not, it has to wait for the tables
    /// to take every record, so that the log starts over at the beginning of the file.
    pub(crate) fn fits(&self, record: &Encoded) -> bool {
        self.len + record.len() <= self.size
    }

    /// Writes `record` (the latest `encode`) and flushes it to the disk; returns its number.
    /// `all_applied` tells whether the tables hold every record so far: only then may the log
    /// start over at the beginning of the file.
    pub(crate) fn write(&mut self, record: &Encoded, all_applied: bool) -> io::Result<u64> {
        let n = record.len();
        if self.len + n > self.size {
            if all_applied && n <= self.size {
                self.len = 0;
                if let Some(direct) = &mut self.direct {
                    direct.restart();
                }
            } else {
                let size = round_up(self.len + n);
                zero_fill(&self.file, self.size, size)?;
                self.size = size;
            }
        }
        // The end mark, where the file has room for it.
        let room = (self.size - self.len).min(record.0.len() as u64) as usize;
        let bytes = &record.0[..room];
        // A direct write is durable when it returns (`O_DSYNC`). A file system that takes
        // direct opens but not these writes (EINVAL, EOPNOTSUPP), or any other failure of
        // one: the page cache from now on, this record included, written and flushed. (A
        // failing disk fails that write or its flush too.)
        let durable = match &mut self.direct {
            Some(direct) => match direct.write(bytes, self.len) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "the alert log's direct write failed; writing it through the page cache from now on");
                    false
                }
            },
            None => false,
        };
        let written = match durable {
            true => Ok(()),
            false => {
                self.direct = None;
                self.file
                    .write_all_at(bytes, self.len)
                    .and_then(|()| self.file.sync_data())
            }
        };
        if let Err(e) = written {
            // Nobody is answered for this record; spoil its header so that a restart does
            // not create alerts whose requests were refused.
            let _ = self
                .file
                .write_all_at(&[0u8; HEADER], self.len)
                .and_then(|()| self.file.sync_data());
            return Err(e);
        }
        self.len += n;
        if let Some(direct) = &mut self.direct {
            direct.advance(n as usize);
        }
        self.next_seq += 1;
        Ok(self.next_seq - 1)
    }

    /// `encode` and `write` at once.
    #[cfg(test)]
    fn append(&mut self, creates: &[&AlertOp], all_applied: bool) -> io::Result<u64> {
        let record = self.encode(creates)?;
        self.write(&record, all_applied)
    }

    /// The number of the last record appended (0 before any).
    pub(crate) fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl<'a> Logged<'a> {
    /// A create's entry (`None` for any other op).
    fn of(op: &'a AlertOp) -> Option<Self> {
        match &op.kind {
            OpKind::Create(draft) => Some(Logged {
                org_id: Cow::Borrowed(op.org_id.as_str()),
                request_id: Cow::Borrowed(&op.request_id),
                integration_id: Cow::Borrowed(&op.integration_id),
                draft: Cow::Borrowed(draft),
            }),
            _ => None,
        }
    }

    fn into_op(self) -> io::Result<AlertOp> {
        let org_id = OrgId::parse(&self.org_id).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a logged alert names `{}`, which is not an organization id",
                    self.org_id
                ),
            )
        })?;
        Ok(AlertOp {
            org_id,
            request_id: self.request_id.into_owned(),
            integration_id: self.integration_id.into_owned(),
            kind: OpKind::Create(Box::new(self.draft.into_owned())),
        })
    }
}

/// The consecutive run of whole records at the start of `bytes` (number and payload), and
/// where it ends.
fn parse(bytes: &[u8]) -> (Vec<(u64, &[u8])>, usize) {
    let mut records: Vec<(u64, &[u8])> = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= HEADER {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap_or_default());
        if len > MAX_RECORD || bytes.len() - at - HEADER < len {
            break;
        }
        let body = &bytes[at + 8..at + HEADER + len];
        if crc32fast::hash(body) != crc {
            break;
        }
        let seq = u64::from_le_bytes(body[0..8].try_into().unwrap_or_default());
        if records.last().is_some_and(|(last, _)| seq != last + 1) {
            break;
        }
        records.push((seq, &body[8..]));
        at += HEADER + len;
    }
    (records, at)
}

/// `n` rounded up to a whole number of pages.
fn round_up(n: u64) -> u64 {
    n.div_ceil(PAGE as u64) * PAGE as u64
}

/// Direct writes of the log: a second descriptor of the file opened with `O_DIRECT` and
/// `O_DSYNC` (a write returns once it is durable: no `fdatasync` after it), the
/// page-aligned memory a write is made in, and the bytes of the page the next record starts
/// on that come before it (a direct write covers whole pages).
struct Direct {
    file: File,
    buf: Aligned,
    /// The bytes from the start of the page holding the log's end up to the end. (`buf`
    /// holds the last write from that page's start.)
    head: Vec<u8>,
}

impl Direct {
    /// `head`: the bytes of the page where the next record goes, before it.
    #[cfg(target_os = "linux")]
    fn open(path: &Path, head: &[u8]) -> Option<Direct> {
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
            .open(path);
        match file {
            Ok(file) => Some(Direct {
                file,
                buf: Aligned::new(DIRECT_BUF)?,
                head: head.to_vec(),
            }),
            Err(e) => {
                tracing::info!(path = %path.display(), error = %e, "the file system refuses direct writes; the alert log is written through the page cache");
                None
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn open(_: &Path, _: &[u8]) -> Option<Direct> {
        None
    }

    /// Writes `bytes` at `at` (the log's end), durably: the pages they cover, the first
    /// one's earlier bytes kept from before and the last one's rest zeros (past the end
    /// mark: nothing reads there before a record overwrites it).
    fn write(&mut self, bytes: &[u8], at: u64) -> io::Result<()> {
        let before = (at % PAGE as u64) as usize;
        if self.head.len() != before {
            return Err(io::Error::other(format!(
                "the alert log's direct writer lost its place ({} bytes kept for the page at {at}, which has {before} before it)",
                self.head.len()
            )));
        }
        let from = at - before as u64;
        let len = round_up((before + bytes.len()) as u64) as usize;
        // (The pages are made afresh from `head` and the record: the buffer's old content is
        // not needed.)
        let shrink = self.buf.len() > DIRECT_BUF_KEPT && len <= DIRECT_BUF;
        if self.buf.len() < len || shrink {
            self.buf = Aligned::new(len.next_power_of_two().max(DIRECT_BUF))
                .ok_or_else(|| io::Error::other("no page-aligned memory for the alert log"))?;
        }
        let pages = self.buf.slice(len);
        pages[..before].copy_from_slice(&self.head);
        pages[before..before + bytes.len()].copy_from_slice(bytes);
        pages[before + bytes.len()..].fill(0);
        self.file.write_all_at(pages, from)
    }

    /// The last write's first `n` bytes after the log's old end are now part of the log:
    /// keep what of them lies on the page where the next record starts.
    fn advance(&mut self, n: usize) {
        // `buf` starts at the old end's page, `head` long before the old end.
        let end = self.head.len() + n;
        let written = self.buf.slice(end);
        self.head.clear();
        self.head.extend_from_slice(&written[end / PAGE * PAGE..]);
    }

    /// The log starts over at the beginning of the file.
    fn restart(&mut self) {
        self.head.clear();
    }
}

/// Memory aligned to `PAGE`, as direct writes need (without unsafe code: a larger vector
/// and the aligned part of it).
struct Aligned {
    bytes: Vec<u8>,
    start: usize,
}

impl Aligned {
    fn new(len: usize) -> Option<Aligned> {
        let bytes = vec![0u8; len + PAGE];
        let start = bytes.as_ptr().align_offset(PAGE);
        (start < PAGE).then_some(Aligned { bytes, start })
    }

    fn len(&self) -> usize {
        self.bytes.len() - PAGE
    }

    fn slice(&mut self, len: usize) -> &mut [u8] {
        &mut self.bytes[self.start..self.start + len]
    }
}

/// Writes zeros from `from` to `to` and flushes them, with the file's new size.
fn zero_fill(file: &File, from: u64, to: u64) -> io::Result<()> {
    let zeros = vec![0u8; 1 << 20];
    let mut at = from;
    while at < to {
        let n = (to - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_all()
}

/// Flushes the directory holding `path`, so that a new file's name survives a crash.
fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

/// What the store, its readers and its writer share of the alert log.
pub(crate) struct Shared {
    /// The open log, until the writer takes it (`spawn_writers`).
    pub(crate) file: std::sync::Mutex<Option<AlertLog>>,
    /// The last record appended and flushed.
    pub(crate) appended: std::sync::atomic::AtomicU64,
    /// The last record the tables hold.
    pub(crate) applied: tokio::sync::watch::Sender<u64>,
    /// Rung by a read that waits for the tables: the writer commits what it holds at once.
    pub(crate) urgent: std::sync::Arc<tokio::sync::Notify>,
    /// Another process (a running server) held the log when this store opened it.
    pub(crate) held_elsewhere: std::sync::atomic::AtomicBool,
    /// Whether this store has opened (or tried to open) the log.
    pub(crate) opened: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("alert_log::Shared")
            .field("appended", &self.appended)
            .field("applied", &*self.applied.borrow())
            .finish_non_exhaustive()
    }
}

/// How long a read of alerts waits for the tables to take what was logged before it.
const SETTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How often a waiting read rings the writer again.
const RING_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

impl Shared {
    pub(crate) fn new() -> Self {
        Shared {
            file: std::sync::Mutex::new(None),
            appended: std::sync::atomic::AtomicU64::new(0),
            applied: tokio::sync::watch::Sender::new(0),
            urgent: std::sync::Arc::new(tokio::sync::Notify::new()),
            held_elsewhere: std::sync::atomic::AtomicBool::new(false),
            opened: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Waits until the tables hold every alert logged before the call.
    pub(crate) async fn settled(&self) -> crate::Result<()> {
        let target = self.appended.load(std::sync::atomic::Ordering::Acquire);
        let mut applied = self.applied.subscribe();
        if *applied.borrow_and_update() >= target {
            return Ok(());
        }
        // Rung again while the wait lasts: the writer may be in a commit when it is first rung,
        // or holding creates the tables refused, whose next try a ring brings forward.
        let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
        let settled = loop {
            self.urgent.notify_one();
            let slice = (tokio::time::Instant::now() + RING_EVERY).min(deadline);
            match tokio::time::timeout_at(slice, applied.wait_for(|a| *a >= target)).await {
                Ok(result) => break Ok(result),
                Err(_) if tokio::time::Instant::now() >= deadline => break Err(()),
                Err(_) => {}
            }
        };
        match settled {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(crate::StoreError::Closed),
            Err(()) => Err(crate::StoreError::WriteFailed(format!(
                "alerts accepted more than {} s ago are not in the database's tables yet (the writer is failing or stopped; they are kept in {} and written at the next start)",
                SETTLE_WAIT.as_secs(),
                self.file
                    .lock()
                    .ok()
                    .and_then(|f| f.as_ref().map(|l| l.path().display().to_string()))
                    .unwrap_or_else(|| "the alert log".into())
            ))),
        }
    }

    /// The tables now hold the log up to record `seq`.
    pub(crate) fn applied(&self, seq: u64) {
        self.applied.send_if_modified(|a| {
            let newer = seq > *a;
            if newer {
                *a = seq;
            }
            newer
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertDraft;

    fn create(message: &str) -> AlertOp {
        AlertOp {
            org_id: OrgId::parse("org_0123456789abcdef0123456789abcdef").unwrap(),
            request_id: format!("req-{message}"),
            integration_id: Some("int_1".into()),
            kind: OpKind::Create(Box::new(AlertDraft {
                message: message.into(),
                alias: None,
                description: "d".into(),
                responders: vec![],
                teams: vec![],
                visible_to: vec![],
                owner_team_id: None,
                integration: None,
                actions: vec![],
                tags: vec!["t".into()],
                details: serde_json::from_str(r#"{"k": {"nested": [1, "two"]}}"#).unwrap(),
                entity: String::new(),
                source: "s".into(),
                priority: "P3".into(),
                user: "u".into(),
                note: None,
                adjustments: vec![],
                write_teams: Some(vec!["team_1".into()]),
                received_at: None,
            })),
        }
    }

    fn messages(pending: &[Record]) -> Vec<(u64, Vec<String>)> {
        pending
            .iter()
            .map(|(seq, ops)| {
                let texts = ops
                    .iter()
                    .map(|op| match &op.kind {
                        OpKind::Create(d) => d.message.clone(),
                        _ => panic!("not a create"),
                    })
                    .collect();
                (*seq, texts)
            })
            .collect()
    }

    #[test]
    fn records_read_back_after_what_the_tables_hold_and_a_second_process_is_kept_out() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("tocsin.db");
        let (mut log, pending) = AlertLog::open(&db, 0).unwrap().unwrap();
        assert!(pending.is_empty());
        let (a, b, c) = (create("a"), create("b"), create("c"));
        assert_eq!(log.append(&[&a, &b], true).unwrap(), 1);
        assert_eq!(log.append(&[&c], false).unwrap(), 2);
        // The file is made whole at once, and private.
        let meta = std::fs::metadata(path_for(&db)).unwrap();
        assert_eq!(meta.len(), LOG_BYTES);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // Another opener finds it locked.
        assert!(AlertLog::open(&db, 0).unwrap().is_none());
        drop(log);

        let (log, pending) = AlertLog::open(&db, 1).unwrap().unwrap();
        assert_eq!(messages(&pending), vec![(2, vec!["c".to_owned()])]);
        match &pending[0].1[0] {
            AlertOp {
                request_id,
                integration_id,
                kind: OpKind::Create(d),
                ..
            } => {
                assert_eq!(request_id, "req-c");
                assert_eq!(integration_id.as_deref(), Some("int_1"));
                assert_eq!(d.details["k"]["nested"][1], "two");
                assert_eq!(d.write_teams, Some(vec!["team_1".to_owned()]));
            }
            _ => panic!(),
        }
        assert_eq!(log.last_seq(), 2);
        drop(log);
        // Everything written: nothing to read back, and numbering goes on.
        let (mut log, pending) = AlertLog::open(&db, 2).unwrap().unwrap();
        assert!(pending.is_empty());
        assert_eq!(log.append(&[&a], true).unwrap(), 3);
    }

    /// A log of records 1 to 3 ("a", "b", "c"), closed: its directory, where the first
    /// record ends, and the file opened to be damaged.
    fn three_records() -> (tempfile::TempDir, u64, File) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("tocsin.db");
        let (mut log, _) = AlertLog::open(&db, 0).unwrap().unwrap();
        log.append(&[&create("a")], true).unwrap();
        let end_of_first = log.len;
        log.append(&[&create("b")], true).unwrap();
        log.append(&[&create("c")], true).unwrap();
        drop(log);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path_for(&db))
            .unwrap();
        (dir, end_of_first, file)
    }

    #[test]
    fn a_record_cut_short_or_damaged_ends_the_log() {
        let (dir, end_of_first, file) = three_records();
        let db = dir.path().join("tocsin.db");
        // One byte of the second record's payload flipped: the first alone reads back.
        let mut byte = [0u8; 1];
        file.read_exact_at(&mut byte, end_of_first + HEADER as u64 + 3)
            .unwrap();
        file.write_all_at(&[byte[0] ^ 0x20], end_of_first + HEADER as u64 + 3)
            .unwrap();
        let (mut log, pending) = AlertLog::open(&db, 0).unwrap().unwrap();
        assert_eq!(messages(&pending), vec![(1, vec!["a".to_owned()])]);
        // The next record goes where the damage began.
        assert_eq!(log.len, end_of_first);
        assert_eq!(log.append(&[&create("d")], true).unwrap(), 2);
        drop(log);
        let (_, pending) = AlertLog::open(&db, 0).unwrap().unwrap();
        assert_eq!(
            messages(&pending),
            vec![(1, vec!["a".to_owned()]), (2, vec!["d".to_owned()])]
        );
    }

    /// A crash while a record that started over at the beginning of the file was being
    /// written can leave older records readable before the damage. The tables hold them all,
    /// so the next record goes to the start, and the opening after it reads it back (written
    /// after them, it would not follow their numbers, and would be read as damage).
    #[test]
    fn after_a_torn_start_over_the_next_record_reads_back() {
        let (dir, end_of_first, file) = three_records();
        let db = dir.path().join("tocsin.db");
        // Record 4 began at the start; only a later part of it reached the disk.
        file.write_all_at(&[0x55; 40], end_of_first + 4).unwrap();
        drop(file);
        let (mut log, pending) = AlertLog::open(&db, 3).unwrap().unwrap();
        assert!(pending.is_empty());
        assert_eq!(log.len, 0);
        assert_eq!(log.append(&[&create("d")], true).unwrap(), 4);
        drop(log);
        let (_, pending) = AlertLog::open(&db, 3).unwrap().unwrap();
        assert_eq!(messages(&pending), vec![(4, vec!["d".to_owned()])]);
    }

    #[test]
    fn the_log_starts_over_only_once_the_tables_hold_it_all() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("tocsin.db");
        let (mut log, _) = AlertLog::open(&db, 0).unwrap().unwrap();
        // Records of about 1 MiB each: about 30 fill the file.
        let big = create(&"x".repeat(1 << 20));
        let mut seq = 0;
        while log.len + (2 << 20) <= log.size {
            seq = log.append(&[&big], false).unwrap();
        }
        // Not everything written: the file grows rather than overwrite a record.
        let bigger = create(&"y".repeat(3 << 20));
        let grown = log.append(&[&bigger], false).unwrap();
        assert_eq!(grown, seq + 1);
        assert!(log.size > LOG_BYTES);
        // Everything written: the next record goes to the start. (Longer than a page: the
        // grown file ends at a page's end, and a shorter one could fit before it.)
        let again = "again".repeat(1000);
        let first = log.append(&[&create(&again)], true).unwrap();
        assert!(log.len < (1 << 20));
        drop(log);
        // Read back: the newest round only (its end mark hides what is left of the older
        // round).
        let (log, pending) = AlertLog::open(&db, first - 1).unwrap().unwrap();
        assert_eq!(messages(&pending), vec![(first, vec![again])]);
        assert_eq!(log.last_seq(), first);
        // No damage was seen, so the older round's bytes were left alone.
        let mut byte = [0u8; 1];
        log.file.read_exact_at(&mut byte, 5 << 20).unwrap();
        assert_eq!(&byte, b"x");
    }

    /// Whether `file`'s descriptor was opened with `O_DSYNC` (its flags, from
    /// `/proc/self/fdinfo`, in octal).
    #[cfg(target_os = "linux")]
    fn writes_durably(file: &File) -> bool {
        use std::os::fd::AsRawFd;
        let info =
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", file.as_raw_fd())).unwrap();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .map(|f| i64::from_str_radix(f.trim(), 8).unwrap())
            .unwrap();
        flags & i64::from(libc::O_DSYNC) != 0
    }

    #[cfg(not(target_os = "linux"))]
    fn writes_durably(_: &File) -> bool {
        true
    }

    /// Whether the file system of `dir` takes direct opens.
    #[cfg(target_os = "linux")]
    fn direct_allowed(dir: &Path) -> bool {
        let probe = dir.join("probe");
        std::fs::write(&probe, b"").unwrap();
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&probe)
            .is_ok()
    }

    #[cfg(not(target_os = "linux"))]
    fn direct_allowed(_: &Path) -> bool {
        false
    }

    /// Records of every size, across page boundaries and a start-over, read back whole, with
    /// direct writes (where the file system takes them, as it does on these machines) and
    /// through the page cache.
    #[test]
    fn records_of_any_size_read_back_with_direct_writes_and_without() {
        for direct in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("tocsin.db");
            let (mut log, _) = AlertLog::open(&db, 0).unwrap().unwrap();
            if direct {
                assert_eq!(log.direct.is_some(), direct_allowed(dir.path()));
                if let Some(d) = &log.direct {
                    assert!(
                        writes_durably(&d.file),
                        "a direct write is not followed by an fdatasync: its descriptor must have O_DSYNC"
                    );
                }
            } else {
                log.direct = None;
            }
            let sizes = [1, 4000, 100, 9000, 4096 - 2 * HEADER - 60, 1, 20_000, 3];
            let mut seq = 0;
            for (i, n) in sizes.iter().enumerate() {
                seq = log.append(&[&create(&"m".repeat(*n))], i != 4).unwrap();
            }
            // The tables hold them all: the next record starts over, mid-page bytes of the
            // older round after it.
            log.len = log.size - 10;
            let over = log
                .append(&[&create("over"), &create("again")], true)
                .unwrap();
            assert_eq!(over, seq + 1);
            log.append(&[&create(&"z".repeat(5000))], false).unwrap();
            drop(log);
            let (_, pending) = AlertLog::open(&db, seq).unwrap().unwrap();
            assert_eq!(
                messages(&pending),
                vec![
                    (seq + 1, vec!["over".to_owned(), "again".to_owned()]),
                    (seq + 2, vec!["z".repeat(5000)]),
                ],
                "direct writes: {direct}"
            );
            let (_, pending) = AlertLog::open(&db, 0).unwrap().unwrap();
            assert_eq!(pending.len(), 2, "direct writes: {direct}");
        }
    }

    /// A record larger than `DIRECT_BUF_KEPT` grows the direct writer's buffer; the next
    /// small record gives the memory back, and every record reads back.
    #[test]
    fn a_large_record_s_memory_is_given_back() {
        let dir = tempfile::tempdir().unwrap();
        if !direct_allowed(dir.path()) {
            return;
        }
        let db = dir.path().join("tocsin.db");
        let (mut log, _) = AlertLog::open(&db, 0).unwrap().unwrap();
        let big = "b".repeat(2 * DIRECT_BUF_KEPT);
        log.append(&[&create("small")], false).unwrap();
        log.append(&[&create(&big)], false).unwrap();
        let grown = log.direct.as_ref().unwrap().buf.len();
        assert!(grown > DIRECT_BUF_KEPT, "grown to {grown}");
        log.append(&[&create("after")], false).unwrap();
        assert_eq!(log.direct.as_ref().unwrap().buf.len(), DIRECT_BUF);
        drop(log);
        let (_, pending) = AlertLog::open(&db, 0).unwrap().unwrap();
        assert_eq!(
            messages(&pending),
            vec![
                (1, vec!["small".to_owned()]),
                (2, vec![big]),
                (3, vec!["after".to_owned()]),
            ]
        );
    }

    #[test]
    fn parse_stops_at_a_gap_in_the_numbering() {
        let record = |seq: u64, payload: &[u8]| {
            let mut r = vec![0u8; HEADER];
            r.extend_from_slice(payload);
            r[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
            r[8..16].copy_from_slice(&seq.to_le_bytes());
            let crc = crc32fast::hash(&r[8..]);
            r[4..8].copy_from_slice(&crc.to_le_bytes());
            r
        };
        let mut bytes = record(7, b"[]");
        bytes.extend(record(8, b"[]"));
        let end = bytes.len();
        bytes.extend(record(3, b"[]"));
        bytes.extend([0u8; 64]);
        let (records, whole) = parse(&bytes);
        assert_eq!(records.iter().map(|r| r.0).collect::<Vec<_>>(), vec![7, 8]);
        assert_eq!(whole, end);
        // Zeros are no record.
        assert_eq!(parse(&[0u8; 100]).1, 0);
    }
}
