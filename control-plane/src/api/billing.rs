//! Top-ups: start a Stripe Checkout, list top-ups, and the pages Stripe returns to.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use serde::Deserialize;
use tokenroute_domain::NanoUsd;

use super::extract::*;
use super::views::*;
use crate::error::{ApiError, ErrorBody};
use crate::session::SignedIn;
use crate::stripe::{Stripe, StripeError, NANOS_PER_CENT};
use crate::{pages, AppState};

fn stripe(app: &AppState) -> Result<&Stripe, ApiError> {
    app.stripe
        .as_deref()
        .ok_or_else(|| ApiError::NotConfigured("top-ups are not configured ([stripe])".into()))
}

/// Whole cents within the configured bounds.
fn amount(stripe: &Stripe, text: &str) -> Result<NanoUsd, ApiError> {
    let (min, max) = (stripe.config.min_topup, stripe.config.max_topup);
    NanoUsd::parse_usd(text)
        .ok()
        .filter(|n| n.nanos() % NANOS_PER_CENT == 0 && *n >= min && *n <= max)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "amount_usd must be whole cents from {} to {}",
                usd(min),
                usd(max)
            ))
        })
}

async fn start_checkout(
    app: &AppState,
    user: &SignedIn,
    amount_usd: &str,
) -> Result<CheckoutView, ApiError> {
    let stripe = stripe(app)?;
    let amount = amount(stripe, amount_usd)?;
    let session = stripe
        .create_checkout_session(
            &user.account_id,
            &user.email,
            amount,
            &app.config.control_plane.public_url,
        )
        .await
        .map_err(|e| match e {
            StripeError::Unreachable(m) | StripeError::Refused(m) => ApiError::Upstream(m),
        })?;
    app.store
        .record_pending_topup(&user.account_id, &session.id, amount)
        .await?;
    Ok(CheckoutView {
        session_id: session.id,
        checkout_url: session.url,
    })
}

/// Starts a top-up: a Stripe Checkout Session for `amount_usd`. Send the browser to
/// `checkout_url`; the credit arrives through the webhook once Stripe has the money.
#[utoipa::path(post, path = "/api/billing/checkout", tag = "billing", request_body = CheckoutRequest,
    responses((status = 200, body = CheckoutView), (status = 400, body = ErrorBody),
              (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn checkout(
    State(app): State<AppState>,
    user: SignedIn,
    Body(request): Body<CheckoutRequest>,
) -> Result<Json<CheckoutView>, ApiError> {
    Ok(Json(
        start_checkout(&app, &user, &request.amount_usd).await?,
    ))
}

#[derive(Debug, Deserialize)]
pub struct CheckoutForm {
    pub amount_usd: String,
}

/// The HTML form's twin of [`checkout`]: redirects to Stripe.
pub async fn checkout_form(
    State(app): State<AppState>,
    user: SignedIn,
    Form(form): Form<CheckoutForm>,
) -> Result<Redirect, ApiError> {
    let view = start_checkout(&app, &user, &form.amount_usd).await?;
    Ok(Redirect::to(&view.checkout_url))
}

/// The account's top-ups, newest first, and the allowed amounts.
#[utoipa::path(get, path = "/api/topups", tag = "billing",
    responses((status = 200, body = TopUpList), (status = 401, body = ErrorBody)))]
pub async fn topups(
    State(app): State<AppState>,
    user: SignedIn,
) -> Result<Json<TopUpList>, ApiError> {
    let topups = app.store.topups_of_account(&user.account_id).await?;
    Ok(Json(TopUpList {
        topups: topups.iter().map(TopUpView::from).collect(),
        min_usd: app.stripe.as_ref().map(|s| usd(s.config.min_topup)),
        max_usd: app.stripe.as_ref().map(|s| usd(s.config.max_topup)),
    }))
}

#[derive(Debug, Deserialize)]
pub struct ReturnParams {
    pub session_id: Option<String>,
}

/// Where Stripe sends the browser after paying.
pub async fn success(
    State(app): State<AppState>,
    user: SignedIn,
    Query(params): Query<ReturnParams>,
) -> Response {
    let topup = match params.session_id.as_deref() {
        Some(id) => app.store.topup_by_session(id).await.ok().flatten(),
        None => None,
    }
    .filter(|t| t.account_id == user.account_id);
    match topup {
        Some(t) if t.status == "paid" => pages::message(
            StatusCode::OK,
            "Payment received",
            &format!("{} was added to your credit.", t.amount),
        ),
        Some(t) => pages::message(
            StatusCode::OK,
            "Payment received",
            &format!(
                "{} will be added to your credit as soon as Stripe confirms the payment (usually within seconds).",
                t.amount
            ),
        ),
        None => pages::message(
            StatusCode::NOT_FOUND,
            "Unknown payment",
            "This payment is not one of yours.",
        ),
    }
}

/// Where Stripe sends the browser when the payment is abandoned.
pub async fn cancelled() -> impl IntoResponse {
    pages::message(
        StatusCode::OK,
        "Payment cancelled",
        "Nothing was charged and your credit is unchanged.",
    )
}
