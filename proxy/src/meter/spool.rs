//! The usage spool: every metered event is appended to a local file before the
//! client receives the end of its answer, and fsynced — by default before that end
//! too (one fsync serves every request that arrived meanwhile); with `usage.fsync =
//! "periodic"` by a background thread instead ([`SpoolFsync`]). A separate writer
//! moves fsynced events from the spool into the store; a segment file is deleted only
//! once all its events are committed. So a crash, or a store that is down for
//! minutes, loses nothing: on the next start the remaining segments are replayed, and
//! the store's unique request ids make a replay charge nothing twice.
//!
//! Files: `<dir>/usage-<seq>.jsonl`, one JSON event per line, then (in a segment that
//! was zeroed ahead of use, see [`super::prezero`]) zero bytes to the end of the file;
//! `<dir>/prepared.zero`, the next segment's file, zeroed; and `<dir>/LOCK`, held
//! by the one process that owns the directory. Several processes share a configured
//! spool folder through slots (`<dir>`, `<dir>/instance-N`, see [`SLOTS`]); a slot
//! left by a stopped process is an [`Orphan`] the others drain into the store.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokenroute_domain::config::SpoolFsync;
use tokenroute_domain::UsageEvent;
use tokio::sync::{mpsc, oneshot, watch};

use super::fsync::Syncer;
use super::prezero::{self, Prezeroed};

#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Past this many bytes waiting for the store, new requests are refused (503).
    pub max_bytes: u64,
    /// A segment is closed (and can be deleted once written) past this size.
    pub segment_bytes: u64,
    pub fsync: SpoolFsync,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the usage spool {dir} is used by another TokenRoute process")]
    Locked { dir: String },
    #[error("usage spool {path}: {message}")]
    Io { path: String, message: String },
    #[error("the usage spool is closed")]
    Closed,
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> SpoolError {
    SpoolError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// How full the spool is; shared by the spooler, the writer and the request path.
#[derive(Debug, Default)]
pub struct SpoolStats {
    /// Bytes of events in the spool not yet committed to the store (what a segment
    /// holds past its data, zeros, does not count).
    pub bytes: AtomicU64,
    /// Events written to the spool and not yet committed to the store.
    pub pending_events: AtomicU64,
    full: AtomicBool,
    /// When the store last took a batch (Unix ms; the spool's opening before the first).
    last_commit_ms: AtomicI64,
}

impl SpoolStats {
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// How long usage has been waiting without the store taking any (ms): 0 when
    /// nothing waits. Under load with a healthy store it stays near one batch's time;
    /// it grows while the store is down or too slow.
    pub fn stalled_ms(&self, now_ms: i64) -> i64 {
        if self.pending_events.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        (now_ms - self.last_commit_ms.load(Ordering::Relaxed)).max(0)
    }
}

/// The end of the durable data: segment `seq` holds `len` fsynced bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Durable {
    pub seq: u64,
    pub len: u64,
    /// The spooler has stopped: nothing more will be written.
    pub closed: bool,
}

/// An event on its way to the spool; `ack` (if any) hears when it is written (and,
/// with [`SpoolFsync::PerAnswer`], fsynced).
pub struct Submission {
    pub event: UsageEvent,
    pub ack: Option<oneshot::Sender<()>>,
}

/// An opened spool directory: locked, with what earlier runs left in it.
pub struct Spool {
    config: SpoolConfig,
    _lock: File,
    /// Segments left by earlier runs, oldest first.
    pub leftover: Vec<u64>,
    next_seq: u64,
    stats: Arc<SpoolStats>,
}

