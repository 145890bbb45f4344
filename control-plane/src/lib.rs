//! TokenRoute's control plane: the dashboard and its JSON API, served by axum.
//!
//! Today it serves the landing page and health; sign-in, keys, usage and top-ups
//! grow here (each HTTP module exposes a `router()` merged in [`router`]).

use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use tokenroute_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

const INDEX_HTML: &str = include_str!("../../dashboard/index.html");

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Serves until `shutdown` becomes true, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

async fn index() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-cache")], Html(INDEX_HTML))
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the store answers.
async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(_) => (axum::http::StatusCode::OK, "ready\n"),
        Err(_) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "store unreachable\n",
        ),
    }
}
