//! Sending a request along its routing decision: the first target, then — on a
//! refused connection, a timeout, a 5xx or a 429, and only while nothing has reached
//! the client — the next, within the attempt cap, the routing deadline and the retry
//! budget. Every attempt's outcome feeds its endpoint's circuit breaker.

use std::time::{Duration, Instant};

use tokenroute_domain::config::Config;

use super::translate_error;
use crate::chat::ChatRequest;
use crate::ctx::RequestCtx;
use crate::dialect::Dialect;
use crate::error::ApiError;
use crate::route::{self, Decision, Live, Target};
use crate::state::ProxyState;
use crate::upstream::{UpstreamError, UpstreamRequest, UpstreamResponse};

/// How forwarding ended.
pub enum Forwarded {
    /// A provider answered (2xx, or a client error to relay): this target's.
    Answer {
        target: Target,
        dialect: Dialect,
        response: UpstreamResponse,
    },
    /// Every attempt failed; the last failure is the client's answer.
    Failed(ApiError),
}

/// Why an attempt did not produce an answer worth keeping.
enum Failure {
    Error(UpstreamError),
    /// A 429 or 5xx (kept, to relay it if it is the last).
    Status(UpstreamResponse),
}

pub async fn forward(
    state: &ProxyState,
    ctx: &mut RequestCtx,
    live: &Live,
    decision: &Decision,
    chat: &ChatRequest,
    requested: &str,
) -> Forwarded {
    let config: &Config = &live.config;
    let settings = &config.routing;
    let started = ctx.started.unwrap_or_else(Instant::now);
    let deadline = started + settings.deadline;
    live.budget.deposit();
    let mut attempts: u32 = 0;
    let mut last: Option<(Target, Dialect, Failure)> = None;
    // The last failure fallen back from, for the answer if nothing else is tried.
    let mut fell_back: Option<ApiError> = None;
    for (rank, target) in decision.targets.iter().enumerate() {
        if attempts as usize >= settings.max_attempts {
            break;
        }
        let model = &config.models[target.model];
        let provider = &config.providers[target.provider];
        let endpoint_key = route::endpoint_key(config, target);
        let breaker = state.router.health.breaker(endpoint_key);
        if !breaker.try_acquire(Instant::now()) {
            // Opened since the decision, or its one half-open probe is taken.
            continue;
        }
        let dialect = Dialect::of(provider.kind);
        let call = match dialect.call(chat, &model.upstream) {
            Ok(call) => call,
            Err(e) => {
                breaker.release_probe();
                // This provider cannot express the request; another may.
                if rank + 1 < decision.targets.len() {
                    continue;
                }
                return Forwarded::Failed(translate_error(e));
            }
        };
        attempts += 1;
        note_target(ctx, config, decision, target, requested, rank, attempts);
        let sent = Instant::now();
        let remaining = deadline
            .saturating_duration_since(sent)
            .max(Duration::from_millis(1));
        let result = match tokio::time::timeout(
            remaining,
            state.upstream.send(UpstreamRequest {
                provider,
                endpoint: &provider.endpoints[target.endpoint],
                path: &call.path,
                body: call.body.into(),
                headers: &call.headers,
                stream: chat.stream,
            }),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::Timeout(format!(
                "no answer within the routing deadline ({} ms)",
                settings.deadline.as_millis()
            ))),
        };
        let failure = match result {
            Ok(response) if response.status == 429 || response.status >= 500 => {
                Failure::Status(response)
            }
            Ok(response) => {
                // The provider answered: healthy, whatever it thought of the request.
                breaker.success(sent.elapsed());
                let outcome = if (200..300).contains(&response.status) {
                    "ok"
                } else {
                    "http_4xx"
                };
                state
                    .metrics
                    .attempts
                    .with_label_values(&[&provider.id, outcome])
                    .inc();
                return Forwarded::Answer {
                    target: *target,
                    dialect,
                    response,
                };
            }
            Err(e) => Failure::Error(e),
        };
        breaker.failure(Instant::now(), settings);
        let outcome = match &failure {
            Failure::Status(r) if r.status == 429 => "http_429",
            Failure::Status(_) => "http_5xx",
            Failure::Error(UpstreamError::Timeout(_)) => "timeout",
            Failure::Error(UpstreamError::Connect(_)) => "connect_error",
            Failure::Error(UpstreamError::Protocol(_)) => "protocol_error",
        };
        state
            .metrics
            .attempts
            .with_label_values(&[&provider.id, outcome])
            .inc();
        tracing::info!(
            request_id = %ctx.request_id,
            endpoint = %endpoint_key,
            model = %model.id,
            outcome,
            attempt = attempts,
            "upstream attempt failed"
        );
        let more = (attempts as usize) < settings.max_attempts
            && rank + 1 < decision.targets.len()
            && Instant::now() < deadline;
        // The budget is spent here, once per fallback: a target skipped after it
        // (its circuit opened meanwhile) passes the fallback on to the next one.
        if more && live.budget.withdraw() {
            state
                .metrics
                .fallbacks
                .with_label_values(&[&provider.id])
                .inc();
            fell_back = Some(match failure {
                Failure::Status(response) => {
                    let status = response.status;
                    state.upstream.release(response).await;
                    ApiError::UpstreamFailed {
                        provider: provider.id.clone(),
                        detail: format!("HTTP {status}"),
                    }
                }
                Failure::Error(e) => super::upstream_error(&provider.id, e),
            });
            continue;
        }
        if more {
            state.metrics.retry_budget_exhausted.inc();
        }
        last = Some((*target, dialect, failure));
        break;
    }
    match last {
        Some((target, dialect, Failure::Status(response))) => Forwarded::Answer {
            target,
            dialect,
            response,
        },
        Some((target, _, Failure::Error(e))) => {
            let provider = &config.providers[target.provider].id;
            Forwarded::Failed(super::upstream_error(provider, e))
        }
        None => Forwarded::Failed(fell_back.unwrap_or_else(|| ApiError::UpstreamUnavailable {
            provider: requested.to_string(),
            detail: format!(
                "no provider could be tried (attempts made: {attempts}; the others' circuits are open or the routing deadline passed)"
            ),
        })),
    }
}

/// Records the target on the request: usage rows, logs, metrics and the response
/// headers name it.
fn note_target(
    ctx: &mut RequestCtx,
    config: &Config,
    decision: &Decision,
    target: &Target,
    requested: &str,
    rank: usize,
    attempts: u32,
) {
    let model = &config.models[target.model];
    let provider = &config.providers[target.provider];
    ctx.model = Some(model.id.clone());
    ctx.provider = Some(provider.id.clone());
    ctx.upstream_model = Some(model.upstream.clone());
    ctx.attempts = attempts;
    ctx.route_header = Some(route::header_value(config, decision, requested, rank));
    ctx.endpoint = Some(provider.endpoints[target.endpoint].id.clone());
}
