//! Request debugging ([P6]): for keys whose owner turned it on, the request body and
//! the answer as the client received it are captured (up to 256 KiB each) and written
//! to the store off the request path. Best effort by design — debug logs are
//! diagnostics, not bills: when the writer falls behind, captures are dropped (with a
//! warning) rather than slowing requests. Logs older than 7 days are purged hourly;
//! revoking a key deletes its logs (the store does that in the same transaction).

use std::time::Duration;

use bytes::Bytes;
use tokenroute_store::{DebugLog, Store};
use tokio::sync::{mpsc, watch};

/// Largest body kept per side of an exchange.
pub const CAPTURE_LIMIT: usize = 256 * 1024;
const QUEUE: usize = 1024;
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// One exchange being captured.
#[derive(Debug)]
pub struct Capture {
    request: Bytes,
    response: Vec<u8>,
    truncated: bool,
}

impl Capture {
    pub fn new(request: Bytes) -> Capture {
        let truncated = request.len() > CAPTURE_LIMIT;
        Capture {
            request: request.slice(..request.len().min(CAPTURE_LIMIT)),
            response: Vec::new(),
            truncated,
        }
    }

    /// Adds bytes the client received.
    pub fn answer(&mut self, bytes: &[u8]) {
        let room = CAPTURE_LIMIT.saturating_sub(self.response.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        self.response
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    pub fn into_log(
        self,
        request_id: String,
        account_id: String,
        key_id: String,
        created_at_ms: i64,
        status: u16,
        model: String,
    ) -> DebugLog {
        DebugLog {
            request_id,
            account_id,
            key_id,
            created_at_ms,
            status,
            model,
            request_body: String::from_utf8_lossy(&self.request).into_owned(),
            response_body: String::from_utf8_lossy(&self.response).into_owned(),
            truncated: self.truncated,
        }
    }
}

/// Hands captures to the writer without waiting.
#[derive(Clone)]
pub struct DebugSink {
    tx: mpsc::Sender<DebugLog>,
}

impl DebugSink {
    pub fn submit(&self, log: DebugLog) {
        if self.tx.try_send(log).is_err() {
            tracing::warn!("request-debugging capture dropped: the debug log writer is behind");
        }
    }
}

/// The sink and the writer task to spawn.
pub fn start(
    store: Store,
    shutdown: watch::Receiver<bool>,
) -> (DebugSink, impl std::future::Future<Output = ()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (DebugSink { tx }, run(store, rx, shutdown))
}

async fn run(store: Store, mut rx: mpsc::Receiver<DebugLog>, mut shutdown: watch::Receiver<bool>) {
    let mut purge = tokio::time::interval(PURGE_EVERY);
    loop {
        tokio::select! {
            log = rx.recv() => match log {
                Some(log) => write(&store, &log).await,
                None => return,
            },
            _ = purge.tick() => {
                match store.purge_debug_logs(tokenroute_domain::clock::now_ms()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "purged debug logs older than 7 days"),
                    Err(e) => tracing::warn!(error = %e, "purging debug logs failed"),
                }
            }
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => {
                while let Ok(log) = rx.try_recv() {
                    write(&store, &log).await;
                }
                return;
            }
        }
    }
}

async fn write(store: &Store, log: &DebugLog) {
    if let Err(e) = store.insert_debug_log(log).await {
        tracing::warn!(request_id = %log.request_id, error = %e, "writing a debug log failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_are_capped_and_marked() {
        let mut c = Capture::new(Bytes::from(vec![b'a'; CAPTURE_LIMIT + 10]));
        c.answer(&vec![b'b'; CAPTURE_LIMIT - 1]);
        c.answer(b"cd");
        let log = c.into_log("r".into(), "a".into(), "k".into(), 0, 200, "m".into());
        assert_eq!(log.request_body.len(), CAPTURE_LIMIT);
        assert_eq!(log.response_body.len(), CAPTURE_LIMIT);
        assert!(log.response_body.ends_with('c'));
        assert!(log.truncated);
        let small = Capture::new(Bytes::from_static(b"{}")).into_log(
            "r".into(),
            "a".into(),
            "k".into(),
            0,
            200,
            "m".into(),
        );
        assert!(!small.truncated);
    }
}
