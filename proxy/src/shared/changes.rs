//! Changes broadcast between processes over Redis pub/sub: whoever writes a key,
//! account or balance change to the store (control plane, CLI, another node)
//! publishes it; every proxy node listens and drops what it cached.
//!
//! Pub/sub delivers at most once, and not to a node that was disconnected. So a node
//! trusts its caches for their full TTL only while it is subscribed; on every
//! (re)subscription it forgets every cached key (whatever it missed is read again),
//! and while it is not subscribed the key cache falls back to a 1-second TTL.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokenroute_store::{Change, ChangeListener};

use super::Shared;

/// Publishes the store's committed changes.
pub struct Publisher {
    shared: Arc<Shared>,
}

impl Publisher {
    pub fn new(shared: Arc<Shared>) -> Arc<Publisher> {
        Arc::new(Publisher { shared })
    }
}

#[async_trait::async_trait]
impl ChangeListener for Publisher {
    async fn changed(&self, change: Change) {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(self.shared.channel()).arg(change.encode());
        let published = self
            .shared
            .run(|mut conn| {
                let cmd = &cmd;
                async move { conn.query(cmd).await }
            })
            .await;
        if let Err(e) = published {
            // Nodes still find the change at their key cache's TTL (1 s by default
            // without a subscription) and at the next balance refresh.
            tracing::warn!(error = %e, change = %change.encode(), "could not broadcast a change");
        }
    }
}

/// What a listening node does with what it hears.
pub trait OnChange: Send + Sync + 'static {
    fn changed(&self, change: Change);
    /// The subscription was (re)established: anything may have been missed.
    fn resync(&self);
}

/// Whether this node hears changes now.
#[derive(Clone, Default)]
pub struct Listening(Arc<AtomicBool>);

impl Listening {
    pub fn is_listening(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Set by whatever brings the news (this module's subscription, or the store's
    /// change log: [`crate::change_log`]).
    pub(crate) fn set(&self, on: bool) {
        self.0.store(on, Ordering::Release);
    }
}

/// Listens for changes until `shutdown`, reconnecting every second while Redis is away.
pub async fn listen(
    shared: Arc<Shared>,
    on_change: Arc<dyn OnChange>,
    listening: Listening,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let channel = shared.channel();
    let mut turn = 0;
    loop {
        let subscribed = async {
            let client = shared.node(turn)?;
            let mut pubsub = tokio::time::timeout(shared.config.timeout, client.get_async_pubsub())
                .await
                .map_err(|_| {
                    redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
                })??;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::select! {
            s = subscribed => s,
            _ = shutdown.changed() => return,
        };
        match pubsub {
            Ok(pubsub) => {
                listening.0.store(true, Ordering::Release);
                on_change.resync();
                shared
                    .metrics
                    .invalidations
                    .with_label_values(&["resync"])
                    .inc();
                tracing::info!(channel = %channel, "listening for key and account changes");
                let mut messages = pubsub.into_on_message();
                loop {
                    let message = tokio::select! {
                        m = messages.next() => m,
                        _ = shutdown.changed() => return,
                    };
                    let Some(message) = message else { break };
                    let Ok(text) = message.get_payload::<String>() else {
                        continue;
                    };
                    if let Some(change) = Change::decode(&text) {
                        let kind = match change {
                            Change::Key { .. } => "key",
                            Change::Account { .. } => "account",
                            Change::Balance { .. } => "balance",
                        };
                        shared
                            .metrics
                            .invalidations
                            .with_label_values(&[kind])
                            .inc();
                        on_change.changed(change);
                    }
                }
                listening.0.store(false, Ordering::Release);
                turn += 1;
                tracing::warn!(
                    "lost the change subscription; cached keys live 1 s until it is back"
                );
            }
            Err(e) => {
                listening.0.store(false, Ordering::Release);
                tracing::debug!(error = %e, "cannot subscribe to changes yet");
                turn += 1;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
