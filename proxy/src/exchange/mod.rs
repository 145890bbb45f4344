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
mod refusal;

pub use embeddings::embeddings;

use pingora::proxy::Session;
use tokenroute_domain::config::{Model, Provider};
use tokenroute_providers::{messages_api, TranslateError};
use tokenroute_store::KeyRecord;

use crate::body;
use crate::chat::ChatRequest;
use crate::ctx::RequestCtx;
use crate::dialect::Dialect;
use crate::error::ApiError;
use crate::meter::estimate_tokens;
use crate::state::ProxyState;
use crate::surface::Surface;
use crate::upstream::{UpstreamError, UpstreamRequest};

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
    let raw = body::read_whole(session, state.config.proxy.max_body_bytes).await?;
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
    let (key, raw) = accept(state, session, ctx).await?;
    let chat = ChatRequest::parse(&raw)?;
    run(state, session, ctx, &key, chat, raw.len()).await
}

/// `POST /v1/messages`: Anthropic's Messages API, to any model behind TokenRoute.
pub async fn messages(
    state: &ProxyState,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    ctx.surface = Surface::Anthropic;
    let (key, raw) = accept(state, session, ctx).await?;
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&raw) {
        return Err(ApiError::MalformedJson(e.to_string()));
    }
    let (openai, _stream) = messages_api::to_openai_chat(&raw).map_err(translate_error)?;
    let chat = ChatRequest::from_map(openai)?;
    run(state, session, ctx, &key, chat, raw.len()).await
}

async fn run(
    state: &ProxyState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    key: &KeyRecord,
    chat: ChatRequest,
    body_len: usize,
) -> Result<(), ApiError> {
    ctx.model = Some(chat.model.clone());
    ctx.streamed = chat.stream;
    let (model, provider) = resolve(state, ctx, key, &chat.model)?;
    let dialect = Dialect::of(provider.kind);
    let call = dialect
        .call(&chat, &model.upstream)
        .map_err(translate_error)?;
    let prompt_estimate = estimate_tokens(body_len);
    let ask = admit::Ask {
        body_len,
        prompt_estimate,
        max_output: chat.max_output_tokens,
        input_only: false,
    };
    let holds = admit::admit(state, ctx, key, model, &ask).await?;

    let mut response = state
        .upstream
        .send(UpstreamRequest {
            provider,
            path: &call.path,
            body: call.body.into(),
            headers: &call.headers,
            stream: chat.stream,
        })
        .await
        .map_err(|e| upstream_error(&provider.id, e))?;
    if !(200..300).contains(&response.status) {
        return refusal::relay(state, session, ctx, response, dialect, &provider.id).await;
    }
    let answer = deliver::Answer {
        model,
        dialect,
        client_model: &chat.model,
        holds,
        prompt_estimate,
    };
    if chat.stream {
        deliver::stream(state, session, ctx, &mut response, answer).await;
    } else {
        deliver::whole(state, session, ctx, &mut response, answer).await;
    }
    state.upstream.release(response).await;
    Ok(())
}

/// The configured model the client named and its provider, if the key may use it.
fn resolve<'s>(
    state: &'s ProxyState,
    ctx: &mut RequestCtx,
    key: &KeyRecord,
    model_id: &str,
) -> Result<(&'s Model, &'s Provider), ApiError> {
    let model = state
        .config
        .model(model_id)
        .ok_or_else(|| ApiError::UnknownModel(model_id.to_string()))?;
    let provider = state
        .config
        .provider(&model.provider)
        .ok_or_else(|| ApiError::Internal(format!("model {} has no provider", model.id)))?;
    ctx.provider = Some(provider.id.clone());
    ctx.upstream_model = Some(model.upstream.clone());
    if !key.limits.allows_model(&model.id) {
        return Err(ApiError::ModelNotAllowed(model.id.clone()));
    }
    Ok((model, provider))
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
