//! The spool's background fsync (`usage.fsync = "periodic"`). The spooler writes
//! events and acknowledges them at once; it hands what it wrote to this thread, which
//! fsyncs at most once per period and only then publishes it as [`Durable`] — what the
//! usage writer reads up to. So answers never wait for the disk, and the store never
//! holds usage the spool could still lose.

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::spool::Durable;

/// The running fsync thread.
pub(super) struct Syncer {
    shared: Arc<Shared>,
    thread: JoinHandle<()>,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

/// Written and not yet fsynced, oldest segment first.
#[derive(Default)]
struct Pending {
    written: Vec<Written>,
    /// The spooler has stopped; this is the last durable data, once fsynced.
    closed: Option<Durable>,
}

/// Segment `seq` (`file`, at `path`) holds `len` written bytes.
struct Written {
    seq: u64,
    file: Arc<File>,
    path: PathBuf,
    len: u64,
}

fn lock(shared: &Shared) -> MutexGuard<'_, Pending> {
    shared
        .pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

impl Syncer {
    /// Starts the thread; it publishes to `durable`.
    pub(super) fn start(
        period: Duration,
        durable: watch::Sender<Durable>,
    ) -> std::io::Result<Syncer> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("tokenroute-fsync".into())
            .spawn({
                let shared = shared.clone();
                move || run(&shared, period, &durable)
            })?;
        Ok(Syncer { shared, thread })
    }

    /// Segment `seq` now holds `len` written bytes.
    pub(super) fn written(&self, seq: u64, file: &Arc<File>, path: &std::path::Path, len: u64) {
        let mut pending = lock(&self.shared);
        // Only an idle thread waits for a write; during its period it waits for a close.
        let idle = pending.written.is_empty();
        match pending.written.last_mut() {
            // Reopened after an error, the same segment comes with another handle;
            // either fsyncs the file.
            Some(last) if last.seq == seq => {
                last.len = len;
                last.file = file.clone();
            }
            _ => pending.written.push(Written {
                seq,
                file: file.clone(),
                path: path.to_path_buf(),
                len,
            }),
        }
        drop(pending);
        if idle {
            self.shared.wake.notify_one();
        }
    }

    /// Fsyncs what is left, publishes `last` (closed), and waits for the thread to end.
    pub(super) fn close(self, last: Durable) {
        lock(&self.shared).closed = Some(last);
        self.shared.wake.notify_one();
        if self.thread.join().is_err() {
            tracing::error!("the usage spool's fsync thread panicked");
        }
    }
}

fn run(shared: &Shared, period: Duration, durable: &watch::Sender<Durable>) {
    loop {
        let (written, closed) = {
            let mut pending = lock(shared);
            while pending.written.is_empty() && pending.closed.is_none() {
                pending = shared
                    .wake
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            // Let what is written during the period share this fsync; a close ends
            // the wait at once.
            let deadline = Instant::now() + period;
            while pending.closed.is_none() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                pending = shared
                    .wake
                    .wait_timeout(pending, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            (std::mem::take(&mut pending.written), pending.closed)
        };
        for segment in &written {
            sync(segment);
        }
        if let Some(last) = written.last() {
            let _ = durable.send(Durable {
                seq: last.seq,
                len: last.len,
                closed: false,
            });
        }
        if let Some(last) = closed {
            let _ = durable.send(last);
            return;
        }
    }
}

/// Fsyncs until the disk takes it: what is published as durable must be.
fn sync(segment: &Written) {
    let mut backoff = Duration::from_millis(10);
    while let Err(e) = segment.file.sync_data() {
        tracing::error!(
            path = %segment.path.display(),
            error = %e,
            "cannot fsync the usage spool; retrying"
        );
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