impl Spool {
    /// Opens (creating) the directory and takes its lock. Returns the spool and every
    /// event earlier runs left in it, so their cost can be counted until committed.
    pub fn open(config: SpoolConfig) -> Result<(Spool, Vec<UsageEvent>), SpoolError> {
        fs::create_dir_all(&config.dir).map_err(|e| io_error(&config.dir, e))?;
        let lock_path = config.dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_error(&lock_path, e))?;
        if lock.try_lock().is_err() {
            return Err(SpoolError::Locked {
                dir: config.dir.display().to_string(),
            });
        }
        let leftover = segments(&config.dir)?;
        let mut events = Vec::new();
        let stats = Arc::new(SpoolStats::default());
        stats
            .last_commit_ms
            .store(tokenroute_domain::clock::now_ms(), Ordering::Relaxed);
        for &seq in &leftover {
            let path = segment_path(&config.dir, seq);
            let bytes = fs::read(&path).map_err(|e| io_error(&path, e))?;
            let parsed = parse_lines(&bytes, true);
            stats
                .bytes
                .fetch_add(parsed.consumed as u64, Ordering::Relaxed);
            events.extend(parsed.events);
        }
        stats
            .pending_events
            .store(events.len() as u64, Ordering::Relaxed);
        let next_seq = leftover.last().map_or(1, |s| s + 1);
        Ok((
            Spool {
                config,
                _lock: lock,
                leftover,
                next_seq,
                stats,
            },
            events,
        ))
    }

    pub fn stats(&self) -> Arc<SpoolStats> {
        self.stats.clone()
    }

    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// Starts the spooler on its own thread (file writes and fsync block), and with
    /// [`SpoolFsync::Periodic`] its fsync thread. It stops when every sender of `rx` is
    /// gone, after writing (and fsyncing) what they sent.
    pub fn start(
        self,
        rx: mpsc::Receiver<Submission>,
        batch_size: usize,
    ) -> Result<
        (
            std::thread::JoinHandle<()>,
            watch::Receiver<Durable>,
            SpoolFiles,
        ),
        SpoolError,
    > {
        let first = Durable {
            seq: self.next_seq,
            len: 0,
            closed: false,
        };
        let (durable_tx, durable_rx) = watch::channel(first);
        let files = SpoolFiles {
            dir: self.config.dir.clone(),
            first_seq: self.leftover.first().copied().unwrap_or(self.next_seq),
            stats: self.stats.clone(),
            max_bytes: self.config.max_bytes,
        };
        let thread_error = |e: std::io::Error| SpoolError::Io {
            path: "spool thread".into(),
            message: e.to_string(),
        };
        let durability = match self.config.fsync {
            SpoolFsync::PerAnswer => Durability::PerAnswer(durable_tx),
            SpoolFsync::Periodic(period) => {
                Durability::Periodic(Syncer::start(period, durable_tx).map_err(thread_error)?)
            }
        };
        let prezeroed =
            Prezeroed::start(&self.config.dir, self.config.segment_bytes).map_err(thread_error)?;
        let spooler = Spooler {
            config: self.config,
            stats: self.stats,
            seq: self.next_seq,
            file: None,
            len: 0,
            zeroed: false,
            prezeroed,
            durability,
            lock: self._lock,
        };
        let thread = std::thread::Builder::new()
            .name("tokenroute-spool".into())
            .spawn(move || spooler.run(rx, batch_size))
            .map_err(thread_error)?;
        Ok((thread, durable_rx, files))
    }
}

struct Spooler {
    config: SpoolConfig,
    stats: Arc<SpoolStats>,
    seq: u64,
    file: Option<Arc<File>>,
    /// Bytes of events in segment `seq`: where the next write goes.
    len: u64,
    /// Segment `seq` was zeroed ahead of use.
    zeroed: bool,
    prezeroed: Prezeroed,
    durability: Durability,
    /// Kept open (and locked) for as long as the spooler runs.
    #[allow(dead_code)]
    lock: File,
}

/// Who fsyncs, and so who publishes what is durable.
enum Durability {
    /// The spooler, before it acknowledges a batch.
    PerAnswer(watch::Sender<Durable>),
    /// The fsync thread, after the spooler acknowledged the batch.
    Periodic(Syncer),
}

