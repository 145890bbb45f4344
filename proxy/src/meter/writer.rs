//! The usage writer: metered events leave the request path through a bounded
//! channel and reach the store in batches, each batch one transaction.
//!
//! Writes are idempotent by request id, so a batch retried after an error charges
//! nothing twice; a batch that fails is retried with backoff and never dropped.
//! (A durable on-disk spool in front of the store is the next step; until then a
//! crash loses what is still queued in memory.)

use std::sync::Arc;
use std::time::Duration;

use tokenroute_domain::{NanoUsd, UsageEvent};
use tokenroute_store::Store;
use tokio::sync::{mpsc, watch};

use crate::credit::CreditBook;

/// The sending side, held by the request path.
#[derive(Clone)]
pub struct UsageSink {
    tx: mpsc::Sender<UsageEvent>,
}

impl UsageSink {
    /// Queues an event. Waits only when the queue is full (the store is far behind),
    /// which slows requests down rather than losing what they cost.
    pub async fn emit(&self, event: UsageEvent) {
        if let Err(mpsc::error::SendError(event)) = self.tx.send(event).await {
            tracing::error!(request_id = %event.request_id, "usage writer is gone; event not recorded");
        }
    }
}

pub struct UsageWriter {
    rx: mpsc::Receiver<UsageEvent>,
    store: Store,
    credit: Arc<CreditBook>,
    batch_size: usize,
    flush_interval: Duration,
}

pub fn usage_channel(
    capacity: usize,
    store: Store,
    credit: Arc<CreditBook>,
    batch_size: usize,
    flush_interval: Duration,
) -> (UsageSink, UsageWriter) {
    let (tx, rx) = mpsc::channel(capacity);
    (
        UsageSink { tx },
        UsageWriter {
            rx,
            store,
            credit,
            batch_size,
            flush_interval,
        },
    )
}

impl UsageWriter {
    /// Writes batches until `shutdown` fires, then drains what is queued and returns.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut batch = Vec::with_capacity(self.batch_size);
        loop {
            tokio::select! {
                n = self.rx.recv_many(&mut batch, self.batch_size) => {
                    if n == 0 {
                        break; // every sender is gone
                    }
                }
                _ = shutdown.changed() => break,
            }
            // Give a burst a moment to fill the batch before paying for a transaction.
            if batch.len() < self.batch_size {
                let deadline = tokio::time::sleep(self.flush_interval);
                tokio::pin!(deadline);
                while batch.len() < self.batch_size {
                    let room = self.batch_size - batch.len();
                    tokio::select! {
                        n = self.rx.recv_many(&mut batch, room) => if n == 0 { break },
                        _ = &mut deadline => break,
                    }
                }
            }
            self.write(&mut batch).await;
        }
        // Shutdown: everything still queued is written before returning.
        while let Ok(event) = self.rx.try_recv() {
            batch.push(event);
            if batch.len() >= self.batch_size {
                self.write(&mut batch).await;
            }
        }
        self.write(&mut batch).await;
    }

    async fn write(&self, batch: &mut Vec<UsageEvent>) {
        if batch.is_empty() {
            return;
        }
        let debits: Vec<(String, NanoUsd)> = batch
            .iter()
            .map(|e| (e.account_id.clone(), e.cost))
            .collect();
        let mut backoff = Duration::from_millis(50);
        loop {
            match self
                .credit
                .commit_usage(&debits, self.store.record_usage(batch))
                .await
            {
                Ok(inserted) => {
                    tracing::debug!(events = batch.len(), inserted, "usage batch written");
                    batch.clear();
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, events = batch.len(), retry_in = ?backoff, "usage batch not written; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
