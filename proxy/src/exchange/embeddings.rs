//! `POST /v1/embeddings`: OpenAI's embeddings API, to OpenAI-compatible and Gemini
//! upstreams, metered on its input tokens.

use bytes::Bytes;
use pingora::proxy::Session;
use serde_json::{Map, Value};
use tokenroute_providers::gemini;

use super::admit::{self, Ask, Holds};
use super::{accept, refusal, resolve, translate_error, upstream_error};
use crate::ctx::RequestCtx;
use crate::dialect::Dialect;
use crate::error::ApiError;
use crate::meter::openai::{usage_of_response, with_cost};
use crate::meter::{estimate_tokens, Tokens};
use crate::respond;
use crate::state::ProxyState;
use crate::upstream::UpstreamRequest;

/// Largest embeddings answer accepted (a large batch of large vectors).
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

pub async fn embeddings(
    state: &ProxyState,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    let (key, raw) = accept(state, session, ctx).await?;
    let request = parse(&raw)?;
    let model_id = request
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("You must provide a model parameter.", Some("model")))?
        .to_string();
    let input_bytes = input_bytes(&request)?;
    ctx.model = Some(model_id.clone());
    let live = state.router.live();
    let config = &*live.config;
    let (m, p) = resolve(config, ctx, &key, &model_id)?;
    let (model, provider) = (&config.models[m], &config.providers[p]);
    // Not routed: the provider's first endpoint that takes traffic.
    let endpoint = provider
        .endpoints
        .iter()
        .find(|e| e.weight > 0)
        .unwrap_or(&provider.endpoints[0]);
    ctx.endpoint = Some(endpoint.id.clone());
    ctx.attempts = 1;
    let dialect = Dialect::of(provider.kind);
    let (path, body) = match dialect {
        Dialect::OpenAi => {
            let mut upstream = request.clone();
            upstream.insert("model".into(), Value::String(model.upstream.clone()));
            (
                "/embeddings".to_string(),
                Value::Object(upstream).to_string().into_bytes(),
            )
        }
        Dialect::Gemini => {
            let call = gemini::embeddings_to_upstream(&request, &model.upstream)
                .map_err(translate_error)?;
            (call.path, call.body)
        }
        Dialect::Anthropic => {
            return Err(ApiError::invalid(
                format!("`{model_id}` is an Anthropic model; Anthropic offers no embeddings."),
                Some("model"),
            ))
        }
    };
    let prompt_estimate = estimate_tokens(input_bytes);
    let ask = Ask {
        body_len: raw.len(),
        prompt_estimate,
        max_output: None,
        input_only: true,
    };
    let holds = admit::admit(state, ctx, &key, &[model], &ask).await?;
    let mut response = state
        .upstream
        .send(UpstreamRequest {
            provider,
            endpoint,
            path: &path,
            body: body.into(),
            headers: &[],
            stream: false,
        })
        .await
        .map_err(|e| upstream_error(&provider.id, e))?;
    if !(200..300).contains(&response.status) {
        return refusal::relay(state, session, ctx, response, dialect, &provider.id).await;
    }
    let collected = response.collect(MAX_RESPONSE_BYTES).await;
    state.upstream.release(response).await;
    let answer = collected
        .map_err(|e| upstream_error(&provider.id, e))
        .and_then(|body| match dialect {
            Dialect::Gemini => gemini::embeddings_from_response(&body, &model_id, input_bytes)
                .map_err(|e| ApiError::UpstreamFailed {
                    provider: provider.id.clone(),
                    detail: e.to_string(),
                }),
            _ => Ok(body),
        });
    let body = match answer {
        Ok(body) => body,
        Err(e) => {
            drop(holds); // nothing produced, nothing charged
            return Err(e);
        }
    };
    let tokens = usage_of_response(&body).unwrap_or(Tokens {
        input: prompt_estimate,
        output: 0,
        cached: 0,
    });
    settle(
        state,
        ctx,
        model,
        holds,
        tokens,
        usage_of_response(&body).is_none(),
    )
    .await;
    let body = with_cost(&body, ctx.cost).unwrap_or(body);
    respond::whole(session, ctx, 200, "application/json", Bytes::from(body))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))
}

async fn settle(
    state: &ProxyState,
    ctx: &mut RequestCtx,
    model: &tokenroute_domain::config::Model,
    holds: Holds,
    tokens: Tokens,
    estimated: bool,
) {
    let cost = model
        .price
        .cost_with_cache(tokens.input, tokens.cached, tokens.output);
    holds.reservation.settle(cost, tokens.input).await;
    if let Some(ticket) = holds.rate {
        ticket.settle(tokens.input);
    }
    ctx.status = 200;
    ctx.tokens = tokens;
    ctx.cost = cost;
    ctx.estimated = estimated;
    if let Some(event) = ctx.usage_event() {
        ctx.recorded = true;
        state.usage.record(event).await;
    }
}

fn parse(raw: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(raw) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::invalid(
            "The request body must be a JSON object.",
            None,
        )),
        Err(e) => Err(ApiError::MalformedJson(e.to_string())),
    }
}

/// Bytes of text to embed (for the estimate and the reservation); checks `input`.
fn input_bytes(request: &Map<String, Value>) -> Result<usize, ApiError> {
    let bad = || {
        ApiError::invalid(
            "`input` must be a string or an array of strings (or of token arrays).",
            Some("input"),
        )
    };
    match request.get("input") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.len()),
        Some(Value::Array(items)) if !items.is_empty() => {
            items.iter().try_fold(0, |sum, item| match item {
                Value::String(s) => Ok(sum + s.len()),
                // Token ids: count four bytes a token, the inverse of the estimate.
                Value::Array(tokens) => Ok(sum + 4 * tokens.len()),
                Value::Number(_) => Ok(sum + 4),
                _ => Err(bad()),
            })
        }
        _ => Err(bad()),
    }
}
