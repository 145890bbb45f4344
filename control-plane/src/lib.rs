//! TokenRoute's control plane, served by axum: sign-in through Logto (OpenID Connect),
//! server-side sessions, the JSON API for accounts, keys, usage and top-ups, the Stripe
//! webhook, and the admin endpoints.
//!
//! Each HTTP module exposes a `router()`; [`router`] merges them and adds the session
//! and CSRF layers.

mod actions;
mod api;
mod auth;
mod csrf;
mod error;
mod oidc;
mod pages;
mod session;
pub mod stripe;
mod web;

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use tokenroute_domain::config::Config;
use tokenroute_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use error::ApiError;
pub use session::COOKIE_NAME;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<Config>,
    oidc: Option<Arc<oidc::Oidc>>,
    stripe: Option<Arc<stripe::Stripe>>,
    templates: Arc<web::Templates>,
}

impl AppState {
    /// Builds the state; sign-in and top-ups are on when their config sections are.
    pub fn new(store: Store, config: Arc<Config>) -> Result<AppState, String> {
        let oidc = config
            .oidc
            .clone()
            .map(|c| oidc::Oidc::new(c, &config.control_plane.public_url).map(Arc::new))
            .transpose()?;
        let stripe = config
            .stripe
            .clone()
            .map(|c| stripe::Stripe::new(c).map(Arc::new))
            .transpose()?;
        Ok(AppState {
            store,
            config,
            oidc,
            stripe,
            templates: Arc::new(web::Templates::new()?),
        })
    }
}

pub fn router(state: AppState) -> Router {
    let secure = state.config.control_plane.secure_cookies();
    let with_session = Router::new()
        .route("/billing/checkout", post(api::billing::checkout_form))
        .route("/billing/success", get(api::billing::success))
        .route("/billing/cancel", get(api::billing::cancelled))
        .merge(auth::router())
        .merge(api::router())
        .merge(web::router())
        .layer(axum::middleware::from_fn(csrf::protect))
        .layer(session::layer(state.store.clone(), secure));
    Router::new()
        .merge(with_session)
        // Stripe authenticates by signature; it has no session and needs none.
        .route("/stripe/webhook", post(stripe::webhook::receive))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(axum::middleware::from_fn(web::security_headers))
        .with_state(state)
}

/// Serves until `shutdown` becomes true, then finishes in-flight requests. Also deletes
/// expired sessions and debug logs past their 7 days once an hour.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let store = state.store.clone();
    let sweeper = tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            every.tick().await;
            let now = tokenroute_domain::clock::now_ms();
            if let Err(e) = store.delete_expired_web_sessions(now).await {
                tracing::warn!(error = %e, "deleting expired sessions failed");
            }
            // The proxy purges too; either plane alone keeps the 7-day promise ([P6]).
            if let Err(e) = store.purge_debug_logs(now).await {
                tracing::warn!(error = %e, "purging debug logs failed");
            }
        }
    });
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await;
    sweeper.abort();
    served
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the store answers.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(_) => (StatusCode::OK, "ready\n"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store unreachable\n"),
    }
}
