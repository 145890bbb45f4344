//! Admission: the key's rate limits, then a credit reservation for the worst case —
//! by the fleet's book in Redis when nodes share state, else by this node's own.

use std::sync::Arc;
use std::time::Duration;

use tokenroute_domain::config::{Model, RedisOutage};
use tokenroute_domain::NanoUsd;
use tokenroute_store::KeyRecord;

use crate::credit::{CreditError, Reservation};
use crate::ctx::RequestCtx;
use crate::error::ApiError;
use crate::limits::{openai_duration, Ticket};
use crate::shared::book::{Hold, Refused, SharedBook};
use crate::state::ProxyState;

/// What an admitted request holds until it is settled: its credit reservation and
/// its place in the key's token window.
pub struct Holds {
    pub reservation: Reservation,
    pub rate: Option<Ticket>,
}

/// What admission needs to know of a request.
pub struct Ask {
    pub body_len: usize,
    pub prompt_estimate: u64,
    /// The most output the client asked for (`max_tokens`), if it said.
    pub max_output: Option<u64>,
    /// The request produces no output tokens (embeddings).
    pub input_only: bool,
}

pub async fn admit(
    state: &ProxyState,
    ctx: &mut RequestCtx,
    key: &KeyRecord,
    models: &[&Model],
    ask: &Ask,
) -> Result<Holds, ApiError> {
    // Tokens per minute count the prompt and the most the request asks to produce,
    // corrected to the real count once known (as OpenAI estimates them).
    let rate_estimate = ask.prompt_estimate + ask.max_output.unwrap_or(0);
    if let Some(book) = &state.shared {
        if let Some(admitted) = admit_shared(
            state,
            ctx,
            key,
            book,
            worst_case(models, ask),
            rate_estimate,
        )
        .await
        {
            return admitted;
        }
    }
    let rate = match state.limiter.admit(&key.id, &key.limits, rate_estimate) {
        Ok(admitted) => {
            ctx.extra_headers.extend(admitted.headers);
            admitted.ticket
        }
        Err(refusal) => {
            ctx.extra_headers.extend(refusal.headers);
            return Err(rate_limited(
                ctx,
                refusal.what,
                refusal.limit,
                refusal.retry_after,
            ));
        }
    };
    usage_recordable(state)?;
    let reservation = reserve(state, ctx, key, models, ask).await?;
    Ok(Holds { reservation, rate })
}

/// Admission by the fleet's book (Redis): `None` when Redis is away and
/// `redis.on-outage = "local"` — the caller then admits by this node's own book.
async fn admit_shared(
    state: &ProxyState,
    ctx: &mut RequestCtx,
    key: &KeyRecord,
    book: &Arc<SharedBook>,
    worst_case: NanoUsd,
    rate_estimate: u64,
) -> Option<Result<Holds, ApiError>> {
    if let Err(e) = usage_recordable(state) {
        return Some(Err(e));
    }
    let hold = Hold {
        account_id: key.account_id.clone(),
        key_id: key.id.clone(),
        request_id: ctx.request_id.clone(),
    };
    let admitted = book
        .admit(
            &hold,
            &key.limits,
            worst_case,
            state.config.proxy.max_concurrent_per_account,
            rate_estimate,
            state.keys.store(),
        )
        .await;
    let refusal = match admitted {
        Ok(admitted) => {
            ctx.extra_headers
                .extend(admitted.window.headers(&key.limits));
            return Some(
                match state.credit.reserve_shared(key, book.clone(), hold).await {
                    Ok(reservation) => Ok(Holds {
                        reservation,
                        rate: None,
                    }),
                    Err(e) => Err(credit_refusal(ctx, e)),
                },
            );
        }
        Err(refusal) => refusal,
    };
    Some(Err(match refusal {
        Refused::Rate {
            what,
            limit,
            retry_after,
            window,
        } => {
            ctx.extra_headers.extend(window.headers(&key.limits));
            rate_limited(ctx, what, limit, retry_after)
        }
        Refused::Concurrency { limit } => credit_refusal(ctx, CreditError::Concurrency { limit }),
        Refused::Spend {
            cap,
            now_ms,
            window,
        } => {
            ctx.extra_headers.extend(window.headers(&key.limits));
            credit_refusal(ctx, CreditError::SpendCap { cap, now_ms })
        }
        Refused::Insufficient { available, window } => {
            // A top-up this node did not hear of shows within `balance-refresh-ms`.
            state.credit.refresh_if_due(&key.account_id).await;
            ctx.extra_headers.extend(window.headers(&key.limits));
            credit_refusal(ctx, CreditError::Insufficient { available })
        }
        Refused::Unavailable(_) => match book.shared().config().on_outage {
            RedisOutage::Local => {
                book.shared().metrics().local_fallbacks.inc();
                return None;
            }
            RedisOutage::Refuse => {
                book.shared().metrics().refused.inc();
                ApiError::Unavailable("shared state (Redis) is unreachable; retry shortly".into())
            }
        },
    }))
}

