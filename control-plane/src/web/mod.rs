//! The dashboard and admin console: server-rendered pages (minijinja templates from
//! `dashboard/templates`, compiled into the binary) whose every core action is a plain
//! HTML form, so they work without JavaScript; `dashboard/static/app.js` only adds copy
//! buttons. Nothing comes from another origin ([P7]): see [`security_headers`].

mod admin;
mod charts;
mod forms;
mod user;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::{context, Environment, Value};
use serde::Serialize;

use crate::error::ApiError;
use crate::session::SignedIn;
use crate::AppState;

/// Every template, by name (`include_str!` keeps `cargo build` the only build step).
const TEMPLATES: &[(&str, &str)] = &[
    (
        "base.html",
        include_str!("../../../dashboard/templates/base.html"),
    ),
    (
        "landing.html",
        include_str!("../../../dashboard/templates/landing.html"),
    ),
    (
        "overview.html",
        include_str!("../../../dashboard/templates/overview.html"),
    ),
    (
        "keys.html",
        include_str!("../../../dashboard/templates/keys.html"),
    ),
    (
        "limits_fields.html",
        include_str!("../../../dashboard/templates/limits_fields.html"),
    ),
    (
        "key_created.html",
        include_str!("../../../dashboard/templates/key_created.html"),
    ),
    (
        "key_revoke.html",
        include_str!("../../../dashboard/templates/key_revoke.html"),
    ),
    (
        "key_debug.html",
        include_str!("../../../dashboard/templates/key_debug.html"),
    ),
    (
        "usage.html",
        include_str!("../../../dashboard/templates/usage.html"),
    ),
    (
        "credits.html",
        include_str!("../../../dashboard/templates/credits.html"),
    ),
    (
        "account.html",
        include_str!("../../../dashboard/templates/account.html"),
    ),
    (
        "account_delete.html",
        include_str!("../../../dashboard/templates/account_delete.html"),
    ),
    (
        "admin_nav.html",
        include_str!("../../../dashboard/templates/admin_nav.html"),
    ),
    (
        "admin_accounts.html",
        include_str!("../../../dashboard/templates/admin_accounts.html"),
    ),
    (
        "admin_account.html",
        include_str!("../../../dashboard/templates/admin_account.html"),
    ),
    (
        "admin_models.html",
        include_str!("../../../dashboard/templates/admin_models.html"),
    ),
    (
        "admin_announcements.html",
        include_str!("../../../dashboard/templates/admin_announcements.html"),
    ),
    (
        "admin_audit.html",
        include_str!("../../../dashboard/templates/admin_audit.html"),
    ),
];

const APP_CSS: &str = include_str!("../../../dashboard/static/app.css");
const APP_JS: &str = include_str!("../../../dashboard/static/app.js");

/// The compiled templates.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    pub fn new() -> Result<Templates, String> {
        let mut env = Environment::new();
        // A missing optional field renders empty instead of failing the page.
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .map_err(|e| format!("template {name}: {e}"))?;
        }
        Ok(Templates { env })
    }

    fn render(&self, name: &str, ctx: Value) -> Result<String, WebError> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|e| WebError::Internal(format!("rendering {name}: {e:#}")))
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(user::overview))
        .route("/keys", get(user::keys).post(user::create_key))
        .route("/keys/{id}/rename", post(user::rename_key))
        .route("/keys/{id}/limits", post(user::set_limits))
        .route(
            "/keys/{id}/revoke",
            get(user::confirm_revoke).post(user::revoke_key),
        )
        .route(
            "/keys/{id}/debug",
            get(user::debug_log).post(user::set_debug),
        )
        .route("/usage", get(user::usage))
        .route("/usage.csv", get(user::usage_csv))
        .route("/credits", get(user::credits))
        .route("/account", get(user::account))
        .route("/account/name", post(user::set_name))
        .route("/account/export", get(user::export))
        .route(
            "/account/delete",
            get(user::confirm_delete).post(user::delete),
        )
        .merge(admin::router())
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
}

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        APP_CSS,
    )
}

async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        APP_JS,
    )
}

/// Headers on every control-plane response: a strict Content-Security-Policy (only
/// this origin; no inline script or style, so no injected markup can run), no framing,
/// no sniffing, and no referrer to other sites.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    };
    set(
        headers,
        "content-security-policy",
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    );
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "x-frame-options", "DENY");
    set(headers, "referrer-policy", "same-origin");
    response
}

/// `Strict-Transport-Security` for a dashboard reached over HTTPS: a year, subdomains
/// included, so a browser that has been here never tries plain HTTP again.
pub async fn strict_transport(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .entry("strict-transport-security")
        .or_insert(HeaderValue::from_static(
            "max-age=31536000; includeSubDomains",
        ));
    response
}

