//! What the data plane shares across requests, and the background tasks it owns.

use std::sync::Arc;

use tokenroute_domain::config::Config;
use tokenroute_store::Store;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::auth::KeyCache;
use crate::credit::{run_refresher, CreditBook};
use crate::limits::RateLimiter;
use crate::meter::spool::{slot_dir, Spool, SpoolConfig, SpoolError, SLOTS};
use crate::meter::writer::{UsageSink, UsageWriter};
use crate::meter::writer_runtime::{WriterRuntime, WriterStartError};
use crate::shared::book::SharedBook;
use crate::shared::changes::{Listening, OnChange};
use crate::shared::Shared;
use crate::upstream::UpstreamClient;

pub struct ProxyState {
    /// The config the process started with: listeners, store, limits, usage. The
    /// routing part (providers, models, routes, rules) lives in [`ProxyState::router`],
    /// which a reload replaces.
    pub config: Arc<Config>,
    pub router: Arc<crate::route::Router>,
    pub keys: Arc<KeyCache>,
    pub credit: Arc<CreditBook>,
    pub usage: UsageSink,
    pub upstream: UpstreamClient,
    pub limiter: RateLimiter,
    pub debug: crate::debug_log::DebugSink,
    pub access_log: tokenroute_store::access_log::AccessLog,
    pub metrics: crate::metrics::ProxyMetrics,
    /// Per-client limits (headers, requests in flight, failed authentications).
    pub clients: Arc<crate::guard::ClientGuard>,
    /// The API's TLS certificate, when it serves TLS.
    pub tls: Option<Arc<crate::tls::ReloadingCert>>,
    /// The fleet's book in Redis, when nodes share state (`[redis]`).
    pub shared: Option<Arc<SharedBook>>,
}

