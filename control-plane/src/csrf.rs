//! CSRF protection for every state-changing request of a signed-in session.
//!
//! A synchronizer token: made at sign-in, kept in the server-side session, sent back
//! by the dashboard as the `x-csrf-token` header (JSON API) or the `csrf_token` field
//! (HTML forms). Written here rather than taken from a crate because the crates we
//! looked at (`axum_csrf`, `tower-csrf`) keep their token in a second cookie, and the
//! privacy notice promises exactly one ([P18]). SameSite=Lax already keeps the cookie
//! off cross-site POSTs; the token is the second line.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_sessions::Session;

use crate::error::ApiError;
use crate::session::{SignedIn, USER_KEY};

/// The header the JSON API carries the token in.
pub const HEADER: &str = "x-csrf-token";
/// The form field HTML forms carry it in.
pub const FORM_FIELD: &str = "csrf_token";
/// Forms bigger than this are refused before parsing.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// A new token: 256 random bits, base64url.
pub fn new_token() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Equal in time independent of where the strings differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Refuses a state-changing request of a signed-in session that lacks the token.
/// Requests without a signed-in session pass: they carry no authority to abuse, and the
/// handlers refuse them anyway.
pub async fn protect(session: Session, request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let user = match session.get::<SignedIn>(USER_KEY).await {
        Ok(Some(user)) => user,
        Ok(None) => return next.run(request).await,
        Err(e) => return ApiError::from(e).into_response(),
    };
    if let Some(sent) = request.headers().get(HEADER) {
        if sent.to_str().is_ok_and(|sent| same(sent, &user.csrf_token)) {
            return next.run(request).await;
        }
        return ApiError::Csrf.into_response();
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return ApiError::Csrf.into_response();
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => return ApiError::BadRequest("form too large".into()).into_response(),
    };
    let valid = url::form_urlencoded::parse(&bytes)
        .any(|(k, v)| k == FORM_FIELD && same(&v, &user.csrf_token));
    if !valid {
        return ApiError::Csrf.into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
