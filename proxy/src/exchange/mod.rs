//! One API call end to end: authenticate, read and parse the body, resolve the model,
//! admit it under the key's limits, reserve credit, translate and forward it, then
//! deliver the answer (whole or streamed) while metering it, settle at the real cost
//! and record the usage durably before the client gets the end of it.
//!
//! Charging rules: nothing is charged when the provider produced nothing (errors
//! before or instead of an answer); an answer is charged the usage the provider
//! reported, or — when a stream ends without one — a marked estimate.

mod admit;
mod deliver;
mod embeddings;
mod forward;
mod refusal;

pub use embeddings::embeddings;

use pingora::proxy::Session;
use tokenroute_domain::config::{Config, Model};
use tokenroute_providers::{messages_api, TranslateError};
use tokenroute_store::KeyRecord;

use crate::body;
use crate::chat::ChatRequest;
use crate::ctx::RequestCtx;
use crate::error::ApiError;
use crate::meter::estimate_tokens;
use crate::route::{RouteError, RouteInput};
use crate::state::ProxyState;
use crate::surface::Surface;
use crate::upstream::UpstreamError;

/// The start of every metered call: the key (refusals are recorded against it from
/// here on) and the whole, bounded body.
async fn accept(
    state: &ProxyState,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(std::sync::Arc<KeyRecord>, bytes::Bytes), ApiError> {
    ctx.metered = true;
    let key = state.keys.authenticate(session.req_header()).await?;
    ctx.key = Some(key.clone());
    let raw = body::read_json(session, &state.config.proxy).await?;
    if key.debug_enabled {
        ctx.debug = Some(crate::debug_log::Capture::new(raw.clone()));
    }
    Ok((key, raw))
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    state: &ProxyState,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    // The body goes once parsed: a streamed answer can stay open for minutes.
    let (key, chat, body_len) = {
        let (key, raw) = accept(state, session, ctx).await?;
        (key, ChatRequest::parse(&raw)?, raw.len())
    };
    run(state, session, ctx, &key, chat, body_len).await
}

/// `POST /v1/messages`: Anthropic's Messages API, to any model behind TokenRoute.
pub async fn messages(
    state: &ProxyState,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    ctx.surface = Surface::Anthropic;
    let (key, chat, body_len) = {
        let (key, raw) = accept(state, session, ctx).await?;
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&raw) {
            return Err(ApiError::MalformedJson(e.to_string()));
        }
        let (openai, _stream) = messages_api::to_openai_chat(&raw).map_err(translate_error)?;
        (key, ChatRequest::from_map(openai)?, raw.len())
    };
    run(state, session, ctx, &key, chat, body_len).await
}

async fn run(
    state: &ProxyState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    key: &KeyRecord,
    mut chat: ChatRequest,
    body_len: usize,
) -> Result<(), ApiError> {
    ctx.model = Some(chat.model.clone());
    ctx.streamed = chat.stream;
    chat.check_messages(state.config.proxy.max_messages)?;
    let steering = chat.take_steering()?;
    let live = state.router.live();
    let config = &*live.config;
    let prompt_estimate = estimate_tokens(body_len);
    let input = RouteInput::of_chat(
        &chat,
        key.into(),
        &session.req_header().headers,
        &steering,
        prompt_estimate,
    );
    let decision = state.router.decide(config, &input).map_err(route_error)?;
    let requested = chat.model.clone();
    let first = &config.models[decision.targets[0].model];
    if first.id != requested {
        ctx.route = Some(requested.clone());
    }
    ctx.model = Some(first.id.clone());
    ctx.provider = Some(first.provider.clone());
    ctx.upstream_model = Some(first.upstream.clone());

    // Reserve for the dearest model a fallback may reach.
    let reachable: Vec<&Model> = decision
        .targets
        .iter()
        .take(config.routing.max_attempts)
        .map(|t| &config.models[t.model])
        .collect();
    let ask = admit::Ask {
        body_len,
        prompt_estimate,
        max_output: chat.max_output_tokens,
        input_only: false,
    };
    let holds = admit::admit(state, ctx, key, &reachable, &ask).await?;

    let forwarded = forward::forward(state, ctx, &live, &decision, &chat, &requested).await;
    // Sent: the parsed request is not needed to deliver the answer.
    let stream = chat.stream;
    drop(chat);
    route_headers(ctx);
    let (target, dialect, mut response) = match forwarded {
        forward::Forwarded::Answer {
            target,
            dialect,
            response,
        } => (target, dialect, response),
        forward::Forwarded::Failed(e) => return Err(e),
    };
    let provider = &config.providers[target.provider];
    if !(200..300).contains(&response.status) {
        return refusal::relay(state, session, ctx, response, dialect, &provider.id).await;
    }
    let model = &config.models[target.model];
    // A routed request's answer names the model that served it.
    let client_model = if ctx.route.is_some() {
        &model.id
    } else {
        &requested
    };
    let answer = deliver::Answer {
        model,
        dialect,
        client_model,
        holds,
        prompt_estimate,
    };
    if stream {
        deliver::stream(state, session, ctx, &mut response, answer).await;
    } else {
        deliver::whole(state, session, ctx, &mut response, answer).await;
    }
    state.upstream.release(response).await;
    Ok(())
}

