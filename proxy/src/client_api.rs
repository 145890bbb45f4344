//! What a client can ask about its own account with its key: one metered request
//! (`GET /v1/generation?id=`), its credits (`GET /v1/credits`) and its key
//! (`GET /v1/key`). These read the store; they are not on the completion hot path.

use pingora::proxy::Session;
use serde_json::{json, Value};
use tokenroute_domain::clock::{day_start_ms, month_start_ms, now_ms};
use tokenroute_domain::{KeyLimits, NanoUsd, UsageEvent};

use crate::ctx::RequestCtx;
use crate::error::ApiError;
use crate::respond;
use crate::state::ProxyState;

pub async fn generation(
    state: &ProxyState,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    let key = state.keys.authenticate(session.req_header()).await?;
    let id = session
        .req_header()
        .uri
        .query()
        .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("id=")))
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                "Pass the generation id: GET /v1/generation?id=...",
                Some("id"),
            )
        })?
        .to_string();
    let event = state
        .keys
        .store()
        .usage_by_request_id(&key.account_id, &id)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .ok_or_else(|| ApiError::GenerationNotFound(id.clone()))?;
    send(session, ctx, json!({ "data": generation_json(&event) })).await
}

fn generation_json(e: &UsageEvent) -> Value {
    json!({
        "id": e.request_id,
        "created_at_ms": e.created_at_ms,
        "model": e.model,
        "provider": e.provider,
        "upstream_model": e.upstream_model,
        "tokens_prompt": e.input_tokens,
        "tokens_completion": e.output_tokens,
        "tokens_cached": e.cached_input_tokens,
        "total_cost": e.cost.as_usd_f64(),
        "total_cost_usd": e.cost.to_decimal(),
        "latency_ms": e.duration_ms,
        "status": e.status,
        "streamed": e.streamed,
        "cancelled": e.cancelled,
        "usage_estimated": e.estimated,
        "requested_model": if e.route.is_empty() { &e.model } else { &e.route },
        "attempts": e.attempts,
    })
}

pub async fn credits(
    state: &ProxyState,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    let key = state.keys.authenticate(session.req_header()).await?;
    let internal = |e: String| ApiError::Internal(e);
    let balance = state
        .credit
        .balance(&key.account_id)
        .await
        .map_err(|e| internal(e.to_string()))?;
    let spent = state
        .keys
        .store()
        .account_spend(&key.account_id)
        .await
        .map_err(|e| internal(e.to_string()))?;
    let body = json!({
        "data": {
            "balance": balance.as_usd_f64(),
            "balance_usd": balance.to_decimal(),
            "total_usage": spent.as_usd_f64(),
            "total_usage_usd": spent.to_decimal(),
        }
    });
    send(session, ctx, body).await
}

pub async fn key(
    state: &ProxyState,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    let key = state.keys.authenticate(session.req_header()).await?;
    let internal = |e: String| ApiError::Internal(e);
    // In a fleet, the spend every node counts; else what this node counted; else the store.
    let fleet = match &state.shared {
        Some(book) if key.limits.has_spend_caps() => book.key_spent(&key.account_id, &key.id).await,
        _ => None,
    };
    let (today, month, total) = match fleet
        .map(|[day, month, total]| (day, month, total))
        .or_else(|| state.credit.key_spent(&key.id))
    {
        Some(spent) => spent,
        None => {
            let store = state.keys.store();
            let now = now_ms();
            let since = |ms| store.key_spend_since(&key.id, ms);
            (
                since(day_start_ms(now))
                    .await
                    .map_err(|e| internal(e.to_string()))?,
                since(month_start_ms(now))
                    .await
                    .map_err(|e| internal(e.to_string()))?,
                since(0).await.map_err(|e| internal(e.to_string()))?,
            )
        }
    };
    let body = json!({
        "data": {
            "id": key.id,
            "name": key.name,
            "prefix": key.display_prefix,
            "last_four": key.last_four,
            "created_at_ms": key.created_at_ms,
            "limits": limits_json(&key.limits),
            "spent": {
                "today_usd": today.to_decimal(),
                "this_month_usd": month.to_decimal(),
                "total_usd": total.to_decimal(),
            },
        }
    });
    send(session, ctx, body).await
}

async fn send(session: &mut Session, ctx: &mut RequestCtx, body: Value) -> Result<(), ApiError> {
    respond::json(session, ctx, 200, body.to_string().into_bytes())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))
}

fn limits_json(l: &KeyLimits) -> Value {
    let usd = |n: Option<NanoUsd>| n.map(NanoUsd::to_decimal);
    json!({
        "requests_per_minute": l.rpm,
        "tokens_per_minute": l.tpm,
        "spend_per_day_usd": usd(l.spend_per_day),
        "spend_per_month_usd": usd(l.spend_per_month),
        "spend_total_usd": usd(l.spend_total),
        "allowed_models": l.allowed_models,
    })
}
