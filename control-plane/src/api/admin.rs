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
