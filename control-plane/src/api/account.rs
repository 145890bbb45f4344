//! The signed-in account: who am I, usage, ledger.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::extract::*;
use super::views::*;
use crate::error::{ApiError, ErrorBody};
use crate::session::SignedIn;
use crate::{actions, AppState};

#[derive(Debug, Deserialize, IntoParams)]
pub struct Page {
    /// At most this many rows (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// Which usage rows: filters and a page.
#[derive(Debug, Deserialize, IntoParams)]
pub struct UsageQuery {
    /// At most this many rows (default 100, at most 1000).
    pub limit: Option<i64>,
    /// Skip this many (newest first).
    pub offset: Option<i64>,
    pub key_id: Option<String>,
    pub model: Option<String>,
    /// From this time (RFC 3339 or YYYY-MM-DD, inclusive).
    pub from: Option<String>,
    /// Until this time (RFC 3339 or YYYY-MM-DD, exclusive).
    pub to: Option<String>,
}

impl Page {
    pub fn limit(&self) -> i64 {
        self.limit.unwrap_or(100).clamp(1, 1000)
    }
}

/// The signed-in account, its balance and the CSRF token.
#[utoipa::path(get, path = "/api/me", tag = "account",
    responses((status = 200, body = MeView), (status = 401, body = ErrorBody)))]
pub async fn me(State(app): State<AppState>, user: SignedIn) -> Result<Json<MeView>, ApiError> {
    let account = app
        .store
        .account(&user.account_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    let balance = app.store.balance(&account.id).await?;
    Ok(Json(MeView {
        account: AccountView::from(&account),
        balance_usd: usd(balance),
        is_admin: user.is_admin,
        csrf_token: user.csrf_token,
    }))
}

/// Metered requests, newest first, filtered ([P3]: metadata only).
#[utoipa::path(get, path = "/api/usage", tag = "account", params(UsageQuery),
    responses((status = 200, body = UsageList), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)))]
pub async fn usage(
    State(app): State<AppState>,
    user: SignedIn,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<Json<UsageList>, ApiError> {
    let filter = tokenroute_store::UsageFilter {
        key_id: q.key_id.clone(),
        model: q.model.clone(),
        from_ms: q
            .from
            .as_deref()
            .map(|t| parse_time("from", t))
            .transpose()?,
        to_ms: q.to.as_deref().map(|t| parse_time("to", t)).transpose()?,
    };
    let rows = app
        .store
        .usage_page(
            &user.account_id,
            &filter,
            q.limit.unwrap_or(100).clamp(1, 1000),
            q.offset.unwrap_or(0).max(0),
        )
        .await?;
    Ok(Json(UsageList {
        usage: rows.iter().map(UsageView::from).collect(),
    }))
}

/// The credit ledger, newest first, and the balance (the ledger's sum).
#[utoipa::path(get, path = "/api/ledger", tag = "account", params(Page),
    responses((status = 200, body = LedgerList), (status = 401, body = ErrorBody)))]
pub async fn ledger(
    State(app): State<AppState>,
    user: SignedIn,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<LedgerList>, ApiError> {
    let entries = app.store.ledger(&user.account_id, page.limit()).await?;
    let balance = app.store.balance(&user.account_id).await?;
    Ok(Json(LedgerList {
        balance_usd: usd(balance),
        entries: entries.iter().map(LedgerView::from).collect(),
    }))
}

/// Corrects the display name ([P19]).
#[utoipa::path(patch, path = "/api/me", tag = "account", request_body = UpdateMeRequest,
    responses((status = 200, body = MeView), (status = 400, body = ErrorBody)))]
pub async fn update_me(
    State(app): State<AppState>,
    user: SignedIn,
    Body(request): Body<UpdateMeRequest>,
) -> Result<Json<MeView>, ApiError> {
    actions::set_display_name(&app, &user, &request.display_name).await?;
    me(State(app), user).await
}

/// Everything held about the account, as one JSON document ([P19]).
#[utoipa::path(get, path = "/api/me/export", tag = "account",
    responses((status = 200, description = "account, keys, usage, ledger, top-ups"),
              (status = 401, body = ErrorBody)))]
pub async fn export(
    State(app): State<AppState>,
    user: SignedIn,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(actions::export(&app, &user).await?))
}

/// Deletes the account: keys revoked, sessions ended ([P19]); `confirm` is its email.
#[utoipa::path(post, path = "/api/me/delete", tag = "account", request_body = DeleteMeRequest,
    responses((status = 200, body = Done), (status = 400, body = ErrorBody)))]
pub async fn delete_me(
    State(app): State<AppState>,
    user: SignedIn,
    session: tower_sessions::Session,
    Body(request): Body<DeleteMeRequest>,
) -> Result<Json<Done>, ApiError> {
    actions::delete_own_account(&app, &user, &request.confirm).await?;
    session.flush().await?;
    Ok(Json(Done { done: true }))
}

/// The banners shown now.
#[utoipa::path(get, path = "/api/announcements", tag = "account",
    responses((status = 200, body = AnnouncementList)))]
pub async fn announcements(
    State(app): State<AppState>,
    _user: SignedIn,
) -> Result<Json<AnnouncementList>, ApiError> {
    let live = app
        .store
        .live_announcements(tokenroute_domain::clock::now_ms())
        .await?;
    Ok(Json(AnnouncementList {
        announcements: live.iter().map(AnnouncementView::from).collect(),
    }))
}