/// Why a page could not be shown.
#[derive(Debug)]
pub enum WebError {
    /// Not signed in: go and sign in.
    SignIn,
    Status(StatusCode, String),
    Internal(String),
}

impl From<ApiError> for WebError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Unauthenticated => WebError::SignIn,
            ApiError::Internal(m) => WebError::Internal(m),
            other => {
                let status = other.clone_status();
                WebError::Status(status, other.to_string())
            }
        }
    }
}

impl From<tokenroute_store::StoreError> for WebError {
    fn from(e: tokenroute_store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::SignIn => Redirect::to("/auth/login").into_response(),
            WebError::Status(status, message) => crate::pages::message(
                status,
                status.canonical_reason().unwrap_or("Error"),
                &message,
            ),
            WebError::Internal(detail) => {
                tracing::error!(%detail, "dashboard page failed");
                crate::pages::message(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The error was logged. Please try again.",
                )
            }
        }
    }
}

/// The signed-in user of a page (pages redirect to sign-in; the API answers 401).
pub struct PageUser(pub SignedIn);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PageUser {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        SignedIn::from_request_parts(parts, state)
            .await
            .map(PageUser)
            .map_err(WebError::from)
    }
}

/// A signed-in admin's page.
pub struct PageAdmin(pub SignedIn);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PageAdmin {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let PageUser(user) = PageUser::from_request_parts(parts, state).await?;
        if !user.is_admin {
            return Err(WebError::Status(
                StatusCode::FORBIDDEN,
                "This page is for admins.".into(),
            ));
        }
        Ok(PageAdmin(user))
    }
}

#[derive(Serialize)]
struct Banner {
    kind: String,
    message: String,
    effective: Option<String>,
}

/// What every page shows: who is signed in, the banners, a flash message.
pub struct Page<'a> {
    pub template: &'a str,
    pub title: &'a str,
    pub nav: &'a str,
    pub flash: Option<String>,
    pub error: Option<String>,
}

impl Page<'_> {
    pub async fn render(
        self,
        app: &AppState,
        user: Option<&SignedIn>,
        ctx: Value,
    ) -> Result<Response, WebError> {
        let banners: Vec<Banner> = app
            .store
            .live_announcements(tokenroute_domain::clock::now_ms())
            .await?
            .into_iter()
            .map(|a| Banner {
                kind: a.kind,
                message: a.message,
                effective: a.effective_at_ms.map(forms::date),
            })
            .collect();
        let ctx = context! {
            title => self.title,
            nav => self.nav,
            flash => self.flash,
            error => self.error,
            announcements => banners,
            user => user.map(|u| context! { email => u.email.clone(), is_admin => u.is_admin }),
            csrf => user.map(|u| u.csrf_token.clone()),
            ..ctx
        };
        let html = app.templates.render(self.template, ctx)?;
        Ok(([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response())
    }
}

/// Where a form goes after it worked: back to `path` with a message code.
pub fn done(path: &str, code: &str) -> Response {
    let sep = if path.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{path}{sep}done={code}")).into_response()
}

/// The message of a `?done=` code (fixed texts: nothing from the URL is echoed).
pub fn flash(code: Option<&str>) -> Option<String> {
    let text = match code? {
        "renamed" => "The key was renamed.",
        "limits" => "The key's limits were saved.",
        "revoked" => "The key was revoked. It stops working within a second.",
        "debug-on" => "Request debugging is on: bodies are kept for 7 days.",
        "debug-off" => "Request debugging is off.",
        "name" => "Your display name was saved.",
        "credited" => "The adjustment was booked.",
        "suspended" => "Suspended.",
        "unsuspended" => "Unsuspended.",
        "sessions" => "All sessions of the account were ended.",
        "deleted" => "The account was deleted.",
        "announced" => "The announcement was published.",
        "retired" => "The announcement was retired.",
        _ => return None,
    };
    Some(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_in_the_folder_is_compiled_in() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboard/templates");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut known: Vec<String> = TEMPLATES.iter().map(|(n, _)| n.to_string()).collect();
        known.sort();
        assert_eq!(on_disk, known);
    }

    #[test]
    fn the_debug_log_page_renders() {
        let t = Templates::new().unwrap();
        let html = t
            .render(
                "key_debug.html",
                context! {
                    title => "Debug log",
                    key => context! { name => "k", prefix => "tr-ab", last_four => "wxyz", debug => true },
                    logs => vec![context! { time => "t", model => "m", status => 200, request_id => "r",
                        request_body => "<b>hi</b>", response_body => "ok", truncated => false }],
                },
            )
            .unwrap();
        assert!(
            html.contains("&lt;b&gt;hi&lt;"),
            "bodies are escaped: {html}"
        );
        assert!(!html.contains("<b>hi"));
    }
}
