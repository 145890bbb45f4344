//! State shared by a fleet of proxy nodes, in Redis (standalone or Cluster).
//!
//! * [`changes`]: key, account and balance changes broadcast over pub/sub, so every
//!   node drops what it cached within milliseconds, not at its cache's TTL.
//! * [`book`]: rate limits, concurrency caps and credit holds counted across the
//!   fleet by Lua scripts, one round trip to admit a request and one to settle it.
//!
//! Redis is a cache of hot state, never the record: Postgres keeps the ledger and the
//! usage. When Redis does not answer, [`RedisOutage`] decides: each node counts on its
//! own (`local`, with a warning and `tokenroute_redis_up 0`), or requests are refused
//! (`refuse`). A node probes again at most once a second, so an outage costs requests
//! no waiting beyond the first timeout.

pub mod book;
pub mod changes;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{RedisError, RedisResult};
use tokenroute_domain::clock::now_ms;
use tokenroute_domain::config::{RedisConfig, RedisOutage};

/// How often a node that found Redis down tries it again.
const PROBE_EVERY_MS: u64 = 1_000;

/// Why a shared-state call did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("Redis is unreachable (next try within a second)")]
    Down,
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis: {0}")]
    Redis(#[from] RedisError),
    #[error("Redis answered something unexpected: {0}")]
    Unexpected(String),
}

/// One connection to Redis, multiplexed: a server's, or a Cluster's (which routes
/// each call to its slot's node).
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// The fleet's shared state: a connection, its health, the metrics that report it.
pub struct Shared {
    config: RedisConfig,
    client: Client,
    conn: ArcSwapOption<Conn>,
    connecting: tokio::sync::Mutex<()>,
    up: AtomicBool,
    /// When the next probe of a down Redis is due (ms since the epoch).
    next_probe_ms: AtomicU64,
    metrics: Metrics,
}

enum Client {
    Single(redis::Client),
    Cluster(Box<redis::cluster::ClusterClient>),
}

/// `tokenroute_redis_up`, `tokenroute_redis_errors_total`, and the requests served by
/// per-node counting while Redis was away.
#[derive(Clone)]
pub struct Metrics {
    pub up: prometheus::IntGauge,
    pub errors: prometheus::IntCounter,
    pub local_fallbacks: prometheus::IntCounter,
    pub refused: prometheus::IntCounter,
    pub invalidations: prometheus::IntCounterVec,
}

impl Metrics {
    pub fn new(registry: &prometheus::Registry) -> prometheus::Result<Metrics> {
        let up = prometheus::IntGauge::new(
            "tokenroute_redis_up",
            "1 while the shared state in Redis answers, 0 while nodes count on their own",
        )?;
        let errors = prometheus::IntCounter::new(
            "tokenroute_redis_errors_total",
            "Redis calls that failed or timed out",
        )?;
        let local_fallbacks = prometheus::IntCounter::new(
            "tokenroute_redis_local_fallbacks_total",
            "Requests admitted by this node's own limits and credit because Redis was away",
        )?;
        let refused = prometheus::IntCounter::new(
            "tokenroute_redis_refused_total",
            "Requests refused because Redis was away and redis.on-outage = \"refuse\"",
        )?;
        let invalidations = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "tokenroute_invalidations_total",
                "Changes heard from other processes, by kind (key, account, balance, resync)",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(up.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(local_fallbacks.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(invalidations.clone()))?;
        up.set(1);
        Ok(Metrics {
            up,
            errors,
            local_fallbacks,
            refused,
            invalidations,
        })
    }
}

/// The fleet's shared state as `config` asks (`None` without `[redis]`), and `store`
/// announcing its committed changes there.
pub fn attach(
    config: &tokenroute_domain::config::Config,
    store: tokenroute_store::Store,
    registry: &prometheus::Registry,
) -> Result<(tokenroute_store::Store, Option<Arc<Shared>>), SharedError> {
    let Some(redis) = &config.redis else {
        return Ok((store, None));
    };
    let metrics = Metrics::new(registry).map_err(|e| SharedError::Unexpected(e.to_string()))?;
    let shared = Shared::new(redis.clone(), metrics)?;
    let store = store.with_changes(changes::Publisher::new(shared.clone()));
    Ok((store, Some(shared)))
}

impl Shared {
    /// Prepares the connection; nothing is dialled until the first call, so a node
    /// starts (and serves, by its outage policy) while Redis is down.
    pub fn new(config: RedisConfig, metrics: Metrics) -> Result<Arc<Shared>, SharedError> {
        let urls: Vec<&str> = config.nodes.iter().map(|n| n.expose().as_str()).collect();
        let client = if config.cluster {
            Client::Cluster(Box::new(
                redis::cluster::ClusterClient::builder(urls)
                    .connection_timeout(config.timeout)
                    .response_timeout(config.timeout)
                    .retries(1)
                    .build()?,
            ))
        } else {
            Client::Single(redis::Client::open(urls[0])?)
        };
        Ok(Arc::new(Shared {
            config,
            client,
            conn: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(()),
            up: AtomicBool::new(true),
            next_probe_ms: AtomicU64::new(0),
            metrics,
        }))
    }

    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The channel changes travel on.
    pub fn channel(&self) -> String {
        format!("{}:changes", self.config.key_prefix)
    }

