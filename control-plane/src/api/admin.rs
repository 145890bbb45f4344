//! Admin endpoints (`/api/admin/...`): accounts, credit adjustments, ending sessions,
//! the audit log. Every change is written to the audit log.

use axum::extract::{Path, State};
use axum::Json;

use super::account::Page;
use super::extract::*;
use super::views::*;
use crate::error::{ApiError, ErrorBody};
use crate::session::Admin;
use crate::{actions, AppState};

/// Accounts, newest first, with balances.
#[utoipa::path(get, path = "/api/admin/accounts", tag = "admin", params(Page),
    responses((status = 200, body = AccountList), (status = 403, body = ErrorBody)))]
pub async fn accounts(
    State(app): State<AppState>,
    _admin: Admin,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<AccountList>, ApiError> {
    let accounts = app.store.list_accounts(page.limit(), 0).await?;
    Ok(Json(AccountList {
        accounts: accounts
            .iter()
            .map(|a| AccountSummaryView {
                account: AccountView::from(&a.account),
                balance_usd: usd(a.balance),
            })
            .collect(),
    }))
}

/// Credits (or debits) an account with a reason: an `adjustment` ledger entry.
#[utoipa::path(post, path = "/api/admin/accounts/{id}/credit", tag = "admin",
    request_body = CreditRequest,
    params(("id" = String, Path, description = "The account's id")),
    responses((status = 200, body = CreditView), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn credit(
    State(app): State<AppState>,
    Admin(admin): Admin,
    Path(account_id): Path<String>,
    Body(request): Body<CreditRequest>,
) -> Result<Json<CreditView>, ApiError> {
    let credited = actions::admin_credit(
        &app,
        &admin,
        &account_id,
        &request.amount_usd,
        &request.reason,
        request.idempotency_key.as_deref(),
    )
    .await?;
    Ok(Json(CreditView {
        booked: credited.booked,
        reference: credited.reference,
        balance_usd: usd(credited.balance),
    }))
}

/// Ends every dashboard session of the account ([P18]).
#[utoipa::path(post, path = "/api/admin/accounts/{id}/sessions/end", tag = "admin",
    params(("id" = String, Path, description = "The account's id")),
    responses((status = 200, body = EndedSessions), (status = 403, body = ErrorBody)))]
pub async fn end_sessions(
    State(app): State<AppState>,
    Admin(admin): Admin,
    Path(account_id): Path<String>,
) -> Result<Json<EndedSessions>, ApiError> {
    let ended = actions::admin_end_sessions(&app, &admin, &account_id).await?;
    Ok(Json(EndedSessions { ended }))
}

/// The most recent admin actions.
#[utoipa::path(get, path = "/api/admin/audit", tag = "admin", params(Page),
    responses((status = 200, body = AuditList), (status = 403, body = ErrorBody)))]
pub async fn audit(
    State(app): State<AppState>,
    _admin: Admin,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<AuditList>, ApiError> {
    let actions = app.store.admin_actions(page.limit()).await?;
    Ok(Json(AuditList {
        actions: actions.iter().map(AdminActionView::from).collect(),
    }))
}

/// Suspends an account: its keys are refused until it is unsuspended.
#[utoipa::path(post, path = "/api/admin/accounts/{id}/suspend", tag = "admin",
    params(("id" = String, Path, description = "The account's id")),
    responses((status = 200, body = Done), (status = 404, body = ErrorBody)))]
pub async fn suspend_account(
    State(app): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Json<Done>, ApiError> {
    actions::admin_set_account_suspended(&app, &admin, &id, true).await?;
    Ok(Json(Done { done: true }))
}

#[utoipa::path(post, path = "/api/admin/accounts/{id}/unsuspend", tag = "admin",
    params(("id" = String, Path, description = "The account's id")),
    responses((status = 200, body = Done), (status = 404, body = ErrorBody)))]
pub async fn unsuspend_account(
    State(app): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Json<Done>, ApiError> {
    actions::admin_set_account_suspended(&app, &admin, &id, false).await?;
    Ok(Json(Done { done: true }))
}

/// Suspends one key (the proxy answers 403 `key_suspended`).
#[utoipa::path(post, path = "/api/admin/keys/{id}/suspend", tag = "admin",
    params(("id" = String, Path, description = "The key's id")),
    responses((status = 200, body = KeyView), (status = 404, body = ErrorBody)))]
pub async fn suspend_key(
    State(app): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    let key = actions::admin_set_key_suspended(&app, &admin, &id, true).await?;
    Ok(Json(KeyView::from(&key)))
}

#[utoipa::path(post, path = "/api/admin/keys/{id}/unsuspend", tag = "admin",
    params(("id" = String, Path, description = "The key's id")),
    responses((status = 200, body = KeyView), (status = 404, body = ErrorBody)))]
pub async fn unsuspend_key(
    State(app): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    let key = actions::admin_set_key_suspended(&app, &admin, &id, false).await?;
    Ok(Json(KeyView::from(&key)))
}

/// Deletes an account with a reason (e.g. reported as a minor's, [P20]).
#[utoipa::path(post, path = "/api/admin/accounts/{id}/delete", tag = "admin",
    request_body = ReasonRequest,
    params(("id" = String, Path, description = "The account's id")),
    responses((status = 200, body = Done), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn delete_account(
    State(app): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    Body(request): Body<ReasonRequest>,
) -> Result<Json<Done>, ApiError> {
    actions::admin_delete_account(&app, &admin, &id, &request.reason).await?;
    Ok(Json(Done { done: true }))
}

/// Every announcement, retired ones included.
#[utoipa::path(get, path = "/api/admin/announcements", tag = "admin",
    responses((status = 200, body = AnnouncementList), (status = 403, body = ErrorBody)))]
pub async fn announcements(
    State(app): State<AppState>,
    _admin: Admin,
) -> Result<Json<AnnouncementList>, ApiError> {
    let all = app.store.announcements().await?;
    Ok(Json(AnnouncementList {
        announcements: all.iter().map(AnnouncementView::from).collect(),
    }))
}

/// Publishes a banner; a policy change must take effect 14 or more days ahead ([P21]).
#[utoipa::path(post, path = "/api/admin/announcements", tag = "admin",
    request_body = AnnounceRequest,
    responses((status = 200, body = AnnouncementView), (status = 400, body = ErrorBody)))]
pub async fn announce(
    State(app): State<AppState>,
    Admin(admin): Admin,
    Body(request): Body<AnnounceRequest>,
) -> Result<Json<AnnouncementView>, ApiError> {
    let at =
        |field: &str, v: &Option<String>| v.as_deref().map(|t| parse_time(field, t)).transpose();
    let created = actions::admin_announce(
        &app,
        &admin,
        &request.kind,
        &request.message,
        at("starts_at", &request.starts_at)?,
        at("ends_at", &request.ends_at)?,
        at("effective_at", &request.effective_at)?,
    )
    .await?;
    Ok(Json(AnnouncementView::from(&created)))
}

#[utoipa::path(post, path = "/api/admin/announcements/{id}/retire", tag = "admin",
    params(("id" = String, Path, description = "The announcement's id")),
    responses((status = 200, body = Done), (status = 404, body = ErrorBody)))]
pub async fn retire(
    State(app): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Json<Done>, ApiError> {
    actions::admin_retire_announcement(&app, &admin, &id).await?;
    Ok(Json(Done { done: true }))
}
