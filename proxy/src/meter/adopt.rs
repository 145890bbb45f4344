//! Draining spool slots whose process has stopped (after a graceful upgrade, the old
//! process's slot; after a crash beside a running process, the crashed one's): every
//! few seconds, each other slot that holds usage and whose lock is free is taken,
//! written to the store (idempotently: events already there charge nothing) and
//! emptied.

use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use tokenroute_store::Store;
use tokio::sync::watch;

use crate::shared::book::SharedBook;

use super::spool::{slot_dir, Orphan, SLOTS};

const EVERY: Duration = Duration::from_secs(5);

pub async fn run(
    base: PathBuf,
    own: PathBuf,
    store: Store,
    batch_size: usize,
    shared: Option<Arc<SharedBook>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        for n in 0..SLOTS {
            let dir = slot_dir(&base, n);
            if dir == own {
                continue;
            }
            match Orphan::take(&dir) {
                Ok(Some(orphan)) => drain(&store, orphan, batch_size, shared.as_deref()).await,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot look at a stopped process's usage spool")
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn drain(store: &Store, orphan: Orphan, batch_size: usize, shared: Option<&SharedBook>) {
    for batch in orphan.events.chunks(batch_size.max(1)) {
        match store.record_usage(batch).await {
            // The stopped process's settled holds in the fleet's book go with it.
            Ok(recorded) => {
                if let Some(book) = shared {
                    book.committed(batch, &recorded).await;
                }
            }
            Err(e) => {
                // The lock is released with the orphan; the next round tries again.
                tracing::warn!(dir = %orphan.dir().display(), error = %e, "cannot write a stopped process's usage yet");
                return;
            }
        }
    }
    let (dir, events) = (orphan.dir().display().to_string(), orphan.events.len());
    match orphan.finish() {
        Ok(()) => tracing::info!(
            dir,
            events,
            "wrote the usage a stopped process left in its spool"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot delete a drained spool segment"),
    }
}
