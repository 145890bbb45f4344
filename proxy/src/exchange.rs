//! `POST /v1/chat/completions`, end to end: authenticate, read and parse the body,
//! resolve the model, reserve credit, forward, stream or return the answer while
//! metering it, and settle the reservation at the real cost.
//!
//! Charging rules: nothing is charged when the provider produced nothing (errors
//! before or instead of an answer); an answer is charged the usage the provider
//! reported, or — when a stream ends without one — a marked estimate.

use bytes::Bytes;
use pingora::proxy::Session;
use tokenroute_domain::config::Model;
use tokenroute_domain::NanoUsd;
use tokenroute_store::KeyRecord;

use crate::chat::ChatRequest;
use crate::credit::{CreditError, Reservation};
use crate::ctx::RequestCtx;
use crate::error::ApiError;
use crate::limits::{openai_duration, Ticket};
use crate::meter::openai::{usage_of_response, with_cost, Disposition, StreamMeter};
use crate::meter::sse::SseSplitter;
use crate::meter::{estimate_tokens, Tokens};
use crate::state::ProxyState;
use crate::upstream::{UpstreamError, UpstreamRequest, UpstreamResponse};
use crate::{body, respond};

/// Largest non-streaming answer accepted from a provider.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Largest provider error body relayed to the client.
const MAX_ERROR_BYTES: usize = 64 * 1024;

pub async fn chat_completions(
    state: &ProxyState,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    ctx.metered = true;
    let key = state.keys.authenticate(session.req_header()).await?;
    ctx.key = Some(key.clone());
    let raw = body::read_whole(session, state.config.proxy.max_body_bytes).await?;
    let chat = ChatRequest::parse(&raw)?;
    ctx.model = Some(chat.model.clone());
    ctx.streamed = chat.stream;
    let model = state
        .config
        .model(&chat.model)
        .ok_or_else(|| ApiError::UnknownModel(chat.model.clone()))?;
    let provider = state
        .config
        .provider(&model.provider)
        .ok_or_else(|| ApiError::Internal(format!("model {} has no provider", model.id)))?;
    ctx.provider = Some(provider.id.clone());
    ctx.upstream_model = Some(model.upstream.clone());
    if !key.limits.allows_model(&model.id) {
        return Err(ApiError::ModelNotAllowed(model.id.clone()));
    }
    // Tokens per minute count the prompt and the most the request asks to produce,
    // corrected to the real count once known (as OpenAI estimates them).
    let prompt_estimate = estimate_tokens(raw.len());
    let rate_estimate = prompt_estimate + chat.max_output_tokens.unwrap_or(0);
    let rate = match state.limiter.admit(&key.id, &key.limits, rate_estimate) {
        Ok(admitted) => {
            ctx.extra_headers.extend(admitted.headers);
            admitted.ticket
        }
        Err(refusal) => {
            ctx.extra_headers.extend(refusal.headers);
            let retry_secs = refusal.retry_after.as_secs_f64().ceil().max(1.0) as u64;
            ctx.extra_headers
                .push(("retry-after", retry_secs.to_string()));
            return Err(ApiError::RateLimited {
                what: refusal.what,
                limit: refusal.limit,
                retry: openai_duration(refusal.retry_after),
            });
        }
    };
    if state.usage.is_full() {
        // Usage could not be recorded: refuse before the provider produces anything.
        return Err(ApiError::Unavailable(
            "the usage spool is full while the store is unreachable".into(),
        ));
    }
    let reservation = reserve(state, ctx, &key, model, &chat, raw.len()).await?;
    let holds = Holds { reservation, rate };
    let upstream_body = Bytes::from(chat.to_openai_upstream(&model.upstream));
    let mut response = state
        .upstream
        .send(UpstreamRequest {
            provider,
            path: "/chat/completions",
            body: upstream_body,
            stream: chat.stream,
        })
        .await
        .map_err(|e| upstream_error(&provider.id, e))?;

    if !(200..300).contains(&response.status) {
        return relay_refusal(state, session, ctx, response, &provider.id).await;
    }
    if chat.stream {
        stream(
            state,
            session,
            ctx,
            &mut response,
            model,
            holds,
            prompt_estimate,
        )
        .await;
    } else {
        whole(
            state,
            session,
            ctx,
            &mut response,
            model,
            holds,
            prompt_estimate,
        )
        .await;
    }
    state.upstream.release(response).await;
    Ok(())
}