    /// A client for a plain (non-cluster) connection to one node, for pub/sub: Redis
    /// Cluster forwards every PUBLISH to every node, so any one node hears all. `turn`
    /// picks the node (round the list, so that a dead node is not tried forever).
    fn node(&self, turn: usize) -> RedisResult<redis::Client> {
        let nodes = &self.config.nodes;
        redis::Client::open(nodes[turn % nodes.len()].expose().as_str())
    }

    async fn connection(&self) -> Result<Conn, SharedError> {
        if let Some(conn) = self.conn.load_full() {
            return Ok((*conn).clone());
        }
        let _one = self.connecting.lock().await;
        if let Some(conn) = self.conn.load_full() {
            return Ok((*conn).clone());
        }
        let conn = match &self.client {
            Client::Single(client) => Conn::Single(
                client.get_connection_manager_lazy(
                    ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(self.config.timeout))
                        .set_response_timeout(Some(self.config.timeout))
                        .set_number_of_retries(1)
                        .set_max_delay(Duration::from_millis(500)),
                )?,
            ),
            Client::Cluster(client) => Conn::Cluster(
                tokio::time::timeout(self.config.timeout, client.get_async_connection())
                    .await
                    .map_err(|_| SharedError::Timeout(self.config.timeout))??,
            ),
        };
        self.conn.store(Some(Arc::new(conn.clone())));
        Ok(conn)
    }

    /// Whether a call should go to Redis now: it is up, or a probe is due (one caller
    /// wins the probe; the others fall back at once instead of waiting on a timeout).
    fn usable(&self) -> bool {
        if self.up.load(Ordering::Relaxed) {
            return true;
        }
        let now = u64::try_from(now_ms()).unwrap_or(0);
        let due = self.next_probe_ms.load(Ordering::Relaxed);
        now >= due
            && self
                .next_probe_ms
                .compare_exchange(
                    due,
                    now + PROBE_EVERY_MS,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Runs `call` on the connection within the timeout, keeping the health state. A
    /// connection Redis dropped (it restarted while this node was idle) is replaced
    /// and the call made once more on the new one.
    async fn run<T, F, Fut>(&self, call: F) -> Result<T, SharedError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if !self.usable() {
            return Err(SharedError::Down);
        }
        let mut retried = false;
        let outcome = loop {
            let conn = match self.connection().await {
                Ok(conn) => conn,
                Err(e) => break Err(e),
            };
            match tokio::time::timeout(self.config.timeout, call(conn)).await {
                Ok(Ok(value)) => break Ok(value),
                Ok(Err(e)) => {
                    let dropped =
                        e.is_connection_dropped() || e.is_io_error() || e.is_connection_refusal();
                    if dropped {
                        // The next call dials afresh rather than wait for this one's
                        // reconnection schedule.
                        self.conn.store(None);
                        if !retried {
                            retried = true;
                            continue;
                        }
                    }
                    break Err(SharedError::Redis(e));
                }
                Err(_) => break Err(SharedError::Timeout(self.config.timeout)),
            }
        };
        match &outcome {
            Ok(_) => self.recovered(),
            // A script error is a bug or a version mismatch, not an outage — but it is
            // handled the same way: this request falls back.
            Err(e) => self.failed(e),
        }
        outcome
    }

    fn failed(&self, error: &SharedError) {
        self.metrics.errors.inc();
        let now = u64::try_from(now_ms()).unwrap_or(0);
        self.next_probe_ms
            .store(now + PROBE_EVERY_MS, Ordering::Relaxed);
        if self.up.swap(false, Ordering::AcqRel) {
            self.metrics.up.set(0);
            match self.config.on_outage {
                RedisOutage::Local => tracing::warn!(
                    error = %error,
                    "Redis unreachable: rate limits, concurrency caps and credit holds are \
                     now counted by each node on its own until it returns"
                ),
                RedisOutage::Refuse => tracing::error!(
                    error = %error,
                    "Redis unreachable: requests are refused until it returns \
                     (redis.on-outage = \"refuse\")"
                ),
            }
        }
    }

    fn recovered(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            self.metrics.up.set(1);
            tracing::info!("Redis answers again: limits and credit are shared again");
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
}

impl Conn {
    async fn invoke(
        &mut self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> RedisResult<redis::Value> {
        match self {
            Conn::Single(c) => invocation.invoke_async(c).await,
            Conn::Cluster(c) => invocation.invoke_async(c).await,
        }
    }

    async fn query(&mut self, cmd: &redis::Cmd) -> RedisResult<redis::Value> {
        match self {
            Conn::Single(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => cmd.query_async(c).await,
        }
    }
}
