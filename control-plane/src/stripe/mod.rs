//! Stripe: Checkout Sessions for top-ups, and the webhook that credits them.
//!
//! Card data never reaches TokenRoute ([P4] [P10]): the browser pays on Stripe's page,
//! Stripe tells the webhook, and we keep the Checkout Session id.

pub mod signature;
pub mod webhook;

use std::time::Duration;

use serde::Deserialize;
use tokenroute_domain::config::StripeConfig;
use tokenroute_domain::NanoUsd;

/// 1 cent in nano-USD: Stripe amounts are integer cents.
pub const NANOS_PER_CENT: i64 = 10_000_000;

/// Stripe's API, as far as TokenRoute uses it.
pub struct Stripe {
    pub config: StripeConfig,
    http: reqwest::Client,
}

/// A Checkout Session Stripe created.
#[derive(Debug, Clone, Deserialize)]
pub struct CheckoutSession {
    pub id: String,
    pub url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    #[error("Stripe cannot be reached: {0}")]
    Unreachable(String),
    #[error("Stripe refused: {0}")]
    Refused(String),
}

impl Stripe {
    pub fn new(config: StripeConfig) -> Result<Stripe, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Stripe { config, http })
    }

    /// Starts a payment of `amount` (whole cents) on Stripe's hosted page. The account id
    /// travels as `client_reference_id` and metadata, so the webhook knows whom to credit.
    pub async fn create_checkout_session(
        &self,
        account_id: &str,
        email: &str,
        amount: NanoUsd,
        public_url: &str,
    ) -> Result<CheckoutSession, StripeError> {
        let cents = (amount.nanos() / NANOS_PER_CENT).to_string();
        let form = [
            ("mode", "payment"),
            ("client_reference_id", account_id),
            ("customer_email", email),
            ("metadata[account_id]", account_id),
            ("payment_intent_data[metadata][account_id]", account_id),
            ("line_items[0][quantity]", "1"),
            ("line_items[0][price_data][currency]", "usd"),
            ("line_items[0][price_data][unit_amount]", &cents),
            (
                "line_items[0][price_data][product_data][name]",
                "TokenRoute credits",
            ),
            (
                "success_url",
                &format!("{public_url}/billing/success?session_id={{CHECKOUT_SESSION_ID}}"),
            ),
            ("cancel_url", &format!("{public_url}/billing/cancel")),
        ];
        let response = self
            .http
            .post(format!("{}/v1/checkout/sessions", self.config.api_base))
            .bearer_auth(self.config.secret_key.expose())
            .header("Idempotency-Key", uuid_like())
            .form(&form)
            .send()
            .await
            .map_err(|e| StripeError::Unreachable(e.to_string()))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| StripeError::Unreachable(e.to_string()))?;
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.pointer("/error/message")?.as_str().map(str::to_string))
                .unwrap_or_else(|| format!("HTTP {status}"));
            return Err(StripeError::Refused(message));
        }
        serde_json::from_str(&body)
            .map_err(|e| StripeError::Refused(format!("unexpected answer: {e}")))
    }
}

fn uuid_like() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}
