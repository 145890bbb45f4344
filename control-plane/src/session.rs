//! Dashboard sessions: one cookie ([P18]) naming a server-side session.
//!
//! `tower-sessions` manages the cookie and the session's lifecycle; [`StoreSessions`]
//! keeps the sessions in TokenRoute's store (Postgres or SQLite), keyed by the SHA-256
//! of the id, so ending a session — sign-out, or an admin ending all of an account's
//! sessions — is final on every control-plane node.

use std::time::Duration as StdDuration;

use async_trait::async_trait;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokenroute_store::Store;
use tower_sessions::cookie::SameSite;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};
use tower_sessions::{Expiry, Session, SessionManagerLayer};

use crate::error::ApiError;

/// The cookie's name.
pub const COOKIE_NAME: &str = "tokenroute_session";
/// A signed-in session lasts this long ([P18]: 14 days, or until sign-out).
pub const SIGNED_IN_FOR: StdDuration = StdDuration::from_secs(14 * 24 * 3600);
/// A sign-in that was started must finish within this time.
pub const SIGN_IN_WINDOW: StdDuration = StdDuration::from_secs(10 * 60);

/// Session key of the signed-in user.
pub const USER_KEY: &str = "user";
/// Session key of a sign-in in progress.
pub const LOGIN_KEY: &str = "login";

/// Who is signed in, as the session remembers it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedIn {
    pub account_id: String,
    pub email: String,
    pub is_admin: bool,
    /// Sent back by the dashboard with every state-changing request.
    pub csrf_token: String,
    /// The ID token, kept as the `id_token_hint` for the provider's sign-out.
    pub id_token: Option<String>,
}

/// The session layer: cookie `tokenroute_session`, HttpOnly, SameSite=Lax, Secure
/// unless the dashboard is served over plain-http localhost.
pub fn layer(store: Store, secure: bool) -> SessionManagerLayer<StoreSessions> {
    SessionManagerLayer::new(StoreSessions { store })
        .with_name(COOKIE_NAME)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(secure)
        .with_path("/")
        // Sessions are written only at sign-in and sign-out, so "14 days of inactivity"
        // is 14 days from sign-in; the handlers also set the expiry explicitly.
        .with_expiry(Expiry::OnInactivity(to_time(SIGNED_IN_FOR)))
}

pub fn expiry_in(d: StdDuration) -> Expiry {
    Expiry::AtDateTime(OffsetDateTime::now_utc() + to_time(d))
}

fn to_time(d: StdDuration) -> time::Duration {
    time::Duration::seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl<S: Send + Sync> FromRequestParts<S> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(|(_, m)| ApiError::Internal(m.to_string()))?;
        session
            .get::<SignedIn>(USER_KEY)
            .await?
            .ok_or(ApiError::Unauthenticated)
    }
}

/// A signed-in admin (by configured email or the provider's role claim).
#[derive(Debug, Clone)]
pub struct Admin(pub SignedIn);

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user = SignedIn::from_request_parts(parts, state).await?;
        if !user.is_admin {
            return Err(ApiError::Forbidden("admins only".into()));
        }
        Ok(Admin(user))
    }
}

/// Sessions in TokenRoute's store.
#[derive(Debug, Clone)]
pub struct StoreSessions {
    store: Store,
}

fn hashed(id: &Id) -> String {
    hex::encode(Sha256::digest(id.to_string().as_bytes()))
}

fn backend(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

/// The signed-in account of a record, for the store's `account_id` column.
fn account_of(record: &Record) -> Option<String> {
    record
        .data
        .get(USER_KEY)
        .and_then(|u| u.get("account_id"))
        .and_then(|a| a.as_str())
        .map(str::to_string)
}

fn unix_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

#[async_trait]
impl SessionStore for StoreSessions {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let data = serde_json::to_string(&record.data).map_err(backend)?;
        // Ids are 128 random bits; a collision is drawn again, never overwritten.
        while !self
            .store
            .create_web_session(
                &hashed(&record.id),
                account_of(record).as_deref(),
                &data,
                unix_ms(record.expiry_date),
            )
            .await
            .map_err(backend)?
        {
            record.id = Id::default();
        }
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = serde_json::to_string(&record.data).map_err(backend)?;
        self.store
            .save_web_session(
                &hashed(&record.id),
                account_of(record).as_deref(),
                &data,
                unix_ms(record.expiry_date),
            )
            .await
            .map_err(backend)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let now = tokenroute_domain::clock::now_ms();
        let Some(stored) = self
            .store
            .load_web_session(&hashed(id), now)
            .await
            .map_err(backend)?
        else {
            return Ok(None);
        };
        let data = serde_json::from_str(&stored.data).map_err(backend)?;
        let expiry_date =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(stored.expires_at_ms) * 1_000_000)
                .map_err(backend)?;
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.store
            .delete_web_session(&hashed(id))
            .await
            .map_err(backend)
    }
}