impl Spooler {
    fn run(mut self, mut rx: mpsc::Receiver<Submission>, batch_size: usize) {
        let mut batch = Vec::with_capacity(batch_size);
        let mut buf = Vec::with_capacity(64 * 1024);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < batch_size {
                match rx.try_recv() {
                    Ok(s) => batch.push(s),
                    Err(_) => break,
                }
            }
            buf.clear();
            for s in &batch {
                // A UsageEvent always serializes (strings and integers only).
                if serde_json::to_writer(&mut buf, &s.event).is_ok() {
                    buf.push(b'\n');
                }
            }
            self.append_reliably(&buf);
            self.stats
                .pending_events
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            for s in batch.drain(..) {
                if let Some(ack) = s.ack {
                    let _ = ack.send(());
                }
            }
        }
        // After a segment was closed, `seq` is the next one (empty): the reader then
        // sees the last written segment as complete.
        let last = Durable {
            seq: self.seq,
            len: self.len,
            closed: true,
        };
        match self.durability {
            Durability::PerAnswer(durable) => {
                let _ = durable.send(last);
            }
            Durability::Periodic(syncer) => syncer.close(last),
        }
    }

    /// Appends (and, per answer, fsyncs); on failure retries (with a warning) until
    /// the disk takes it: an event a client was charged for is never dropped.
    fn append_reliably(&mut self, buf: &[u8]) {
        let mut backoff = Duration::from_millis(10);
        loop {
            match self.append(buf) {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(error = %e, "cannot write the usage spool; retrying");
                    self.file = None; // reopen
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
        let bytes = self
            .stats
            .bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed)
            + buf.len() as u64;
        self.stats
            .full
            .store(bytes >= self.config.max_bytes, Ordering::Relaxed);
        match &self.durability {
            Durability::PerAnswer(durable) => {
                let _ = durable.send(Durable {
                    seq: self.seq,
                    len: self.len,
                    closed: false,
                });
            }
            Durability::Periodic(syncer) => {
                if let Some(file) = &self.file {
                    let path = segment_path(&self.config.dir, self.seq);
                    syncer.written(self.seq, file, &path, self.len);
                }
            }
        }
        if self.len >= self.config.segment_bytes {
            self.next_segment();
        } else if self.len >= self.config.segment_bytes / 2 {
            self.prezeroed.want();
        }
    }

    fn next_segment(&mut self) {
        self.seq += 1;
        self.file = None;
        self.len = 0;
        self.zeroed = false;
    }

    fn append(&mut self, buf: &[u8]) -> Result<(), SpoolError> {
        // A segment started in a plain file (none was zeroed yet: just after the
        // start, or when zeroing failed) ends as soon as a zeroed one is ready.
        if self.file.is_some() && !self.zeroed && self.len > 0 && self.prezeroed.is_ready() {
            self.next_segment();
        }
        let path = segment_path(&self.config.dir, self.seq);
        if self.file.is_none() {
            // `len` stays what it was when the same segment is reopened after an
            // error: the write is retried at the same place, over whatever part of it
            // reached the file.
            if self.len == 0 {
                self.zeroed = self.prezeroed.take(&path).map_err(|e| io_error(&path, e))?;
            }
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| io_error(&path, e))?;
            self.file = Some(Arc::new(file));
        }
        if let Some(file) = self.file.as_deref() {
            file.write_all_at(buf, self.len)
                .map_err(|e| io_error(&path, e))?;
            if let Durability::PerAnswer(_) = self.durability {
                file.sync_data().map_err(|e| io_error(&path, e))?;
            }
        }
        self.len += buf.len() as u64;
        Ok(())
    }
}

/// The reading side, used by the usage writer: reads durable events in order and
/// deletes segments once everything in them is committed.
pub struct SpoolFiles {
    dir: PathBuf,
    first_seq: u64,
    stats: Arc<SpoolStats>,
    max_bytes: u64,
}

/// Events read from the spool, in order.
#[derive(Debug)]
pub struct Batch {
    pub events: Vec<UsageEvent>,
    /// Where the next read starts.
    pub next: Cursor,
    /// Bytes of the spool these events took.
    pub bytes: u64,
}

/// A position in the spool: segment and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub seq: u64,
    pub offset: u64,
}

impl SpoolFiles {
    pub fn start(&self) -> Cursor {
        Cursor {
            seq: self.first_seq,
            offset: 0,
        }
    }