/// Response headers naming what served the request and why.
fn route_headers(ctx: &mut RequestCtx) {
    let named = [
        ("x-tokenroute-provider", ctx.provider.clone()),
        ("x-tokenroute-model", ctx.model.clone()),
        ("x-tokenroute-endpoint", ctx.endpoint.clone()),
        ("x-tokenroute-route", ctx.route_header.clone()),
        ("x-tokenroute-attempts", Some(ctx.attempts.to_string())),
    ];
    for (name, value) in named {
        if let Some(value) = value {
            ctx.extra_headers.push((name, value));
        }
    }
}

pub(crate) fn route_error(e: RouteError) -> ApiError {
    match e {
        RouteError::UnknownModel(m) => ApiError::UnknownModel(m),
        RouteError::NotAllowed(m) => ApiError::ModelNotAllowed(m),
        RouteError::UnknownFallback { .. } => ApiError::invalid(e.to_string(), Some("models")),
        RouteError::NoCandidate {
            unhealthy: true, ..
        } => ApiError::Unavailable(e.to_string()),
        RouteError::NoCandidate { .. } => ApiError::invalid(e.to_string(), Some("model")),
    }
}

/// The configured model the client named (directly or by alias) and its provider's
/// first endpoint, if the key may use it — for APIs that are not routed (embeddings).
fn resolve(
    config: &Config,
    ctx: &mut RequestCtx,
    key: &KeyRecord,
    model_id: &str,
) -> Result<(usize, usize), ApiError> {
    let id = config.resolve_alias(model_id);
    let m = config
        .model_index(id)
        .ok_or_else(|| ApiError::UnknownModel(model_id.to_string()))?;
    let model = &config.models[m];
    let p = config
        .provider_index(&model.provider)
        .ok_or_else(|| ApiError::Internal(format!("model {} has no provider", model.id)))?;
    ctx.model = Some(model.id.clone());
    ctx.provider = Some(model.provider.clone());
    ctx.upstream_model = Some(model.upstream.clone());
    if !key.limits.allows_model(&model.id) && !key.limits.allows_model(model_id) {
        return Err(ApiError::ModelNotAllowed(model.id.clone()));
    }
    Ok((m, p))
}

/// A request the provider's dialect cannot express is the client's to change: 400.
fn translate_error(e: TranslateError) -> ApiError {
    ApiError::invalid(e.to_string(), None)
}

fn upstream_error(provider: &str, e: UpstreamError) -> ApiError {
    let provider = provider.to_string();
    match e {
        UpstreamError::Timeout(detail) => ApiError::UpstreamTimeout { provider, detail },
        UpstreamError::Connect(detail) => ApiError::UpstreamUnavailable { provider, detail },
        UpstreamError::Protocol(detail) => ApiError::UpstreamFailed { provider, detail },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future an API call's handler returns: what an open stream
    /// holds of it for as long as it is open (the future is one allocation).
    fn future_size<'a, F: std::future::Future>(
        _handler: fn(&'a ProxyState, &'a mut Session, &'a mut RequestCtx) -> F,
    ) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn an_api_call_future_leaves_connecting_and_pooling_to_boxes_of_their_own() {
        // Awaited in place, connecting to a provider (≈ 10 KiB of future with the TLS
        // handshake) and returning the connection to the pool (≈ 3 KiB) made every
        // call's future ≈ 12 KiB, kept by each open stream until its end.
        for (api, size) in [
            ("chat completions", future_size(chat_completions)),
            ("messages", future_size(messages)),
        ] {
            assert!(size <= 6 * 1024, "the {api} future is {size} bytes");
        }
    }
}
