//! Delivering an answer: whole or streamed, translated from the provider's dialect
//! into OpenAI's (where it is metered) and into the client's surface on the way out.
//! Usage is recorded on disk before the client receives the end of the answer.

use bytes::Bytes;
use pingora::proxy::Session;
use tokenroute_domain::config::Model;

use super::admit::Holds;
use super::upstream_error;
use crate::ctx::RequestCtx;
use crate::dialect::Dialect;
use crate::error::ApiError;
use crate::meter::openai::{usage_of_response, with_cost, Disposition, StreamMeter};
use crate::meter::sse::SseSplitter;
use crate::meter::{estimate_tokens, Tokens};
use crate::respond;
use crate::state::ProxyState;
use crate::upstream::UpstreamResponse;

/// Largest non-streaming answer accepted from a provider.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// What delivering an answer needs to know.
pub struct Answer<'a> {
    pub model: &'a Model,
    pub dialect: Dialect,
    /// The model id the client asked for, as answers name it.
    pub client_model: &'a str,
    pub holds: Holds,
    /// Prompt tokens to bill if the provider never reports usage.
    pub prompt_estimate: u64,
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
            cached: 0,
        },
        estimated: false,
    };
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
    let cost = model.price.cost_with_cache(
        outcome.tokens.input,
        outcome.tokens.cached,
        outcome.tokens.output,
    );
    let tokens = outcome.tokens.input + outcome.tokens.output;
    holds.reservation.settle(cost, tokens).await;
    if let Some(ticket) = holds.rate {
        ticket.settle(tokens);
    }
    ctx.tokens = outcome.tokens;
    ctx.cost = cost;
    ctx.estimated = outcome.estimated;
    if let Some(event) = ctx.usage_event() {
        ctx.recorded = true;
        state.usage.record(event).await;
    }
}

/// A non-streaming answer: read whole (bounded), translated to OpenAI's shape, metered
/// from its `usage`, recorded, then returned with `usage.cost` added.
pub async fn whole(
    state: &ProxyState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    response: &mut UpstreamResponse,
    answer: Answer<'_>,
) {
    let provider = ctx.provider.clone().unwrap_or_default();
    let translated = match response.collect(MAX_RESPONSE_BYTES).await {
        Ok(body) => answer
            .dialect
            .answer(body, answer.client_model)
            .map_err(|e| ApiError::UpstreamFailed {
                provider: provider.clone(),
                detail: e.to_string(),
            }),
        Err(e) => Err(upstream_error(&provider, e)),
    };
    let body = match translated {
        Ok(body) => body,
        Err(err) => {
            // The provider may have produced (and billed) an answer we could not read;
            // without its usage nothing is charged, and the client learns why.
            ctx.status = err.status();
            settle_and_record(state, ctx, answer.model, answer.holds, Outcome::NOTHING).await;
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
                input: answer.prompt_estimate,
                output: estimate_tokens(body.len()),
                cached: 0,
            },
            estimated: true,
        },
    };
    ctx.status = 200;
    settle_and_record(state, ctx, answer.model, answer.holds, outcome).await;
    let body = with_cost(&body, ctx.cost).unwrap_or(body);
    let body = ctx.surface.answer(body, answer.client_model);
    if let Err(e) = respond::whole(session, ctx, 200, "application/json", Bytes::from(body)).await {
        ctx.cancelled = true;
        tracing::debug!(request_id = %ctx.request_id, error = %e, "client went away before the answer was delivered");
    }
}

/// A streamed answer: each provider chunk is translated to OpenAI events, metered,
/// translated to the client's surface and forwarded as it arrives; the stream's end
/// (`[DONE]`) goes out only once the usage is recorded on disk.
pub async fn stream(
    state: &ProxyState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    response: &mut UpstreamResponse,
    answer: Answer<'_>,
) {
    let mut adapter = answer.dialect.stream(answer.client_model);
    let mut client = ctx.surface.stream(answer.client_model);
    let mut splitter = SseSplitter::new();
    let mut meter = StreamMeter::new(answer.model.price);
    let mut held: Vec<Bytes> = Vec::new();
    let mut client_alive = start_stream(session, ctx).await.is_ok();
    let mut failure = None;
    while client_alive {
        let (openai, ended) = match response.chunk().await {
            Ok(Some(chunk)) => (adapter.push(chunk), false),
            Ok(None) => (adapter.finish(), true),
            Err(e) => {
                failure = Some(upstream_error(ctx.provider.as_deref().unwrap_or(""), e));
                break;
            }
        };
        let mut events = splitter.push(&openai);
        if ended {
            // A last event without its blank line still belongs to the client.
            events.extend(splitter.finish());
        }
        let mut out = Vec::new();
        for event in events {
            match meter.observe(&event) {
                Disposition::Forward => out.extend_from_slice(&event.raw),
                Disposition::Replace(bytes) => out.extend_from_slice(&bytes),
                Disposition::Hold => held.push(event.raw),
            }
        }
        if !out.is_empty() {
            let bytes = client.push(Bytes::from(out));
            if let Some(capture) = ctx.debug.as_mut() {
                capture.answer(&bytes);
            }
            if !bytes.is_empty() {
                // The first token reaches the client now.
                ctx.first_byte.get_or_insert_with(std::time::Instant::now);
            }
            if !bytes.is_empty()
                && session
                    .write_response_body(Some(bytes), false)
                    .await
                    .is_err()
            {
                client_alive = false;
            }
        }
        if ended {
            break;
        }
    }
    ctx.cancelled = !client_alive;
    let produced = estimate_tokens(meter.generated_bytes);
    let outcome = match meter.usage {
        // A stream that ended early may carry only the provider's first count (e.g.
        // Anthropic's message_start): never bill less output than was delivered.
        Some(tokens) if !meter.done && tokens.output < produced => Outcome {
            tokens: Tokens {
                output: produced,
                ..tokens
            },
            estimated: true,
        },
        Some(tokens) => Outcome {
            tokens,
            estimated: false,
        },
        None => Outcome {
            tokens: Tokens {
                input: answer.prompt_estimate,
                output: produced,
                cached: 0,
            },
            estimated: true,
        },
    };
    settle_and_record(state, ctx, answer.model, answer.holds, outcome).await;
    if !client_alive {
        tracing::info!(request_id = %ctx.request_id, "client disconnected mid-stream; billed what the provider produced");
        return;
    }
    if let Some(err) = failure {
        // Headers are out; tell the client in-band, as OpenAI does, and end cleanly.
        held = vec![Bytes::from(format!(
            "data: {}\n\n",
            String::from_utf8_lossy(&err.body())
        ))];
    }
    let mut tail: Vec<u8> = Vec::new();
    for bytes in held {
        tail.extend_from_slice(&client.push(bytes));
    }
    tail.extend_from_slice(&client.finish());
    if let Some(capture) = ctx.debug.as_mut() {
        capture.answer(&tail);
    }
    if !tail.is_empty()
        && session
            .write_response_body(Some(Bytes::from(tail)), false)
            .await
            .is_err()
    {
        return;
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
