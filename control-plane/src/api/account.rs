//! The signed-in account: who am I, usage, ledger.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::extract::*;
use super::views::*;
use crate::error::{ApiError, ErrorBody};
use crate::session::SignedIn;
use crate::AppState;

#[derive(Debug, Deserialize, IntoParams)]
pub struct Page {
    /// At most this many rows (default 100, at most 1000).
    pub limit: Option<i64>,
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

/// Metered requests, newest first ([P3]: metadata only).
#[utoipa::path(get, path = "/api/usage", tag = "account", params(Page),
    responses((status = 200, body = UsageList), (status = 401, body = ErrorBody)))]
pub async fn usage(
    State(app): State<AppState>,
    user: SignedIn,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<UsageList>, ApiError> {
    let rows = app
        .store
        .usage_of_account(&user.account_id, page.limit())
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
