//! A fake of Logto's Management API, as far as TokenRoute uses it: the
//! client-credentials token (`POST /oidc/token`) and `DELETE /api/users/{id}`.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, post};
use axum::{Form, Json, Router};
use base64::Engine;
use serde_json::{json, Value};

pub const M2M_ID: &str = "m2m-tokenroute";
pub const M2M_SECRET: &str = "m2m-secret";
pub const RESOURCE: &str = "https://default.logto.app/api";
const TOKEN: &str = "logto-management-token";

#[derive(Clone, Default)]
struct Seen {
    deleted: Arc<Mutex<Vec<String>>>,
}

pub struct FakeLogto {
    pub base: String,
    seen: Seen,
    _server: tokio::task::JoinHandle<()>,
}

impl FakeLogto {
    pub async fn start() -> FakeLogto {
        let seen = Seen::default();
        let app = Router::new()
            .route("/oidc/token", post(token))
            .route("/api/users/{id}", delete(delete_user))
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeLogto {
            base,
            seen,
            _server: server,
        }
    }

    /// The user ids deleted so far.
    pub fn deleted(&self) -> Vec<String> {
        self.seen.deleted.lock().unwrap().clone()
    }

    /// The `[oidc.management]` section pointing here.
    pub fn toml(&self) -> String {
        format!(
            "[oidc.management]\nendpoint = \"{}\"\nresource = \"{RESOURCE}\"\nclient-id = \"{M2M_ID}\"\nclient-secret-env = \"LOGTO_M2M_SECRET\"\n",
            self.base
        )
    }
}

async fn token(
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> (StatusCode, Json<Value>) {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{M2M_ID}:{M2M_SECRET}"))
    );
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str())
        || field("grant_type") != Some("client_credentials")
        || field("resource") != Some(RESOURCE)
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        );
    }
    (
        StatusCode::OK,
        Json(
            json!({"access_token": TOKEN, "expires_in": 3600, "token_type": "Bearer", "scope": "all"}),
        ),
    )
}

async fn delete_user(
    State(seen): State<Seen>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> StatusCode {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return StatusCode::UNAUTHORIZED;
    }
    seen.deleted.lock().unwrap().push(id);
    StatusCode::NO_CONTENT
}
