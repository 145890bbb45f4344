//! `POST /stripe/webhook`: Stripe's events, verified, turned into ledger entries.
//!
//! Every entry is booked under a Stripe id — the Checkout Session for a top-up, the
//! refund or dispute id for money going back — and the ledger refuses a second entry
//! of the same kind and id, so retries, duplicates and concurrent deliveries of one
//! event credit exactly once.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tokenroute_domain::NanoUsd;
use tokenroute_store::LedgerKind;

use super::signature;
use super::NANOS_PER_CENT;
use crate::error::ApiError;
use crate::AppState;

#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    object: Value,
}

/// What the webhook did with an event.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Booked now.
    Booked,
    /// Booked before (a retry or duplicate): nothing changed.
    AlreadyBooked,
    /// Nothing to book yet (e.g. a checkout whose payment is still processing).
    Nothing,
}

pub async fn receive(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let stripe = app
        .stripe
        .as_ref()
        .ok_or_else(|| ApiError::NotConfigured("Stripe is not configured".into()))?;
    signature::verify(
        headers
            .get("stripe-signature")
            .and_then(|v| v.to_str().ok()),
        &body,
        stripe.config.webhook_secret.expose(),
        tokenroute_domain::clock::now_ms() / 1000,
    )
    .map_err(|e| ApiError::BadRequest(format!("webhook signature: {e}")))?;
    let event: Event = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("not a Stripe event: {e}")))?;
    let object = &event.data.object;
    let outcome = match event.kind.as_str() {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            checkout_paid(&app, object).await?
        }
        "charge.refunded" => refunded(&app, object).await?,
        "charge.dispute.created" => {
            dispute(&app, object, LedgerKind::Dispute, -1, "card dispute opened").await?
        }
        "charge.dispute.closed" if object["status"] == "won" => {
            dispute(
                &app,
                object,
                LedgerKind::DisputeReversal,
                1,
                "card dispute won",
            )
            .await?
        }
        "charge.dispute.closed" => Outcome::Nothing,
        other => {
            return Err(ApiError::BadRequest(format!(
                "unsupported event type `{other}`"
            )))
        }
    };
    tracing::info!(event = %event.id, kind = %event.kind, outcome = ?outcome, "stripe event");
    Ok(Json(json!({
        "received": true,
        "booked": outcome == Outcome::Booked,
    })))
}

fn text<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object.get(key).and_then(Value::as_str)
}

fn cents(object: &Value, key: &str) -> Result<NanoUsd, ApiError> {
    let cents = object
        .get(key)
        .and_then(Value::as_i64)
        .filter(|c| *c > 0)
        .ok_or_else(|| ApiError::BadRequest(format!("event has no positive `{key}`")))?;
    cents
        .checked_mul(NANOS_PER_CENT)
        .map(NanoUsd)
        .ok_or_else(|| ApiError::BadRequest(format!("`{key}` is out of range")))
}

fn require_usd(object: &Value) -> Result<(), ApiError> {
    match text(object, "currency") {
        Some(c) if c.eq_ignore_ascii_case("usd") => Ok(()),
        other => Err(ApiError::BadRequest(format!(
            "currency {other:?} is not USD"
        ))),
    }
}

/// A Checkout Session was paid: credit its account once, under the session id.
async fn checkout_paid(app: &AppState, session: &Value) -> Result<Outcome, ApiError> {
    let session_id = text(session, "id")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::BadRequest("checkout session has no id".into()))?;
    if text(session, "payment_status") != Some("paid") {
        // Delayed payment methods: `checkout.session.async_payment_succeeded` follows.
        return Ok(Outcome::Nothing);
    }
    let account_id = text(session, "client_reference_id").ok_or_else(|| {
        ApiError::BadRequest("checkout session has no client_reference_id".into())
    })?;
    if let Some(meta) = session
        .pointer("/metadata/account_id")
        .and_then(Value::as_str)
    {
        if meta != account_id {
            return Err(ApiError::BadRequest(
                "client_reference_id and metadata.account_id disagree".into(),
            ));
        }
    }
    if app.store.account(account_id).await?.is_none() {
        return Err(ApiError::BadRequest(format!(
            "no account {account_id} for checkout session {session_id}"
        )));
    }
    require_usd(session)?;
    let amount = cents(session, "amount_total")?;
    let booked = app
        .store
        .credit_topup(
            account_id,
            session_id,
            text(session, "payment_intent"),
            amount,
        )
        .await?;
    Ok(if booked {
        Outcome::Booked
    } else {
        Outcome::AlreadyBooked
    })
}

/// The account a charge's PaymentIntent paid into. Not known yet means Stripe sent the
/// refund before the payment: answer an error so Stripe delivers it again later.
async fn account_of(app: &AppState, object: &Value) -> Result<String, ApiError> {
    let payment_intent = text(object, "payment_intent")
        .ok_or_else(|| ApiError::BadRequest("event has no payment_intent".into()))?;
    app.store
        .account_of_payment_intent(payment_intent)
        .await?
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "payment {payment_intent} is not a credited top-up (yet)"
            ))
        })
}

/// A charge was refunded (in part or whole): each refund becomes a negative entry
/// under its refund id.
async fn refunded(app: &AppState, charge: &Value) -> Result<Outcome, ApiError> {
    require_usd(charge)?;
    let account_id = account_of(app, charge).await?;
    let refunds = charge
        .pointer("/refunds/data")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::BadRequest("charge has no refunds list".into()))?;
    let mut outcome = Outcome::AlreadyBooked;
    for refund in refunds {
        if !matches!(text(refund, "status"), Some("succeeded") | Some("pending")) {
            continue;
        }
        let id =
            text(refund, "id").ok_or_else(|| ApiError::BadRequest("refund has no id".into()))?;
        let amount = cents(refund, "amount")?;
        if app
            .store
            .book(
                &account_id,
                LedgerKind::Refund,
                -amount,
                id,
                Some("Stripe refund"),
            )
            .await?
        {
            outcome = Outcome::Booked;
        }
    }
    Ok(outcome)
}

/// A dispute took money back (`sign` -1) or returned it (+1), under the dispute id.
async fn dispute(
    app: &AppState,
    dispute: &Value,
    kind: LedgerKind,
    sign: i64,
    note: &str,
) -> Result<Outcome, ApiError> {
    require_usd(dispute)?;
    let account_id = account_of(app, dispute).await?;
    let id = text(dispute, "id").ok_or_else(|| ApiError::BadRequest("dispute has no id".into()))?;
    let amount = cents(dispute, "amount")?;
    let booked = app
        .store
        .book(
            &account_id,
            kind,
            NanoUsd(amount.nanos() * sign),
            id,
            Some(note),
        )
        .await?;
    Ok(if booked {
        Outcome::Booked
    } else {
        Outcome::AlreadyBooked
    })
}