async fn reserve(
    state: &ProxyState,
    ctx: &mut RequestCtx,
    key: &KeyRecord,
    model: &Model,
    chat: &ChatRequest,
    body_len: usize,
) -> Result<Reservation, ApiError> {
    // Worst case: every body byte a third of a token (denser than any real prompt),
    // capped by the context window, plus the most output the request may produce.
    let prompt = (body_len as u64).div_ceil(3).min(model.context_window);
    let output = chat
        .max_output_tokens
        .unwrap_or(model.max_output_tokens)
        .min(model.max_output_tokens);
    let worst_case = model.price.cost(prompt, output);
    let max_concurrent = state.config.proxy.max_concurrent_per_account;
    match state.credit.reserve(key, worst_case, max_concurrent).await {
        Ok(reservation) => Ok(reservation),
        Err(CreditError::Insufficient { available }) => Err(ApiError::InsufficientCredits {
            balance: available.max(NanoUsd::ZERO).to_string(),
        }),
        Err(CreditError::SpendCap { cap, now_ms }) => {
            let resets = match cap.resets_at_ms(now_ms) {
                Some(at) => {
                    let secs = (at - now_ms).max(0) / 1000 + 1;
                    ctx.extra_headers.push(("retry-after", secs.to_string()));
                    format!(
                        "; it resets in {}",
                        openai_duration(std::time::Duration::from_secs(secs as u64))
                    )
                }
                None => String::new(),
            };
            Err(ApiError::SpendLimit {
                cap: cap.describe(),
                resets,
            })
        }
        Err(CreditError::Concurrency { limit }) => {
            ctx.extra_headers.push(("retry-after", "1".to_string()));
            Err(ApiError::TooManyConcurrent(limit))
        }
        Err(CreditError::Store(e)) => Err(ApiError::Internal(format!("balance lookup: {e}"))),
    }
}

/// What a forwarded request holds until it is settled: its credit reservation and
/// its place in the key's token window.
struct Holds {
    reservation: Reservation,
    rate: Option<Ticket>,
}

/// Settles the reservation at the real cost and records the usage durably: after
/// this returns, the request is billed whatever happens to the process.
async fn settle_and_record(
    state: &ProxyState,
    ctx: &mut RequestCtx,
    model: &Model,
    holds: Holds,
    outcome: Outcome,
) {
    let cost = model
        .price
        .cost(outcome.tokens.input, outcome.tokens.output);
    holds.reservation.settle(cost);
    if let Some(ticket) = holds.rate {
        ticket.settle(outcome.tokens.input + outcome.tokens.output);
    }
    ctx.tokens = outcome.tokens;
    ctx.cost = cost;
    ctx.estimated = outcome.estimated;
    if let Some(event) = ctx.usage_event() {
        ctx.recorded = true;
        state.usage.record(event).await;
    }
}

struct Outcome {
    tokens: Tokens,
    estimated: bool,
}

impl Outcome {
    const NOTHING: Outcome = Outcome {
        tokens: Tokens {
            input: 0,
            output: 0,
        },
        estimated: false,
    };
}

/// A non-streaming answer: read whole (bounded), metered from its `usage`, recorded,
/// then returned with `usage.cost` added.
async fn whole(
    state: &ProxyState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    response: &mut UpstreamResponse,
    model: &Model,
    holds: Holds,
    prompt_estimate: u64,
) {
    let body = match response.collect(MAX_RESPONSE_BYTES).await {
        Ok(body) => body,
        Err(e) => {
            // The provider may have produced (and billed) an answer we could not
            // read; without its usage nothing is charged, and the client learns why.
            let err = upstream_error(ctx.provider.as_deref().unwrap_or(""), e);
            ctx.status = err.status();
            settle_and_record(state, ctx, model, holds, Outcome::NOTHING).await;
            let _ = respond::error(session, ctx, &err).await;
            return;
        }
    };
    let outcome = match usage_of_response(&body) {
        Some(tokens) => Outcome {
            tokens,
            estimated: false,
        },
        None => Outcome {
            tokens: Tokens {
                input: prompt_estimate,
                output: estimate_tokens(body.len()),
            },
            estimated: true,
        },
    };
    ctx.status = 200;
    settle_and_record(state, ctx, model, holds, outcome).await;
    let body = with_cost(&body, ctx.cost).unwrap_or(body);
    let content_type = response
        .content_type
        .clone()
        .unwrap_or_else(|| "application/json".into());
    if let Err(e) = respond::whole(session, ctx, 200, &content_type, Bytes::from(body)).await {
        ctx.cancelled = true;
        tracing::debug!(request_id = %ctx.request_id, error = %e, "client went away before the answer was delivered");
    }
}