/// Why the data plane's state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("cannot register the data plane's metrics: {0}")]
    Metrics(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Writer(#[from] WriterStartError),
}

/// The data plane's background tasks (usage writer, balance refresher), owned so
/// that shutdown can drain them. (The spooler thread ends by itself when the last
/// request-side sender is dropped.)
pub struct BackgroundTasks {
    shutdown: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    /// The usage writer's thread; dropped once its task has ended.
    writer_runtime: WriterRuntime,
}

impl ProxyState {
    /// Builds the shared state and starts its background tasks on `runtime` — a runtime
    /// that outlives the proxy's own, so pools and tasks survive its shutdown. Usage
    /// left in the spool by an earlier run is counted against its accounts and
    /// replayed into the store.
    pub fn start(
        config: Arc<Config>,
        store: Store,
        access_log: tokenroute_store::access_log::AccessLog,
        registry: &prometheus::Registry,
        runtime: &Handle,
        shared: Option<Arc<Shared>>,
    ) -> Result<(Arc<ProxyState>, BackgroundTasks), StartError> {
        let book = shared.map(SharedBook::new);
        let (credit, refresh_rx) =
            CreditBook::new(store.clone(), config.proxy.balance_refresh, book.clone());
        let tls = config
            .proxy
            .tls
            .as_ref()
            .map(|files| crate::tls::ReloadingCert::open(&files.cert, &files.key))
            .transpose()
            .map_err(StartError::Tls)?;
        let (spool, leftover) = open_spool(&config)?;
        let own_slot = spool.dir().to_path_buf();
        if !leftover.is_empty() {
            tracing::info!(
                events = leftover.len(),
                spool = %spool.dir().display(),
                "replaying usage an earlier run left in the spool"
            );
        }
        for event in &leftover {
            credit.adopt(&event.account_id, event.cost);
        }
        let stats = spool.stats();
        let (tx, rx) = mpsc::channel(config.usage.channel_capacity);
        let (_spooler, durable, files) = spool.start(rx, config.usage.batch_size)?;
        let writer_runtime = WriterRuntime::start(config.usage.writer_nice)?;
        let writer_store = writer_runtime.open_store(&config.store.url)?;
        let writer = UsageWriter {
            files,
            durable,
            store: writer_store,
            credit: credit.clone(),
            stats: stats.clone(),
            batch_size: config.usage.batch_size,
            commit_interval: config.usage.commit_interval,
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let adopter = crate::meter::adopt::run(
            config.usage.spool_dir.clone(),
            own_slot,
            store.clone(),
            config.usage.batch_size,
            book.clone(),
            shutdown_rx.clone(),
        );
        let (debug, debug_writer) = crate::debug_log::start(store.clone(), shutdown_rx.clone());
        let tasks = vec![
            ("debug log writer", runtime.spawn(debug_writer)),
            ("stopped processes' spools", runtime.spawn(adopter)),
            (
                "usage writer",
                writer_runtime.spawn({
                    let shutdown = shutdown_rx.clone();
                    async move {
                        let store = writer.store.clone();
                        writer.run(shutdown).await;
                        store.close().await;
                    }
                }),
            ),
            (
                "balance refresher",
                runtime.spawn(run_refresher(
                    credit.clone(),
                    refresh_rx,
                    shutdown_rx.clone(),
                )),
            ),
        ];
        let metrics = crate::metrics::ProxyMetrics::new(registry, stats.clone())
            .map_err(|e| StartError::Metrics(e.to_string()))?;
        let listening = Listening::default();
        // Changes are heard over Redis in a fleet, else from the store's change log.
        let keys = KeyCache::new(store, config.proxy.key_cache_ttl)
            .with_metrics(metrics.key_cache.clone())
            .with_listening(listening.clone());
        let state = ProxyState {
            router: Arc::new(crate::route::Router::new(config.clone())),
            clients: crate::guard::ClientGuard::new(crate::guard::Limits {
                max_header_bytes: config.proxy.max_header_bytes,
                max_headers: config.proxy.max_headers,
                max_in_flight_per_client: config.proxy.max_concurrent_per_client,
                failed_auth_per_minute: config.proxy.failed_auth_per_client_per_minute,
            }),
            keys: Arc::new(keys),
            metrics,
            upstream: UpstreamClient::new(
                config.proxy.upstream_connect_timeout,
                config.proxy.upstream_read_timeout,
                config.proxy.upstream_ca_file.as_deref(),
            ),
            tls: tls.clone(),
            credit,
            usage: UsageSink::new(tx, stats),
            limiter: RateLimiter::default(),
            debug,
            access_log,
            config,
            shared: book,
        };
        state.metrics.init_series(&state.config);
        let state = Arc::new(state);
        let mut tasks = tasks;
        if let Some(cert) = &state.tls {
            tasks.push((
                "TLS certificate reloader",
                runtime.spawn(crate::tls::watch(cert.clone(), shutdown_rx.clone())),
            ));
        }
        let forget = Arc::new(Forget {
            keys: state.keys.clone(),
            credit: state.credit.clone(),
        });
        if let Some(book) = &state.shared {
            tasks.push((
                "change listener",
                runtime.spawn(crate::shared::changes::listen(
                    book.shared().clone(),
                    forget,
                    listening,
                    shutdown_rx.clone(),
                )),
            ));
            tasks.push((
                "shared hold renewal",
                runtime.spawn(book.clone().renew_leases(shutdown_rx.clone())),
            ));
        } else {
            tasks.push((
                "change log follower",
                runtime.spawn(crate::change_log::follow(
                    state.keys.store().clone(),
                    forget,
                    listening,
                    state.config.proxy.change_poll,
                    shutdown_rx.clone(),
                )),
            ));
        }
        tasks.push((
            "health checks",
            runtime.spawn(crate::route::checks::run(state.router.clone(), shutdown_rx)),
        ));
        Ok((
            state,
            BackgroundTasks {
                shutdown,
                tasks,
                writer_runtime,
            },
        ))
    }
}

/// What a node does with changes heard from other processes.
struct Forget {
    keys: Arc<KeyCache>,
    credit: Arc<CreditBook>,
}

impl OnChange for Forget {
    fn changed(&self, change: tokenroute_store::Change) {
        use tokenroute_store::Change;
        match change {
            Change::Key { id } => self.keys.forget(|k| k.id == id),
            Change::Account { id } => {
                self.keys.forget(|k| k.account_id == id);
                self.credit.balance_changed(&id);
            }
            Change::Balance { account_id } => self.credit.balance_changed(&account_id),
        }
    }

    fn resync(&self) {
        self.keys.forget(|_| true);
    }
}

/// The first free slot of the configured spool folder (see [`SLOTS`]): the folder
/// itself unless another process (the old one, during a graceful upgrade) holds it.
fn open_spool(config: &Config) -> Result<(Spool, Vec<tokenroute_domain::UsageEvent>), SpoolError> {
    let mut n = 0;
    loop {
        let opened = Spool::open(SpoolConfig {
            dir: slot_dir(&config.usage.spool_dir, n),
            max_bytes: config.usage.spool_max_bytes,
            segment_bytes: config.usage.spool_segment_bytes,
            fsync: config.usage.fsync,
        });
        match opened {
            Err(SpoolError::Locked { .. }) if n + 1 < SLOTS => n += 1,
            other => return other,
        }
    }
}

impl ProxyState {
    /// Routes by `config` from now on — providers, models, routes, aliases, rules —
    /// while requests in flight finish on the config they started with. Settings that
    /// only a restart applies (listeners, store, usage) are named in a warning.
    pub fn reload(&self, config: Config) {
        let old = self.router.live().config.clone();
        let started = &self.config;
        let restart_only = [
            ("proxy", started.proxy != config.proxy),
            ("store", started.store.url != config.store.url),
            ("usage", started.usage != config.usage),
            (
                "control-plane",
                started.control_plane.listen != config.control_plane.listen,
            ),
            ("metrics", started.metrics.listen != config.metrics.listen),
        ];
        for (section, changed) in restart_only {
            if changed {
                tracing::warn!(
                    section,
                    "config reload: [{section}] changed; it takes effect at the next restart"
                );
            }
        }
        tracing::info!(
            from = %old.routing_version,
            to = %config.routing_version,
            "config reloaded: routing now follows the new file"
        );
        self.metrics.init_series(&config);
        self.router.replace(Arc::new(config));
        self.metrics.config_reloads.with_label_values(&["ok"]).inc();
    }

    /// Prometheus gauges read at scrape time.
    pub fn refresh_metrics(&self) {
        self.metrics.refresh(&self.router.health);
    }
}

impl BackgroundTasks {
    /// Stops the tasks; the usage writer first commits everything already spooled.
    pub async fn shutdown(self) {
        let BackgroundTasks {
            shutdown,
            tasks,
            writer_runtime,
        } = self;
        let _ = shutdown.send(true);
        for (name, task) in tasks {
            if let Err(e) = task.await {
                tracing::error!(task = name, error = %e, "background task failed");
            }
        }
        // The writer's task has ended and closed its connection: its thread can go.
        drop(writer_runtime);
    }
}
