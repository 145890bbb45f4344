//! The data plane's Prometheus metrics. Labels are bounded: routes, configured model
//! and provider ids, status codes and error codes — never keys or accounts. Recorded
//! once per request in the logging phase, from the request's context.

use std::sync::Arc;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
use tokenroute_domain::config::Config;

use crate::ctx::RequestCtx;
use crate::meter::spool::SpoolStats;

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
];

pub struct ProxyMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    first_byte: HistogramVec,
    tokens: IntCounterVec,
    cost: IntCounterVec,
    errors: IntCounterVec,
    pub key_cache: IntCounterVec,
    spool_bytes: IntGauge,
    spool_pending: IntGauge,
    spool_stalled: prometheus::Gauge,
    spool: Arc<SpoolStats>,
    /// Upstream attempts by provider and outcome (ok, connect_error, timeout,
    /// http_429, http_5xx, http_4xx).
    pub attempts: IntCounterVec,
    /// Fallbacks to the next candidate, by the provider that failed.
    pub fallbacks: IntCounterVec,
    /// Fallbacks refused because the retry budget was spent.
    pub retry_budget_exhausted: IntCounter,
    /// Connections refused: their address had `max-connections-per-client` open.
    pub connections_refused: IntCounter,
    /// Each endpoint's circuit: 0 closed, 1 half-open, 2 open.
    circuit: prometheus::IntGaugeVec,
    /// Config reloads by result (ok, refused).
    pub config_reloads: IntCounterVec,
}

fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<HistogramVec> {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )?;
    registry.register(Box::new(h.clone()))?;
    Ok(h)
}

/// A counter without labels.
fn total(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

/// The route of a path, as a label: the API's own routes, else `other`.
pub fn route(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" => "/v1/chat/completions",
        "/v1/messages" => "/v1/messages",
        "/v1/embeddings" => "/v1/embeddings",
        "/v1/models" => "/v1/models",
        "/v1/route/explain" => "/v1/route/explain",
        "/v1/credits" => "/v1/credits",
        "/v1/key" => "/v1/key",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        p if p.starts_with("/v1/generation") => "/v1/generation",
        _ => "other",
    }
}