    /// Reads up to `max_events` complete events after `at`, not past `durable`.
    /// A segment that is complete (older than `durable.seq`) and fully read is
    /// deleted and the cursor moves on.
    pub fn read(
        &self,
        at: Cursor,
        durable: Durable,
        max_events: usize,
    ) -> Result<Batch, SpoolError> {
        let mut at = at;
        loop {
            let path = segment_path(&self.dir, at.seq);
            let complete = at.seq < durable.seq;
            let end = if complete {
                match fs::metadata(&path) {
                    Ok(m) => m.len(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
                    Err(e) => return Err(io_error(&path, e)),
                }
            } else {
                durable.len
            };
            if at.offset < end {
                let mut file = File::open(&path).map_err(|e| io_error(&path, e))?;
                file.seek(SeekFrom::Start(at.offset))
                    .map_err(|e| io_error(&path, e))?;
                let want = (end - at.offset).min(4 * 1024 * 1024);
                let mut bytes = vec![0; usize::try_from(want).unwrap_or(0)];
                file.read_exact(&mut bytes)
                    .map_err(|e| io_error(&path, e))?;
                // A line cut by the end of this read is not torn unless the
                // segment's data ends there.
                let to_end = at.offset + want == end;
                let parsed = parse_limited(&bytes, complete && to_end, max_events);
                // Past the data of a closed segment there are only zeros.
                let offset = if parsed.padding && complete {
                    end
                } else {
                    at.offset + parsed.consumed as u64
                };
                if parsed.consumed > 0 {
                    return Ok(Batch {
                        events: parsed.events,
                        next: Cursor {
                            seq: at.seq,
                            offset,
                        },
                        bytes: parsed.consumed as u64,
                    });
                }
                at.offset = offset;
            }
            if !complete || at.offset < end {
                return Ok(Batch {
                    events: Vec::new(),
                    next: at,
                    bytes: 0,
                });
            }
            // Fully read and closed: its events are committed (the caller commits
            // before asking for more), so the file can go.
            fs::remove_file(&path).or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(io_error(&path, e))
                }
            })?;
            at = Cursor {
                seq: at.seq + 1,
                offset: 0,
            };
        }
    }

    /// Marks a batch as committed to the store.
    pub fn committed(&self, batch: &Batch) {
        self.stats
            .last_commit_ms
            .store(tokenroute_domain::clock::now_ms(), Ordering::Relaxed);
        self.stats
            .pending_events
            .fetch_sub(batch.events.len() as u64, Ordering::Relaxed);
        let before = self
            .stats
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(batch.bytes))
            })
            .unwrap_or_default();
        let bytes = before.saturating_sub(batch.bytes);
        self.stats
            .full
            .store(bytes >= self.max_bytes, Ordering::Relaxed);
    }
}

/// Spool folders one data plane may own: `dir` itself, then `dir/instance-N`. A
/// process takes the first whose lock is free, so a new process can start beside
/// the old one during a graceful upgrade (or a second node on the same disk).
pub const SLOTS: usize = 16;

/// The spool folder of slot `n` under `dir`.
pub fn slot_dir(dir: &Path, n: usize) -> PathBuf {
    if n == 0 {
        dir.to_path_buf()
    } else {
        dir.join(format!("instance-{n}"))
    }
}

/// A spool folder whose process is gone (its lock is free), taken over so that what
/// it left reaches the store without waiting for a process to start in it.
pub struct Orphan {
    dir: PathBuf,
    _lock: File,
    segments: Vec<u64>,
    /// Every event left in it (a torn last line is not an event: it was never acked).
    pub events: Vec<UsageEvent>,
}

impl Orphan {
    /// Locks `dir` if no process holds it and it holds usage; `None` otherwise.
    pub fn take(dir: &Path) -> Result<Option<Orphan>, SpoolError> {
        if !dir.is_dir() {
            return Ok(None);
        }
        let segments = segments(dir)?;
        if segments.is_empty() {
            return Ok(None);
        }
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_error(&lock_path, e))?;
        if lock.try_lock().is_err() {
            return Ok(None);
        }
        // Listed again under the lock: its owner may have finished them meanwhile.
        let segments = self::segments(dir)?;
        let mut events = Vec::new();
        for &seq in &segments {
            let path = segment_path(dir, seq);
            let bytes = fs::read(&path).map_err(|e| io_error(&path, e))?;
            events.extend(parse_lines(&bytes, true).events);
        }
        Ok(Some(Orphan {
            dir: dir.to_path_buf(),
            _lock: lock,
            segments,
            events,
        }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store has every event: delete the files (then the lock is released).
    pub fn finish(self) -> Result<(), SpoolError> {
        for &seq in &self.segments {
            let path = segment_path(&self.dir, seq);
            fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
        }
        // The next segment its process had zeroed: no one may start here again.
        let _ = fs::remove_file(self.dir.join(prezero::READY));
        Ok(())
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("usage-{seq:012}.jsonl"))
}

/// Segment numbers present in `dir`, ascending.
fn segments(dir: &Path) -> Result<Vec<u64>, SpoolError> {
    let mut seqs: Vec<u64> = fs::read_dir(dir)
        .map_err(|e| io_error(dir, e))?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_prefix("usage-")?
                .strip_suffix(".jsonl")?
                .parse()
                .ok()
        })
        .collect();
    seqs.sort_unstable();
    Ok(seqs)
}

