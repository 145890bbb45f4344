//! `POST /v1/route/explain`: the routing decision for a chat request, as it would be
//! made now (this key, this config, current health), without calling any provider
//! and without charging anything.

use pingora::proxy::Session;

use crate::body;
use crate::chat::ChatRequest;
use crate::ctx::RequestCtx;
use crate::error::ApiError;
use crate::exchange::route_error;
use crate::meter::estimate_tokens;
use crate::respond;
use crate::route::{self, RouteInput};
use crate::state::ProxyState;

pub async fn explain(
    state: &ProxyState,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    let key = state.keys.authenticate(session.req_header()).await?;
    let raw = body::read_json(session, &state.config.proxy).await?;
    let mut chat = ChatRequest::parse(&raw)?;
    chat.check_messages(state.config.proxy.max_messages)?;
    let steering = chat.take_steering()?;
    let live = state.router.live();
    let config = &*live.config;
    let input = RouteInput::of_chat(
        &chat,
        key.as_ref().into(),
        &session.req_header().headers,
        &steering,
        estimate_tokens(raw.len()),
    );
    let decision = state.router.decide(config, &input).map_err(route_error)?;
    let body = route::explain(config, &chat.model, &input.features, &decision);
    respond::json(session, ctx, 200, body.to_string().into_bytes())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))
}