impl ProxyMetrics {
    pub fn new(registry: &Registry, spool: Arc<SpoolStats>) -> prometheus::Result<ProxyMetrics> {
        Ok(ProxyMetrics {
            requests: counter(
                registry,
                "tokenroute_requests_total",
                "API requests answered, by route, model, provider and status.",
                &["route", "model", "provider", "status"],
            )?,
            duration: histogram(
                registry,
                "tokenroute_request_duration_seconds",
                "Time from receiving a request to the end of its answer.",
                &["route"],
            )?,
            first_byte: histogram(
                registry,
                "tokenroute_time_to_first_byte_seconds",
                "Time from receiving a request to the first byte of its answer (for streams, the first token).",
                &["provider"],
            )?,
            tokens: counter(
                registry,
                "tokenroute_tokens_total",
                "Tokens metered, by model, provider and direction (input, output).",
                &["model", "provider", "direction"],
            )?,
            cost: counter(
                registry,
                "tokenroute_cost_nano_usd_total",
                "Cost charged, in nano-USD, by model and provider.",
                &["model", "provider"],
            )?,
            errors: counter(
                registry,
                "tokenroute_errors_total",
                "Requests TokenRoute answered with an error, by code: refusals (rate_limit_exceeded, insufficient_quota, invalid_api_key, ...) and failures (upstream_error, ...).",
                &["code"],
            )?,
            key_cache: counter(
                registry,
                "tokenroute_key_cache_lookups_total",
                "API key lookups, by result: hit (memory), miss (store), stale (store down, memory used), unknown (the store knows no such key).",
                &["result"],
            )?,
            spool_bytes: gauge(
                registry,
                "tokenroute_usage_spool_bytes",
                "Bytes of metered usage in the local spool, not yet committed to the store.",
            )?,
            spool_pending: gauge(
                registry,
                "tokenroute_usage_spool_pending_events",
                "Usage events spooled and not yet committed to the store.",
            )?,
            spool_stalled: {
                let g = prometheus::Gauge::new(
                    "tokenroute_usage_spool_stalled_seconds",
                    "How long usage has waited in the spool without the store taking any (0: nothing waits).",
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            spool,
            attempts: counter(
                registry,
                "tokenroute_upstream_attempts_total",
                "Requests sent to providers (first tries and fallbacks), by provider and outcome.",
                &["provider", "outcome"],
            )?,
            fallbacks: counter(
                registry,
                "tokenroute_fallbacks_total",
                "Fallbacks to the next candidate after a failure, by the provider that failed.",
                &["provider"],
            )?,
            retry_budget_exhausted: total(
                registry,
                "tokenroute_retry_budget_exhausted_total",
                "Fallbacks not made because the retry budget was spent (an outage of every candidate).",
            )?,
            connections_refused: total(
                registry,
                "tokenroute_connections_refused_total",
                "Connections answered 429 and closed because their client address had proxy.max-connections-per-client open.",
            )?,
            circuit: {
                let g = prometheus::IntGaugeVec::new(
                    Opts::new(
                        "tokenroute_circuit_state",
                        "Each provider endpoint's circuit breaker: 0 closed, 1 half-open, 2 open.",
                    ),
                    &["endpoint"],
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            config_reloads: counter(
                registry,
                "tokenroute_config_reloads_total",
                "Config reloads (SIGHUP or file change), by result: ok, refused (invalid; the old config keeps serving).",
                &["result"],
            )?,
        })
    }

    /// Counts a finished request.
    pub fn observe(&self, config: &Config, path: &str, ctx: &RequestCtx) {
        let route = route(path);
        // Only configured ids become labels: a client's made-up model name does not.
        let model = ctx
            .model
            .as_deref()
            .filter(|m| config.model(m).is_some())
            .unwrap_or(if ctx.model.is_some() { "unknown" } else { "" });
        let provider = ctx.provider.as_deref().unwrap_or("");
        let status = ctx.status.to_string();
        if let Some(started) = ctx.started {
            self.duration
                .with_label_values(&[route])
                .observe(started.elapsed().as_secs_f64());
            if let (Some(first), false) = (ctx.first_byte, provider.is_empty()) {
                self.first_byte
                    .with_label_values(&[provider])
                    .observe(first.duration_since(started).as_secs_f64());
            }
        }
        if ctx.tokens.input > 0 || ctx.tokens.output > 0 {
            self.tokens
                .with_label_values(&[model, provider, "input"])
                .inc_by(ctx.tokens.input);
            self.tokens
                .with_label_values(&[model, provider, "output"])
                .inc_by(ctx.tokens.output);
        }
        if ctx.cost.nanos() > 0 {
            self.cost
                .with_label_values(&[model, provider])
                .inc_by(ctx.cost.nanos().unsigned_abs());
        }
        if let Some(code) = ctx.error_code {
            self.errors.with_label_values(&[code]).inc();
        }
        // Last: a scrape that sees the request counted sees all of its other figures.
        self.requests
            .with_label_values(&[route, model, provider, &status])
            .inc();
    }

    /// Creates the labelled series known in advance (each provider's fallbacks, the
    /// reload results), so they are exported at 0 before their first event.
    pub fn init_series(&self, config: &Config) {
        for provider in &config.providers {
            self.fallbacks.with_label_values(&[&provider.id]);
            self.attempts.with_label_values(&[&provider.id, "ok"]);
        }
        for result in ["ok", "refused"] {
            self.config_reloads.with_label_values(&[result]);
        }
    }

    /// Sets the gauges that are read rather than counted; called at each scrape.
    pub fn refresh(&self, health: &crate::route::health::Health) {
        for (endpoint, state) in health.states(std::time::Instant::now()) {
            self.circuit
                .with_label_values(&[&endpoint])
                .set(state.level());
        }
        use std::sync::atomic::Ordering::Relaxed;
        self.spool_bytes
            .set(i64::try_from(self.spool.bytes.load(Relaxed)).unwrap_or(i64::MAX));
        self.spool_pending
            .set(i64::try_from(self.spool.pending_events.load(Relaxed)).unwrap_or(i64::MAX));
        self.spool_stalled
            .set(self.spool.stalled_ms(tokenroute_domain::clock::now_ms()) as f64 / 1000.0);
    }
}
