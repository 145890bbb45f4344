//! API keys of the signed-in account: create (shown once), list, rename, limits, revoke.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::extract::*;
use super::views::*;
use crate::error::{ApiError, ErrorBody};
use crate::session::SignedIn;
use crate::{actions, AppState};

/// The account's keys, newest first, revoked ones included.
#[utoipa::path(get, path = "/api/keys", tag = "keys",
    responses((status = 200, body = KeyList), (status = 401, body = ErrorBody)))]
pub async fn list(State(app): State<AppState>, user: SignedIn) -> Result<Json<KeyList>, ApiError> {
    let keys = app.store.keys_of_account(&user.account_id).await?;
    Ok(Json(KeyList {
        keys: keys.iter().map(KeyView::from).collect(),
    }))
}

/// Creates a key. Its secret is in this response and nowhere else, ever ([P13]).
#[utoipa::path(post, path = "/api/keys", tag = "keys", request_body = NewKeyRequest,
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create(
    State(app): State<AppState>,
    user: SignedIn,
    Body(request): Body<NewKeyRequest>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let limits = request
        .limits
        .unwrap_or_default()
        .into_limits(|m| app.config.model(m).is_some())?;
    let (record, secret) = actions::create_key(&app, &user, &request.name, limits).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: KeyView::from(&record),
            secret: secret.plaintext().to_string(),
        }),
    ))
}

/// Renames a key and/or replaces its limits.
#[utoipa::path(patch, path = "/api/keys/{id}", tag = "keys", request_body = UpdateKeyRequest,
    params(("id" = String, Path, description = "The key's id")),
    responses((status = 200, body = KeyView), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn update(
    State(app): State<AppState>,
    user: SignedIn,
    Path(key_id): Path<String>,
    Body(request): Body<UpdateKeyRequest>,
) -> Result<Json<KeyView>, ApiError> {
    let limits = request
        .limits
        .map(|l| l.into_limits(|m| app.config.model(m).is_some()))
        .transpose()?;
    let mut key =
        actions::update_key(&app, &user, &key_id, request.name.as_deref(), limits).await?;
    if let Some(debug) = request.debug {
        key = actions::set_key_debug(&app, &user, &key_id, debug).await?;
    }
    Ok(Json(KeyView::from(&key)))
}

/// Revokes a key for good: running proxies refuse it within `proxy.change-poll-ms`
/// (250 ms by default; at once with Redis), and its hash is kept forever so it can
/// never come back ([P17]).
#[utoipa::path(post, path = "/api/keys/{id}/revoke", tag = "keys",
    params(("id" = String, Path, description = "The key's id")),
    responses((status = 200, body = KeyView), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(app): State<AppState>,
    user: SignedIn,
    Path(key_id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    let key = actions::revoke_key(&app, &user, &key_id).await?;
    Ok(Json(KeyView::from(&key)))
}

/// The key's captured exchanges (request debugging, [P6]), newest first.
#[utoipa::path(get, path = "/api/keys/{id}/debug", tag = "keys",
    params(("id" = String, Path, description = "The key's id")),
    responses((status = 200, body = DebugLogList), (status = 404, body = ErrorBody)))]
pub async fn debug_logs(
    State(app): State<AppState>,
    user: SignedIn,
    Path(key_id): Path<String>,
) -> Result<Json<DebugLogList>, ApiError> {
    let (_, logs) = actions::key_debug_logs(&app, &user, &key_id).await?;
    Ok(Json(DebugLogList {
        debug_logs: logs.iter().map(DebugLogView::from).collect(),
    }))
}
