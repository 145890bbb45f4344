//! Admission: the key's rate limits, then a credit reservation for the worst case.

use std::time::Duration;

use tokenroute_domain::config::Model;
use tokenroute_domain::NanoUsd;
use tokenroute_store::KeyRecord;

use crate::credit::{CreditError, Reservation};
use crate::ctx::RequestCtx;
use crate::error::ApiError;
use crate::limits::{openai_duration, Ticket};
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
    let reservation = reserve(state, ctx, key, models, ask).await?;
    Ok(Holds { reservation, rate })
}

async fn reserve(
    state: &ProxyState,
    ctx: &mut RequestCtx,
    key: &KeyRecord,
    models: &[&Model],
    ask: &Ask,
) -> Result<Reservation, ApiError> {
    // Worst case: every body byte a third of a token (denser than any real prompt),
    // capped by the context window, plus the most output the request may produce —
    // on the dearest model the request may reach (fallbacks included).
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
    let worst_case = models
        .iter()
        .map(|m| worst_case_on(m))
        .max()
        .unwrap_or(NanoUsd::ZERO);
    let max_concurrent = state.config.proxy.max_concurrent_per_account;
    match state.credit.reserve(key, worst_case, max_concurrent).await {
        Ok(reservation) => Ok(reservation),
        Err(CreditError::Insufficient { available }) => Err(ApiError::InsufficientCredits {
            balance: available.max(NanoUsd::ZERO).to_string(),
        }),
        Err(CreditError::SpendCap { cap, now_ms }) => {
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
