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
mod logto;
mod mailer;
mod oidc;
mod pages;
pub mod retention;
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
use tokenroute_store::access_log::{self, AccessLog};
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
    access_log: AccessLog,
    logto: Option<Arc<logto::Logto>>,
    mailer: Option<Arc<mailer::Mailer>>,
    requests: prometheus::IntCounterVec,
}

impl AppState {
    /// Builds the state; sign-in and top-ups are on when their config sections are.
    pub fn new(
        store: Store,
        config: Arc<Config>,
        access_log: AccessLog,
        registry: &prometheus::Registry,
    ) -> Result<AppState, String> {
        let requests = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "tokenroute_dashboard_requests_total",
                "Control-plane requests, by route, method and status.",
            ),
            &["route", "method", "status"],
        )
        .map_err(|e| e.to_string())?;
        registry
            .register(Box::new(requests.clone()))
            .map_err(|e| e.to_string())?;
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
        let logto = config
            .oidc
            .as_ref()
            .and_then(|o| o.management.clone())
            .map(|m| logto::Logto::new(m).map(Arc::new))
            .transpose()?;
        let mailer = config
            .email
            .as_ref()
            .map(|e| mailer::Mailer::new(e).map(Arc::new))
            .transpose()?;
        Ok(AppState {
            requests,
            mailer,
            logto,
            store,
            config,
            oidc,
            stripe,
            templates: Arc::new(web::Templates::new()?),
            access_log,
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
    let mut routes = Router::new()
        .merge(with_session)
        // Stripe authenticates by signature; it has no session and needs none.
        .route("/stripe/webhook", post(stripe::webhook::receive))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(axum::middleware::from_fn(web::security_headers));
    if secure {
        // Reached over HTTPS (here or at a terminator in front): browsers keep to it.
        routes = routes.layer(axum::middleware::from_fn(web::strict_transport));
    }
    routes
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            log_access,
        ))
        .with_state(state)
}

/// Serves until `shutdown` becomes true, then finishes in-flight requests — over TLS
/// with `tls` (HTTP/2 and HTTP/1.1 by ALPN), else plain HTTP. Also runs the retention
/// jobs ([`retention`]).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<()> {
    let sweeper = tokio::spawn(retention::schedule(
        state.store.clone(),
        state.config.clone(),
        state.access_log.dir().to_path_buf(),
        state.logto.clone(),
        state.mailer.clone(),
    ));
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = shutdown.wait_for(|stop| *stop).await;
                })
                .await
        }
        Some(tls) => {
            let handle = axum_server::Handle::new();
            let stopping = handle.clone();
            tokio::spawn(async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
                stopping.graceful_shutdown(Some(std::time::Duration::from_secs(30)));
            });
            let tls = axum_server::tls_rustls::RustlsConfig::from_config(tls);
            axum_server::from_tcp_rustls(listener.into_std()?, tls)?
                .handle(handle)
                .serve(app)
                .await
        }
    };
    sweeper.abort();
    served
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the store answers within 2 s.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "store unreachable\n"),
    }
}

/// One access-log line per request ([P5]): client IP (through trusted proxies), method,
/// URL with query values redacted (sign-in codes never reach the log), status, user agent.
async fn log_access(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let time_ms = tokenroute_domain::clock::now_ms();
    // Read everything before awaiting: a borrow of the request must not live across
    // the await (the body is not `Sync`).
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("other", |p| p.as_str())
        .to_string();
    let request_id = tokenroute_store::new_id();
    let client_request_id = access_log::client_request_id(
        request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
    );
    let (client_ip, user_agent, method, url) = {
        let peer = request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        (
            access_log::client_ip(
                peer,
                header("x-forwarded-for").as_deref(),
                &state.config.log.trusted_proxies,
            ),
            header("user-agent").unwrap_or_default(),
            request.method().to_string(),
            access_log::redact(
                request
                    .uri()
                    .path_and_query()
                    .map_or_else(|| request.uri().path(), |p| p.as_str()),
            ),
        )
    };
    let mut response = next.run(request).await;
    if let Ok(value) = axum::http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    state
        .requests
        .with_label_values(&[&route, &method, response.status().as_str()])
        .inc();
    state.access_log.write(access_log::AccessEntry {
        plane: "dashboard",
        time_ms,
        request_id,
        client_request_id,
        client_ip,
        method,
        url,
        status: response.status().as_u16(),
        user_agent,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    });
    response
}

impl AppState {
    /// After an account deletion: ask Logto to delete the user now, in the background
    /// (the hourly retention job retries what fails).
    fn forget_at_identity_provider(&self) {
        if let Some(logto) = self.logto.clone() {
            let store = self.store.clone();
            tokio::spawn(async move {
                logto::delete_pending(&store, &logto, tokenroute_domain::clock::now_ms()).await;
            });
        }
    }
}

impl AppState {
    /// After a policy change is announced: email it now, in the background (the hourly
    /// retention job retries what fails).
    fn email_policy_changes(&self) {
        if let Some(mailer) = self.mailer.clone() {
            let store = self.store.clone();
            let public_url = self.config.control_plane.public_url.clone();
            tokio::spawn(async move {
                mailer::email_policy_changes(
                    &store,
                    &mailer,
                    &public_url,
                    tokenroute_domain::clock::now_ms(),
                )
                .await;
            });
        }
    }
}
