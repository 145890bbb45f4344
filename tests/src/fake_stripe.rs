//! A fake Stripe: the Checkout Sessions endpoint TokenRoute calls (recording what it
//! was asked), a hosted checkout page whose "Pay" button delivers a signed
//! `checkout.session.completed` to the webhook and returns to `success_url`, as Stripe
//! Checkout does, and signed webhook events in Stripe's shape.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Form, Json, Router};
use serde_json::{json, Value};

pub const SECRET_KEY: &str = "sk_test_tokenroute";
pub const WEBHOOK_SECRET: &str = "whsec_test_tokenroute";

/// A Checkout Session's form fields, as sent.
type SessionForm = Vec<(String, String)>;

#[derive(Clone, Default)]
struct Recorded {
    sessions: Arc<Mutex<Vec<SessionForm>>>,
    /// Where "Pay" delivers the event: TokenRoute's `/stripe/webhook`.
    webhook: Arc<Mutex<Option<String>>>,
    base: Arc<Mutex<String>>,
}

pub struct FakeStripe {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    recorded: Recorded,
    _server: tokio::task::JoinHandle<()>,
}

impl FakeStripe {
    pub async fn start() -> FakeStripe {
        let recorded = Recorded::default();
        let app = Router::new()
            .route("/v1/checkout/sessions", post(create_session))
            .route("/c/pay/{id}", axum::routing::get(checkout_page).post(pay))
            .with_state(recorded.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        *recorded.base.lock().unwrap() = base.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeStripe {
            base,
            recorded,
            _server: server,
        }
    }

    /// Where the hosted page's "Pay" sends the signed event.
    pub fn deliver_to(&self, webhook_url: &str) {
        *self.recorded.webhook.lock().unwrap() = Some(webhook_url.to_string());
    }

    /// The form fields of every Checkout Session created so far.
    pub fn sessions(&self) -> Vec<Vec<(String, String)>> {
        self.recorded.sessions.lock().unwrap().clone()
    }

    /// The config section pointing TokenRoute here.
    pub fn toml(&self) -> String {
        format!(
            "[stripe]\nsecret-key-env = \"STRIPE_KEY\"\nwebhook-secret-env = \"STRIPE_WHSEC\"\n\
             api-base = \"{}\"\nmin-topup-usd = \"5\"\nmax-topup-usd = \"500\"\n",
            self.base
        )
    }

    pub fn env() -> Vec<(String, String)> {
        vec![
            ("STRIPE_KEY".into(), SECRET_KEY.into()),
            ("STRIPE_WHSEC".into(), WEBHOOK_SECRET.into()),
        ]
    }
}

async fn create_session(
    State(recorded): State<Recorded>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> (StatusCode, Json<Value>) {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {SECRET_KEY}"))
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(
                json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}),
            ),
        );
    }
    let mut sessions = recorded.sessions.lock().unwrap();
    let id = format!("cs_test_{}", sessions.len() + 1);
    sessions.push(form);
    (
        StatusCode::OK,
        Json(json!({
            "id": id,
            "object": "checkout.session",
            "url": format!("{}/c/pay/{id}", recorded.base.lock().unwrap()),
            "payment_status": "unpaid",
            "status": "open",
        })),
    )
}

/// A `checkout.session.completed` event as Stripe sends it (trimmed to the fields
/// Stripe documents and TokenRoute reads, plus a few it ignores).
pub fn checkout_completed(
    event_id: &str,
    session_id: &str,
    account_id: &str,
    cents: i64,
    payment_intent: &str,
) -> Value {
    json!({
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": 1_800_000_000,
        "livemode": false,
        "type": "checkout.session.completed",
        "data": {"object": {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": cents,
            "amount_total": cents,
            "client_reference_id": account_id,
            "currency": "usd",
            "customer_details": {"email": "payer@example.com"},
            "metadata": {"account_id": account_id},
            "mode": "payment",
            "payment_intent": payment_intent,
            "payment_status": "paid",
            "status": "complete"
        }}
    })
}

/// A `charge.refunded` event with one refund.
pub fn charge_refunded(event_id: &str, payment_intent: &str, refund_id: &str, cents: i64) -> Value {
    json!({
        "id": event_id,
        "object": "event",
        "type": "charge.refunded",
        "data": {"object": {
            "id": "ch_test_1",
            "object": "charge",
            "amount_refunded": cents,
            "currency": "usd",
            "payment_intent": payment_intent,
            "refunded": false,
            "refunds": {"object": "list", "data": [
                {"id": refund_id, "object": "refund", "amount": cents, "status": "succeeded",
                 "payment_intent": payment_intent, "currency": "usd"}
            ], "has_more": false}
        }}
    })
}

/// A `charge.dispute.created` (or `.closed`) event.
pub fn dispute(
    event_type: &str,
    dispute_id: &str,
    payment_intent: &str,
    cents: i64,
    status: &str,
) -> Value {
    json!({
        "id": format!("evt_{dispute_id}_{status}"),
        "object": "event",
        "type": event_type,
        "data": {"object": {
            "id": dispute_id,
            "object": "dispute",
            "amount": cents,
            "currency": "usd",
            "payment_intent": payment_intent,
            "status": status
        }}
    })
}

fn session_fields(
    recorded: &Recorded,
    id: &str,
) -> Option<std::collections::HashMap<String, String>> {
    let n: usize = id.strip_prefix("cs_test_")?.parse().ok()?;
    let sessions = recorded.sessions.lock().unwrap();
    Some(sessions.get(n.checked_sub(1)?)?.iter().cloned().collect())
}

/// Stripe's hosted checkout, reduced to the amount and a button.
async fn checkout_page(
    State(recorded): State<Recorded>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> (StatusCode, axum::response::Html<String>) {
    let Some(fields) = session_fields(&recorded, &id) else {
        return (
            StatusCode::NOT_FOUND,
            axum::response::Html("no such session".into()),
        );
    };
    let cents: i64 = fields["line_items[0][price_data][unit_amount]"]
        .parse()
        .unwrap();
    (
        StatusCode::OK,
        axum::response::Html(format!(
            "<!doctype html><title>Fake Stripe Checkout</title><h1>Pay ${}.{:02}</h1>\
             <form method=post><button id=pay type=submit>Pay</button></form>",
            cents / 100,
            cents % 100
        )),
    )
}

/// "Pay": Stripe tells the webhook, then sends the browser to `success_url`.
async fn pay(
    State(recorded): State<Recorded>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(fields) = session_fields(&recorded, &id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let cents: i64 = fields["line_items[0][price_data][unit_amount]"]
        .parse()
        .unwrap();
    let event = checkout_completed(
        &format!("evt_{id}"),
        &id,
        &fields["client_reference_id"],
        cents,
        &format!("pi_{id}"),
    );
    let payload = event.to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let header =
        tokenroute_control_plane::stripe::signature::sign(payload.as_bytes(), WEBHOOK_SECRET, now);
    let webhook = recorded
        .webhook
        .lock()
        .unwrap()
        .clone()
        .expect("deliver_to not set");
    let delivered = reqwest::Client::new()
        .post(webhook)
        .header("stripe-signature", header)
        .header("content-type", "application/json")
        .body(payload)
        .send()
        .await
        .unwrap();
    assert!(
        delivered.status().is_success(),
        "webhook refused: {}",
        delivered.status()
    );
    let success = fields["success_url"].replace("{CHECKOUT_SESSION_ID}", &id);
    axum::response::Redirect::to(&success).into_response()
}
