//! What the data plane shares across requests, and the background tasks it owns.

use std::sync::Arc;

use tokenroute_domain::config::Config;
use tokenroute_store::Store;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::KeyCache;
use crate::credit::{run_refresher, CreditBook};
use crate::meter::writer::{usage_channel, UsageSink};
use crate::upstream::UpstreamClient;

pub struct ProxyState {
    pub config: Arc<Config>,
    pub keys: KeyCache,
    pub credit: Arc<CreditBook>,
    pub usage: UsageSink,
    pub upstream: UpstreamClient,
}

/// The data plane's background tasks (usage writer, balance refresher), owned so
/// that shutdown can drain them.
pub struct BackgroundTasks {
    shutdown: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl ProxyState {
    /// Builds the shared state and starts its background tasks on `runtime` — a runtime
    /// that outlives the proxy's own, so pools and tasks survive its shutdown.
    pub fn start(
        config: Arc<Config>,
        store: Store,
        runtime: &Handle,
    ) -> (Arc<ProxyState>, BackgroundTasks) {
        let (credit, refresh_rx) = CreditBook::new(store.clone(), config.proxy.balance_refresh);
        let (usage, writer) = usage_channel(
            config.usage.channel_capacity,
            store.clone(),
            credit.clone(),
            config.usage.batch_size,
            config.usage.flush_interval,
        );
        let (shutdown, shutdown_rx) = watch::channel(false);
        let tasks = vec![
            (
                "usage writer",
                runtime.spawn(writer.run(shutdown_rx.clone())),
            ),
            (
                "balance refresher",
                runtime.spawn(run_refresher(credit.clone(), refresh_rx, shutdown_rx)),
            ),
        ];
        let state = ProxyState {
            keys: KeyCache::new(store, config.proxy.key_cache_ttl),
            upstream: UpstreamClient::new(
                config.proxy.upstream_connect_timeout,
                config.proxy.upstream_read_timeout,
            ),
            credit,
            usage,
            config,
        };
        (Arc::new(state), BackgroundTasks { shutdown, tasks })
    }
}

impl BackgroundTasks {
    /// Stops the tasks; the usage writer first writes everything still queued.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for (name, task) in self.tasks {
            if let Err(e) = task.await {
                tracing::error!(task = name, error = %e, "background task failed");
            }
        }
    }
}
