//! Sign-in and sign-out pages: `/auth/login`, `/auth/callback`, `/auth/logout`.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use tower_sessions::Session;

use crate::oidc::{Identity, PendingSignIn, SignInError};
use crate::pages;
use crate::session::{expiry_in, SignedIn, LOGIN_KEY, SIGNED_IN_FOR, SIGN_IN_WINDOW, USER_KEY};
use crate::{csrf, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/logout", post(logout))
}

/// Starts a sign-in: remembers state, nonce and PKCE verifier in the session and sends
/// the browser to the identity provider.
async fn login(State(app): State<AppState>, session: Session) -> Response {
    let Some(oidc) = app.oidc.as_ref() else {
        return pages::message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in is not configured",
            "This TokenRoute has no [oidc] section in its configuration.",
        );
    };
    if let Ok(Some(_)) = session.get::<SignedIn>(USER_KEY).await {
        return Redirect::to("/").into_response();
    }
    let (url, pending) = match oidc.start().await {
        Ok(started) => started,
        Err(e) => return failed(&e),
    };
    if let Err(e) = session.insert(LOGIN_KEY, &pending).await {
        return crate::error::ApiError::from(e).into_response();
    }
    session.set_expiry(Some(expiry_in(SIGN_IN_WINDOW)));
    Redirect::to(url.as_str()).into_response()
}

#[derive(Debug, Deserialize)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The provider sends the browser back here with `code` and `state`.
async fn callback(
    State(app): State<AppState>,
    session: Session,
    Query(params): Query<CallbackParams>,
) -> Response {
    let Some(oidc) = app.oidc.as_ref() else {
        return Redirect::to("/auth/login").into_response();
    };
    // The pending sign-in is used once, whatever happens next.
    let pending = match session.remove::<PendingSignIn>(LOGIN_KEY).await {
        Ok(Some(p)) => p,
        Ok(None) => return failed(&SignInError::NoPendingSignIn),
        Err(e) => return crate::error::ApiError::from(e).into_response(),
    };
    if !params
        .state
        .as_deref()
        .is_some_and(|s| csrf::same(s, &pending.state))
    {
        return failed(&SignInError::StateMismatch);
    }
    if let Some(error) = params.error {
        let detail = params.error_description.unwrap_or_default();
        return failed(&SignInError::ProviderError(
            format!("{error} {detail}").trim().to_string(),
        ));
    }
    let Some(code) = params.code else {
        return failed(&SignInError::CodeExchange("no code in the callback".into()));
    };
    let identity = match oidc.finish(&pending, &code).await {
        Ok(identity) => identity,
        Err(e) => return failed(&e),
    };
    match sign_in(&app, &session, identity).await {
        Ok(()) => Redirect::to("/").into_response(),
        Err(response) => response,
    }
}

/// Records the sign-in ([P2]) and turns the session into a signed-in one, under a new
/// id (so an id planted before sign-in is worthless after it).
async fn sign_in(app: &AppState, session: &Session, identity: Identity) -> Result<(), Response> {
    let internal = |e: String| crate::error::ApiError::Internal(e).into_response();
    let account = app
        .store
        .record_sign_in(
            &identity.email,
            identity.name.as_deref(),
            Some(&identity.subject),
        )
        .await
        .map_err(|e| internal(e.to_string()))?;
    if account.status == "deleted" {
        return Err(pages::message(
            StatusCode::FORBIDDEN,
            "This account was deleted",
            "Contact the operator if you think this is a mistake.",
        ));
    }
    let is_admin = app
        .config
        .control_plane
        .admin_emails
        .contains(&identity.email)
        || app
            .oidc
            .as_ref()
            .and_then(|o| o.admin_role())
            .is_some_and(|role| identity.roles.iter().any(|r| r == role));
    session
        .cycle_id()
        .await
        .map_err(|e| internal(e.to_string()))?;
    let user = SignedIn {
        account_id: account.id,
        email: account.email,
        is_admin,
        csrf_token: csrf::new_token(),
        id_token: Some(identity.id_token),
    };
    session
        .insert(USER_KEY, &user)
        .await
        .map_err(|e| internal(e.to_string()))?;
    session.set_expiry(Some(expiry_in(SIGNED_IN_FOR)));
    tracing::info!(account = %user.account_id, admin = is_admin, "signed in");
    Ok(())
}

/// Ends the session here (server-side: the cookie is worthless from now on) and then
/// at the identity provider.
async fn logout(State(app): State<AppState>, session: Session) -> Response {
    let user = session.get::<SignedIn>(USER_KEY).await.ok().flatten();
    if let Err(e) = session.flush().await {
        return crate::error::ApiError::from(e).into_response();
    }
    let provider_sign_out = match (&app.oidc, &user) {
        (Some(oidc), Some(user)) => oidc.sign_out_url(user.id_token.as_deref()).await,
        _ => None,
    };
    match provider_sign_out {
        Some(url) => Redirect::to(url.as_str()).into_response(),
        None => Redirect::to("/").into_response(),
    }
}

fn failed(e: &SignInError) -> Response {
    tracing::warn!(error = %e, "sign-in failed");
    let status = match e {
        SignInError::Discovery(_) => StatusCode::BAD_GATEWAY,
        _ => StatusCode::UNAUTHORIZED,
    };
    pages::message(status, "Sign-in failed", &e.to_string())
}
