//! The usage path: request → bounded channel → spool (fsynced) → store.
//!
//! [`UsageSink`] is what requests hold. [`UsageWriter`] follows the spool and writes
//! its events to the store in batches, each one transaction, idempotent by request
//! id; a batch that fails is retried (the store may be down for minutes: the spool
//! grows meanwhile) and a segment is deleted only after its events are committed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokenroute_domain::{NanoUsd, UsageEvent};
use tokenroute_store::Store;
use tokio::sync::{mpsc, oneshot, watch};

use super::spool::{Durable, SpoolFiles, SpoolStats, Submission};
use crate::credit::CreditBook;

/// The request side of the usage path.
#[derive(Clone)]
pub struct UsageSink {
    tx: mpsc::Sender<Submission>,
    stats: Arc<SpoolStats>,
}

impl UsageSink {
    pub fn new(tx: mpsc::Sender<Submission>, stats: Arc<SpoolStats>) -> UsageSink {
        UsageSink { tx, stats }
    }

    /// Records an event and waits until it is in the spool file (and fsynced, unless
    /// `usage.fsync` is periodic). Called before the last bytes of an answer go to the
    /// client, so every answer a client received is metered.
    pub async fn record(&self, event: UsageEvent) {
        let (ack, acked) = oneshot::channel();
        let request_id = event.request_id.clone();
        if self
            .tx
            .send(Submission {
                event,
                ack: Some(ack),
            })
            .await
            .is_err()
            || acked.await.is_err()
        {
            tracing::error!(%request_id, "the usage spool is closed; event not recorded");
        }
    }

    /// Records an event without waiting for the disk (refusals, at no cost).
    pub async fn record_later(&self, event: UsageEvent) {
        let request_id = event.request_id.clone();
        if self.tx.send(Submission { event, ack: None }).await.is_err() {
            tracing::error!(%request_id, "the usage spool is closed; event not recorded");
        }
    }

    /// Too much usage is waiting for the store: new requests are refused until it drains.
    pub fn is_full(&self) -> bool {
        self.stats.is_full()
    }
}

pub struct UsageWriter {
    pub files: SpoolFiles,
    pub durable: watch::Receiver<Durable>,
    pub store: Store,
    pub credit: Arc<CreditBook>,
    pub stats: Arc<SpoolStats>,
    pub batch_size: usize,
    /// See `usage.commit-interval-ms`.
    pub commit_interval: Duration,
}

/// On shutdown, how long the writer keeps trying to commit what is in the spool when
/// the store fails, before leaving the rest for the next start.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

impl UsageWriter {
    /// Writes until the spooler has closed, or `shutdown` fires, and everything durable
    /// is committed — or the store has failed for [`SHUTDOWN_DRAIN`] after `shutdown`
    /// (what is left stays in the spool and is replayed at the next start).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut at = self.files.start();
        let mut drain_deadline: Option<Instant> = None;
        let mut last_warning = Instant::now() - Duration::from_secs(60);
        // When the last commit took everything there was, or the first events after a
        // quiet spell have arrived: wait out the interval, so that what arrives
        // meanwhile goes in one transaction (a store's cost is per commit as much as per
        // row), unless shutting down. After a quiet spell the wait also keeps the
        // commit off the moment the answer ended: a client calling in a loop sends its
        // next request then, and the commit would share the core with it.
        let mut caught_up_at: Option<Instant> = None;
        loop {
            if let (Some(at), None) = (caught_up_at.take(), drain_deadline) {
                tokio::select! {
                    () = tokio::time::sleep_until((at + self.commit_interval).into()) => {}
                    _ = shutdown.changed() => {
                        drain_deadline = Some(Instant::now() + SHUTDOWN_DRAIN);
                    }
                }
            }
            let durable = *self.durable.borrow_and_update();
            let batch = match self.files.read(at, durable, self.batch_size) {
                Ok(read) => read,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the usage spool; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if batch.events.is_empty() && batch.next == at {
                if durable.closed || drain_deadline.is_some() {
                    // Everything durable is committed; anything the spooler writes
                    // from now on is replayed at the next start.
                    return;
                }
                tokio::select! {
                    changed = self.durable.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        caught_up_at = Some(Instant::now());
                    }
                    _ = shutdown.changed(), if drain_deadline.is_none() => {
                        drain_deadline = Some(Instant::now() + SHUTDOWN_DRAIN);
                    }
                }
                continue;
            }
            if !batch.events.is_empty()
                && !self
                    .commit(
                        &batch.events,
                        &shutdown,
                        &mut drain_deadline,
                        &mut last_warning,
                    )
                    .await
            {
                let pending = self
                    .stats
                    .pending_events
                    .load(std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(
                    pending,
                    "stopping with usage still in the spool; it is replayed at the next start"
                );
                return;
            }
            self.files.committed(&batch);
            if batch.events.len() < self.batch_size {
                caught_up_at = Some(Instant::now());
            }
            at = batch.next;
        }
    }

    /// Commits a batch, retrying with backoff. Returns false only when the store has
    /// kept failing for [`SHUTDOWN_DRAIN`] after a shutdown was asked for.
    async fn commit(
        &self,
        events: &[UsageEvent],
        shutdown: &watch::Receiver<bool>,
        deadline: &mut Option<Instant>,
        last_warning: &mut Instant,
    ) -> bool {
        let debits: Vec<(String, NanoUsd)> = events
            .iter()
            .map(|e| (e.account_id.clone(), e.cost))
            .collect();
        let mut backoff = Duration::from_millis(50);
        loop {
            match self
                .credit
                .commit_usage(&debits, self.store.record_usage(events))
                .await
            {
                Ok(recorded) => {
                    if let Some(book) = self.credit.shared() {
                        book.committed(events, &recorded).await;
                    }
                    tracing::debug!(
                        events = events.len(),
                        inserted = recorded.inserted,
                        "usage batch written"
                    );
                    return true;
                }
                Err(e) => {
                    if last_warning.elapsed() > Duration::from_secs(10) {
                        *last_warning = Instant::now();
                        let pending = self
                            .stats
                            .pending_events
                            .load(std::sync::atomic::Ordering::Relaxed);
                        let bytes = self.stats.bytes.load(std::sync::atomic::Ordering::Relaxed);
                        tracing::warn!(error = %e, pending, spool_bytes = bytes, "usage not written to the store; it waits in the spool");
                    }
                    if deadline.is_none() && *shutdown.borrow() {
                        *deadline = Some(Instant::now() + SHUTDOWN_DRAIN);
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return false;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}
