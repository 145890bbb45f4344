//! The JSON API under `/api`: everything the dashboard does, for scripts too. Errors
//! are `{"error": {"code", "message"}}`; the OpenAPI document is `/api/openapi.json`.

mod account;
mod admin;
pub mod billing;
mod extract;
mod keys;
pub(crate) mod views;

use axum::routing::{get, patch, post};
use axum::{Json, Router};
use utoipa::OpenApi;

use crate::error::ApiError;
use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "TokenRoute control plane API",
        description = "The dashboard's JSON API. Authenticate by signing in (session cookie); \
                       send the `csrf_token` from GET /api/me as `x-csrf-token` with every \
                       POST, PATCH and DELETE."
    ),
    paths(
        account::me, account::update_me, account::export, account::delete_me,
        account::usage, account::ledger, account::announcements,
        keys::list, keys::create, keys::update, keys::revoke, keys::debug_logs,
        billing::checkout, billing::topups,
        admin::accounts, admin::credit, admin::end_sessions, admin::audit,
        admin::suspend_account, admin::unsuspend_account, admin::suspend_key,
        admin::unsuspend_key, admin::delete_account, admin::announcements, admin::announce,
        admin::retire,
    ),
    tags(
        (name = "account", description = "The signed-in account"),
        (name = "keys", description = "API keys"),
        (name = "billing", description = "Stripe top-ups"),
        (name = "admin", description = "Admins only"),
    )
)]
struct ApiDoc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/api/me", get(account::me).patch(account::update_me))
        .route("/api/me/export", get(account::export))
        .route("/api/me/delete", post(account::delete_me))
        .route("/api/announcements", get(account::announcements))
        .route("/api/usage", get(account::usage))
        .route("/api/ledger", get(account::ledger))
        .route("/api/keys", get(keys::list).post(keys::create))
        .route("/api/keys/{id}", patch(keys::update))
        .route("/api/keys/{id}/revoke", post(keys::revoke))
        .route("/api/keys/{id}/debug", get(keys::debug_logs))
        .route("/api/billing/checkout", post(billing::checkout))
        .route("/api/topups", get(billing::topups))
        .route("/api/admin/accounts", get(admin::accounts))
        .route("/api/admin/accounts/{id}/credit", post(admin::credit))
        .route(
            "/api/admin/accounts/{id}/sessions/end",
            post(admin::end_sessions),
        )
        .route("/api/admin/audit", get(admin::audit))
        .route(
            "/api/admin/accounts/{id}/suspend",
            post(admin::suspend_account),
        )
        .route(
            "/api/admin/accounts/{id}/unsuspend",
            post(admin::unsuspend_account),
        )
        .route(
            "/api/admin/accounts/{id}/delete",
            post(admin::delete_account),
        )
        .route("/api/admin/keys/{id}/suspend", post(admin::suspend_key))
        .route("/api/admin/keys/{id}/unsuspend", post(admin::unsuspend_key))
        .route(
            "/api/admin/announcements",
            get(admin::announcements).post(admin::announce),
        )
        .route("/api/admin/announcements/{id}/retire", post(admin::retire))
        .route("/api/{*rest}", axum::routing::any(not_found))
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such API endpoint".into())
}