/// A streamed answer: forwarded event by event as it arrives, metered on the way;
/// the final `[DONE]` goes out only once the usage is recorded on disk.
async fn stream(
    state: &ProxyState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    response: &mut UpstreamResponse,
    model: &Model,
    holds: Holds,
    prompt_estimate: u64,
) {
    let mut splitter = SseSplitter::new();
    let mut meter = StreamMeter::new(model.price);
    let mut held: Vec<Bytes> = Vec::new();
    let mut client_alive = start_stream(session, ctx).await.is_ok();
    let mut failure = None;
    while client_alive {
        let (events, ended) = match response.chunk().await {
            Ok(Some(chunk)) => (splitter.push(&chunk), false),
            // A last event without its blank line still belongs to the client.
            Ok(None) => (splitter.finish().into_iter().collect(), true),
            Err(e) => {
                failure = Some(upstream_error(ctx.provider.as_deref().unwrap_or(""), e));
                break;
            }
        };
        let mut out = Vec::new();
        for event in events {
            match meter.observe(&event) {
                Disposition::Forward => out.extend_from_slice(&event.raw),
                Disposition::Replace(bytes) => out.extend_from_slice(&bytes),
                Disposition::Hold => held.push(event.raw),
            }
        }
        if !out.is_empty()
            && session
                .write_response_body(Some(Bytes::from(out)), false)
                .await
                .is_err()
        {
            client_alive = false;
        }
        if ended {
            break;
        }
    }
    ctx.cancelled = !client_alive;
    let outcome = match meter.usage {
        Some(tokens) => Outcome {
            tokens,
            estimated: false,
        },
        None => Outcome {
            tokens: Tokens {
                input: prompt_estimate,
                output: estimate_tokens(meter.generated_bytes),
            },
            estimated: true,
        },
    };
    settle_and_record(state, ctx, model, holds, outcome).await;
    if !client_alive {
        tracing::info!(request_id = %ctx.request_id, "client disconnected mid-stream; billed what the provider produced");
        return;
    }
    if let Some(err) = failure {
        // Headers are out; tell the client in-band, as OpenAI does, and end cleanly.
        let event = format!("data: {}\n\n", String::from_utf8_lossy(&err.body()));
        held = vec![Bytes::from(event)];
    }
    for bytes in held {
        if session
            .write_response_body(Some(bytes), false)
            .await
            .is_err()
        {
            return;
        }
    }
    let _ = session.write_response_body(None, true).await;
}

async fn start_stream(session: &mut Session, ctx: &mut RequestCtx) -> pingora::Result<()> {
    let mut h = respond::header(200, "text/event-stream", ctx)?;
    h.insert_header(http::header::CACHE_CONTROL, "no-cache")?;
    ctx.status = 200;
    ctx.response_started = true;
    session.write_response_header(Box::new(h), false).await
}

/// The provider refused or failed. Nothing is charged. Client errors (4xx) are the
/// client's to fix and are relayed as the provider worded them — except refusals of
/// TokenRoute's own credentials, which are the operator's; server errors become 502.
async fn relay_refusal(
    state: &ProxyState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    mut response: UpstreamResponse,
    provider: &str,
) -> Result<(), ApiError> {
    let status = response.status;
    let body = response.collect(MAX_ERROR_BYTES).await.unwrap_or_default();
    state.upstream.release(response).await;
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("HTTP {status}"));
    match status {
        401 | 403 => Err(ApiError::UpstreamFailed {
            provider: provider.to_string(),
            detail: format!("it refused TokenRoute's credentials (HTTP {status}); the operator must fix the provider key"),
        }),
        400..=499 => {
            let content_type = response_content_type(&body);
            respond::whole(session, ctx, status, content_type, Bytes::from(body))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))
        }
        _ => Err(ApiError::UpstreamFailed {
            provider: provider.to_string(),
            detail: format!("HTTP {status}: {message}"),
        }),
    }
}

fn response_content_type(body: &[u8]) -> &'static str {
    if serde_json::from_slice::<serde_json::Value>(body).is_ok() {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    }
}

fn upstream_error(provider: &str, e: UpstreamError) -> ApiError {
    let provider = provider.to_string();
    match e {
        UpstreamError::Timeout(detail) => ApiError::UpstreamTimeout { provider, detail },
        UpstreamError::Connect(detail) => ApiError::UpstreamUnavailable { provider, detail },
        UpstreamError::Protocol(detail) => ApiError::UpstreamFailed { provider, detail },
    }
}