/// Events read from a piece of a segment.
struct Parsed {
    events: Vec<UsageEvent>,
    /// Bytes of data (events, and a torn last line when skipped) read.
    consumed: usize,
    /// The data ended: a zero byte follows, and zeros to the end of the segment.
    padding: bool,
}

/// Parses complete lines. When `complete`, a torn last line (a crash mid-write: never
/// acknowledged, so no client saw its answer end) is skipped and counted as consumed.
fn parse_lines(bytes: &[u8], complete: bool) -> Parsed {
    parse_limited(bytes, complete, usize::MAX)
}

/// Lines parsed between two yields of the core in [`parse_limited`].
const LINES_PER_YIELD: usize = 32;
/// Lines after which [`parse_limited`] stops yielding.
const YIELDING_LINES: usize = 512;

/// Parses complete lines, at most `max_events` of them.
///
/// Runs on background threads only (the usage writer, start-up, adopting another
/// node's spool), and yields the core every [`LINES_PER_YIELD`] lines of the first
/// [`YIELDING_LINES`]: a parse never sleeps, at ≈ 2.5 µs a line a batch of a few
/// hundred is a run of a millisecond, and the scheduler (EEVDF protects a running
/// thread's slice) lets a data plane that wakes on the same core wait for it. After a
/// yield, a waiting data plane runs first. Past that many lines the writer has fallen
/// behind, and then it parses as fast as it can: yielding throughout, it gave way so
/// often that at saturation ten times as much usage waited in the spool.
fn parse_limited(bytes: &[u8], complete: bool, max_events: usize) -> Parsed {
    // Zeros follow the data of a zeroed segment. After a crash the data that was
    // written but not yet fsynced (never acknowledged) may also have holes of zeros:
    // whatever follows the first zero byte is not an event anyone was told of.
    let data_end = memchr::memchr(0, bytes);
    let data = &bytes[..data_end.unwrap_or(bytes.len())];
    let mut parsed = Parsed {
        events: Vec::new(),
        consumed: 0,
        padding: false,
    };
    for line in data.split_inclusive(|&b| b == b'\n') {
        if parsed.events.len() >= max_events {
            return parsed;
        }
        if !line.ends_with(b"\n") {
            if complete || data_end.is_some() {
                tracing::warn!(
                    bytes = line.len(),
                    "skipping a torn line at the end of a usage spool segment"
                );
                parsed.consumed += line.len();
            }
            break;
        }
        parsed.consumed += line.len();
        let lines = parsed.events.len();
        if lines < YIELDING_LINES && lines % LINES_PER_YIELD == LINES_PER_YIELD - 1 {
            std::thread::yield_now();
        }
        match serde_json::from_slice::<UsageEvent>(line) {
            Ok(event) => parsed.events.push(event),
            Err(e) => tracing::error!(error = %e, "skipping an unreadable usage spool line"),
        }
    }
    parsed.padding = data_end.is_some();
    parsed
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_stall_counts_from_the_last_commit_while_usage_waits() {
        let stats = SpoolStats::default();
        stats.last_commit_ms.store(1_000, Ordering::Relaxed);
        assert_eq!(stats.stalled_ms(61_000), 0, "nothing waits: no stall");
        stats.pending_events.store(3, Ordering::Relaxed);
        assert_eq!(stats.stalled_ms(61_000), 60_000);
        assert_eq!(stats.stalled_ms(500), 0, "never negative");
    }

    use super::*;
    use std::io::Write;
    use tokenroute_domain::NanoUsd;

    fn event(id: &str) -> UsageEvent {
        UsageEvent {
            request_id: id.into(),
            account_id: "a".into(),
            key_id: "k".into(),
            created_at_ms: 1,
            model: "m".into(),
            provider: "p".into(),
            upstream_model: "u".into(),
            input_tokens: 1,
            output_tokens: 2,
            cost: NanoUsd(3),
            status: 200,
            streamed: false,
            estimated: false,
            cancelled: false,
            duration_ms: 4,
            route: String::new(),
            attempts: 1,
            cached_input_tokens: 0,
        }
    }

    fn config(dir: &Path, segment_bytes: u64) -> SpoolConfig {
        SpoolConfig {
            dir: dir.to_path_buf(),
            max_bytes: 1 << 30,
            segment_bytes,
            fsync: SpoolFsync::PerAnswer,
        }
    }

    fn submit(tx: &mpsc::Sender<Submission>, id: &str) {
        let (ack, acked) = oneshot::channel();
        tx.blocking_send(Submission {
            event: event(id),
            ack: Some(ack),
        })
        .unwrap();
        acked.blocking_recv().unwrap();
    }

    /// Reads (and marks committed) every durable event, `max` at a time.
    fn read_all_by(files: &SpoolFiles, durable: Durable, max: usize) -> (Vec<String>, Cursor) {
        let mut at = files.start();
        let mut read = Vec::new();
        loop {
            let batch = files.read(at, durable, max).unwrap();
            if batch.events.is_empty() && batch.next == at {
                return (read, at);
            }
            files.committed(&batch);
            at = batch.next;
            read.extend(batch.events.into_iter().map(|e| e.request_id));
        }
    }

    fn read_all(files: &SpoolFiles, durable: Durable) -> (Vec<String>, Cursor) {
        read_all_by(files, durable, 2)
    }

    /// A segment's data: its bytes up to the zeros that fill a zeroed segment.
    fn data_of(path: &Path) -> String {
        let bytes = fs::read(path).unwrap();
        let end = memchr::memchr(0, &bytes).unwrap_or(bytes.len());
        String::from_utf8(bytes[..end].to_vec()).unwrap()
    }

    /// Waits until the next segment's file is zeroed and ready.
    fn wait_zeroed(dir: &Path) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !dir.join(prezero::READY).exists() {
            assert!(std::time::Instant::now() < deadline, "no zeroed segment");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn zeroed_segments_are_written_in_place_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(config(dir.path(), 16 * 1024)).unwrap();
        let stats = spool.stats();
        let (tx, rx) = mpsc::channel(16);
        let (thread, durable, files) = spool.start(rx, 8).unwrap();
        wait_zeroed(dir.path());
        let ids: Vec<String> = (0..100).map(|i| format!("z{i}")).collect();
        for id in &ids {
            submit(&tx, id);
        }
        // The first segment is the zeroed file: its size did not change with the
        // writes (the point), unless they went past it.
        let first = segment_path(dir.path(), 1);
        let data = data_of(&first);
        assert!(data.len() >= 16 * 1024, "{}", data.len());
        assert_eq!(
            fs::metadata(&first).unwrap().len(),
            data.len().max(16 * 1024) as u64
        );
        assert!(segments(dir.path()).unwrap().len() >= 2);
        assert!(stats.bytes.load(Ordering::Relaxed) > 0);
        drop(tx);
        thread.join().unwrap();
        // Everything comes back in order, the zeros are not events, and once
        // committed nothing counts as waiting.
        let (read, _) = read_all_by(&files, *durable.borrow(), 7);
        assert_eq!(read, ids);
        assert_eq!(stats.bytes.load(Ordering::Relaxed), 0);
        assert_eq!(stats.pending_events.load(Ordering::Relaxed), 0);
        assert!(!stats.is_full());
    }

    #[test]
    fn a_restart_reads_a_zeroed_segment_up_to_its_zeros_and_a_crash_hole_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (spool, _) = Spool::open(config(dir.path(), 64 * 1024)).unwrap();
            let (tx, rx) = mpsc::channel(16);
            let (thread, _durable, _files) = spool.start(rx, 8).unwrap();
            wait_zeroed(dir.path());
            for i in 0..5 {
                submit(&tx, &format!("c{i}"));
            }
            drop(tx);
            thread.join().unwrap();
        }
        // A crash of the machine kept a later, never fsynced (so never acknowledged)
        // write only in part: a hole of zeros, then the tail of a line.
        let path = segment_path(dir.path(), 1);
        let end = data_of(&path).len() as u64;
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(b"est_id\":\"lost\"}\n", end + 300)
            .unwrap();
        drop(file);

        let (spool, leftover) = Spool::open(config(dir.path(), 64 * 1024)).unwrap();
        let ids: Vec<_> = leftover.iter().map(|e| e.request_id.as_str()).collect();
        assert_eq!(ids, ["c0", "c1", "c2", "c3", "c4"]);
        let stats = spool.stats();
        assert_eq!(stats.bytes.load(Ordering::Relaxed), end, "data, not zeros");
        let (tx, rx) = mpsc::channel(16);
        let (thread, durable, files) = spool.start(rx, 8).unwrap();
        let (read, at) = read_all(&files, *durable.borrow());
        assert_eq!(read, ["c0", "c1", "c2", "c3", "c4"]);
        assert!(at.seq >= 2 && !path.exists(), "read segments are deleted");
        assert_eq!(stats.bytes.load(Ordering::Relaxed), 0);
        // This run zeroes a file for its first segment; unused at the stop, it stays
        // for the next start.
        wait_zeroed(dir.path());
        drop(tx);
        thread.join().unwrap();
        assert!(dir.path().join(prezero::READY).exists());
    }

    #[test]
    fn a_line_cut_by_the_end_of_one_read_is_read_whole_by_the_next() {
        // Reads take at most 4 MiB of a segment: a line across that boundary of a
        // closed segment (here, the first of two) is not torn.
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(config(dir.path(), 9 << 19)).unwrap();
        let (tx, rx) = mpsc::channel(1024);
        let (thread, durable, files) = spool.start(rx, 1024).unwrap();
        wait_zeroed(dir.path());
        let ids: Vec<String> = (0..20_000).map(|i| format!("big-{i:05}")).collect();
        for id in &ids {
            tx.blocking_send(Submission {
                event: event(id),
                ack: None,
            })
            .unwrap();
        }
        drop(tx);
        thread.join().unwrap();
        assert!(data_of(&segment_path(dir.path(), 1)).len() > 4 << 20);
        assert!(segment_path(dir.path(), 2).exists());
        let (read, _) = read_all_by(&files, *durable.borrow(), usize::MAX);
        assert_eq!(read.len(), ids.len());
        assert_eq!(read, ids);
    }

    #[test]
    fn periodic_fsync_acknowledges_once_written_and_publishes_only_what_it_fsynced() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(SpoolConfig {
            fsync: SpoolFsync::Periodic(Duration::from_secs(3600)),
            ..config(dir.path(), 1 << 20)
        })
        .unwrap();
        let (tx, rx) = mpsc::channel(16);
        let (thread, durable, files) = spool.start(rx, 8).unwrap();
        // All three in one segment: the zeroed one (a plain first segment would end
        // when the zeroed file is ready).
        wait_zeroed(dir.path());
        for id in ["p0", "p1", "p2"] {
            submit(&tx, id);
        }
        // Acknowledged: in the file, where a crash of the process cannot take it...
        let written = data_of(&segment_path(dir.path(), 1));
        assert_eq!(written.lines().count(), 3, "{written}");
        // ...but not fsynced within the hour's period, so not offered to the store.
        assert_eq!(durable.borrow().len, 0);
        assert_eq!(read_all(&files, *durable.borrow()).0, Vec::<String>::new());
        // Stopping fsyncs what is left at once and publishes it, also when the fsync
        // thread is already in its period's wait (given time to get there).
        std::thread::sleep(Duration::from_millis(100));
        drop(tx);
        let (joined, stopped) = std::sync::mpsc::channel();
        std::thread::spawn(move || joined.send(thread.join().is_ok()));
        assert_eq!(
            stopped.recv_timeout(Duration::from_secs(30)),
            Ok(true),
            "the spool stopped without waiting out the fsync period"
        );
        let last = *durable.borrow();
        assert!(last.closed);
        assert_eq!(last.len, written.len() as u64);
        assert_eq!(read_all(&files, last).0, ["p0", "p1", "p2"]);
    }

    #[test]
    fn a_stopped_process_slot_is_taken_over_and_emptied_a_live_one_is_not() {
        let base = tempfile::tempdir().unwrap();
        let old = slot_dir(base.path(), 0);
        let (spool, _) = Spool::open(config(&old, 100)).unwrap();
        let (tx, rx) = mpsc::channel(16);
        let (thread, _durable, _files) = spool.start(rx, 8).unwrap();
        let (ack, acked) = oneshot::channel();
        tx.blocking_send(Submission {
            event: event("left-behind"),
            ack: Some(ack),
        })
        .unwrap();
        acked.blocking_recv().unwrap();
        // While its process runs, the slot is not an orphan, and a second process
        // gets the next slot.
        assert!(Orphan::take(&old).unwrap().is_none());
        let (second, _) = Spool::open(config(&slot_dir(base.path(), 1), 100)).unwrap();
        assert!(matches!(
            Spool::open(config(&old, 100)),
            Err(SpoolError::Locked { .. })
        ));
        drop(tx);
        thread.join().unwrap();
        // Its process is gone: the events are taken over, then the files go.
        let orphan = Orphan::take(&old).unwrap().expect("an orphan");
        assert_eq!(orphan.events.len(), 1);
        assert_eq!(orphan.events[0].request_id, "left-behind");
        orphan.finish().unwrap();
        assert!(Orphan::take(&old).unwrap().is_none(), "nothing left");
        drop(second);
    }

    #[test]
    fn events_survive_a_restart_and_segments_go_once_read() {
        for fsync in [
            SpoolFsync::PerAnswer,
            SpoolFsync::Periodic(Duration::from_millis(1)),
        ] {
            survive_a_restart(fsync);
        }
    }

    fn survive_a_restart(fsync: SpoolFsync) {
        let config = |dir: &Path, segment_bytes| SpoolConfig {
            fsync,
            ..config(dir, segment_bytes)
        };
        let dir = tempfile::tempdir().unwrap();
        {
            let (spool, leftover) = Spool::open(config(dir.path(), 100)).unwrap();
            assert!(leftover.is_empty());
            let (tx, rx) = mpsc::channel(16);
            let (thread, durable, _files) = spool.start(rx, 8).unwrap();
            for i in 0..5 {
                // One at a time, each acknowledged once written, so segments rotate.
                submit(&tx, &format!("r{i}"));
            }
            drop(tx);
            thread.join().unwrap();
            assert!(durable.borrow().closed);
        }
        // A crash left a torn line at the end of the last segment.
        let last = *segments(dir.path()).unwrap().last().unwrap();
        let mut f = OpenOptions::new()
            .append(true)
            .open(segment_path(dir.path(), last))
            .unwrap();
        f.write_all(b"{\"request_id\":\"torn").unwrap();

        let (spool, leftover) = Spool::open(config(dir.path(), 100)).unwrap();
        let ids: Vec<_> = leftover.iter().map(|e| e.request_id.as_str()).collect();
        assert_eq!(ids, ["r0", "r1", "r2", "r3", "r4"]);
        let files: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            spool.leftover.len(),
            5,
            "segments rotate past 100 bytes: {files:?}"
        );
        // A second process cannot take the same directory.
        assert!(matches!(
            Spool::open(config(dir.path(), 100)),
            Err(SpoolError::Locked { .. })
        ));

        let (tx, rx) = mpsc::channel(16);
        let (thread, durable, files) = spool.start(rx, 8).unwrap();
        let (read, at) = read_all(&files, *durable.borrow());
        assert_eq!(read, ["r0", "r1", "r2", "r3", "r4"]);
        assert!(
            segments(dir.path()).unwrap().iter().all(|&s| s >= at.seq),
            "read segments are deleted"
        );
        drop(tx);
        thread.join().unwrap();
    }
}