/// Usage that could not be recorded must not be produced: refused before the provider
/// runs while the spool is full (the store unreachable for long).
fn usage_recordable(state: &ProxyState) -> Result<(), ApiError> {
    if state.usage.is_full() {
        return Err(ApiError::Unavailable(
            "the usage spool is full while the store is unreachable".into(),
        ));
    }
    Ok(())
}

fn rate_limited(
    ctx: &mut RequestCtx,
    what: &'static str,
    limit: u64,
    retry_after: Duration,
) -> ApiError {
    let retry_secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    ctx.extra_headers
        .push(("retry-after", retry_secs.to_string()));
    ApiError::RateLimited {
        what,
        limit,
        retry: openai_duration(retry_after),
    }
}

/// Worst case: every body byte a third of a token (denser than any real prompt),
/// capped by the context window, plus the most output the request may produce — on
/// the dearest model the request may reach (fallbacks included).
fn worst_case(models: &[&Model], ask: &Ask) -> NanoUsd {
    let worst_case_on = |model: &Model| {
        let prompt = (ask.body_len as u64).div_ceil(3).min(model.context_window);
        let output = if ask.input_only {
            0
        } else {
            ask.max_output
                .unwrap_or(model.max_output_tokens)
                .min(model.max_output_tokens)
        };
        model.price.cost(prompt, output)
    };
    models
        .iter()
        .map(|m| worst_case_on(m))
        .max()
        .unwrap_or(NanoUsd::ZERO)
}

async fn reserve(
    state: &ProxyState,
    ctx: &mut RequestCtx,
    key: &KeyRecord,
    models: &[&Model],
    ask: &Ask,
) -> Result<Reservation, ApiError> {
    let max_concurrent = state.config.proxy.max_concurrent_per_account;
    state
        .credit
        .reserve(key, worst_case(models, ask), max_concurrent)
        .await
        .map_err(|e| credit_refusal(ctx, e))
}

/// The client's error for a refused reservation (and its `retry-after`).
fn credit_refusal(ctx: &mut RequestCtx, refusal: CreditError) -> ApiError {
    match refusal {
        CreditError::Insufficient { available } => ApiError::InsufficientCredits {
            balance: available.max(NanoUsd::ZERO).to_string(),
        },
        CreditError::SpendCap { cap, now_ms } => {
            let resets = match cap.resets_at_ms(now_ms) {
                Some(at) => {
                    let secs = u64::try_from((at - now_ms).max(0) / 1000 + 1).unwrap_or(1);
                    ctx.extra_headers.push(("retry-after", secs.to_string()));
                    format!(
                        "; it resets in {}",
                        openai_duration(Duration::from_secs(secs))
                    )
                }
                None => String::new(),
            };
            ApiError::SpendLimit {
                cap: cap.describe(),
                resets,
            }
        }
        CreditError::Concurrency { limit } => {
            ctx.extra_headers.push(("retry-after", "1".to_string()));
            ApiError::TooManyConcurrent(limit)
        }
        CreditError::Store(e) => ApiError::Internal(format!("balance lookup: {e}")),
    }
}
