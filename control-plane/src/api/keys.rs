//! API keys of the signed-in account: create (shown once), list, rename, limits, revoke.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use tokenroute_domain::ApiKey;
use tokenroute_store::{KeyRecord, NewKey};

use super::extract::*;
use super::views::*;
use crate::error::{ApiError, ErrorBody};
use crate::session::SignedIn;
use crate::AppState;

const MAX_NAME_CHARS: usize = 100;

fn valid_name(name: &str) -> Result<&str, ApiError> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(ApiError::BadRequest(format!(
            "name must be 1 to {MAX_NAME_CHARS} printable characters"
        )));
    }
    Ok(name)
}

/// The key, if it is the signed-in account's (someone else's is "not found", not
/// "forbidden": key ids of other accounts are not confirmed to exist).
async fn own_key(app: &AppState, user: &SignedIn, key_id: &str) -> Result<KeyRecord, ApiError> {
    app.store
        .key_by_id(key_id)
        .await?
        .filter(|k| k.account_id == user.account_id)
        .ok_or_else(|| ApiError::NotFound(format!("no key {key_id}")))
}

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
    let name = valid_name(&request.name)?;
    let limits = request
        .limits
        .unwrap_or_default()
        .into_limits(|m| app.config.model(m).is_some())?;
    let secret = ApiKey::generate();
    let record = app
        .store
        .create_key(
            &NewKey {
                account_id: &user.account_id,
                name,
                limits,
            },
            &secret,
        )
        .await?;
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
    let key = own_key(&app, &user, &key_id).await?;
    if key.revoked_at_ms.is_some() {
        return Err(ApiError::Conflict("a revoked key cannot be changed".into()));
    }
    if let Some(name) = &request.name {
        app.store.rename_key(&key.id, valid_name(name)?).await?;
    }
    if let Some(limits) = request.limits {
        let limits = limits.into_limits(|m| app.config.model(m).is_some())?;
        app.store.set_key_limits(&key.id, &limits).await?;
    }
    Ok(Json(KeyView::from(&own_key(&app, &user, &key_id).await?)))
}

/// Revokes a key for good: the proxy refuses it within `proxy.key-cache-ttl-ms` (1 s by
/// default), and its hash is kept forever so it can never come back ([P17]).
#[utoipa::path(post, path = "/api/keys/{id}/revoke", tag = "keys",
    params(("id" = String, Path, description = "The key's id")),
    responses((status = 200, body = KeyView), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(app): State<AppState>,
    user: SignedIn,
    Path(key_id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    let key = own_key(&app, &user, &key_id).await?;
    app.store.revoke_key(&key.id).await?;
    Ok(Json(KeyView::from(&own_key(&app, &user, &key_id).await?)))
}
