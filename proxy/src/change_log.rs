//! Following the store's change log: how a node without Redis hears of key and
//! account changes made by other processes (the dashboard, the admin console, the CLI,
//! another node on the same store) and drops what it cached.
//!
//! Every such change is written to the log in the transaction that makes it
//! (`tokenroute_store::Store::changes_after`), in commit order, so reading the rows
//! after the last one seen never misses one. A revoked key therefore stops working
//! within about one poll (`proxy.change-poll-ms`), however long keys are cached.
//! While the log cannot be read, [`Listening`] is off and the key cache trusts its
//! entries for 1 s at most; when it can again, the node forgets every cached key (it
//! may have missed anything) and follows from the log's head.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokenroute_domain::clock::now_ms;
use tokenroute_store::Store;
use tokio::sync::watch;

use crate::shared::changes::{Listening, OnChange};

/// Rows read per poll; a longer backlog is read in further polls without a pause.
const BATCH: i64 = 1000;
/// Rows older than this are deleted (by any node, now and then): a follower only
/// needs the last moments.
const KEEP: Duration = Duration::from_secs(3600);
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Follows the log every `every` until `shutdown`.
pub async fn follow(
    store: Store,
    on_change: Arc<dyn OnChange>,
    listening: Listening,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last: Option<i64> = None;
    let mut pruned = Instant::now();
    loop {
        let more = match last {
            None => match store.change_log_head().await {
                Ok(head) => {
                    last = Some(head);
                    listening.set(true);
                    on_change.resync();
                    tracing::debug!(head, "following the store's change log");
                    false
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read the change log yet");
                    false
                }
            },
            Some(seq) => match store.changes_after(seq, BATCH).await {
                Ok(changes) => {
                    let full = changes.len() as i64 == BATCH;
                    for (seq, change) in changes {
                        on_change.changed(change);
                        last = Some(seq);
                    }
                    full
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the store's change log; cached keys live 1 s until it is back");
                    listening.set(false);
                    last = None;
                    false
                }
            },
        };
        if pruned.elapsed() >= PRUNE_EVERY {
            pruned = Instant::now();
            let before = now_ms() - i64::try_from(KEEP.as_millis()).unwrap_or(i64::MAX);
            if let Err(e) = store.prune_change_log(before).await {
                tracing::debug!(error = %e, "could not prune the change log");
            }
        }
        if more {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}
