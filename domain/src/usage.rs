//! The record of one metered request, as the data plane emits it and the store keeps it.
//!
//! It holds metadata only — never prompt or completion text (PRIVACY.md [P3]).

use serde::{Deserialize, Serialize};

use crate::money::NanoUsd;

/// One metered API call. `request_id` is unique: writing the same event twice is a no-op,
/// which is what makes retries and spool replays charge once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEvent {
    pub request_id: String,
    pub account_id: String,
    pub key_id: String,
    /// Milliseconds since the Unix epoch when the request arrived.
    pub created_at_ms: i64,
    /// The model that served the request, as configured (`provider/model`).
    pub model: String,
    pub provider: String,
    /// The model name sent to the provider.
    pub upstream_model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// Of `input_tokens`, those read from the provider's prompt cache.
    #[serde(default)]
    pub cached_input_tokens: i64,
    pub cost: NanoUsd,
    /// HTTP status returned to the client.
    pub status: u16,
    pub streamed: bool,
    /// True when the provider never reported usage (stream cut short) and the
    /// token counts are TokenRoute's estimate.
    pub estimated: bool,
    /// The client went away before the answer was complete.
    #[serde(default)]
    pub cancelled: bool,
    pub duration_ms: i64,
    /// The model as the client named it when routing chose another (`tokenroute-auto`,
    /// an alias); empty when the client named the model itself.
    #[serde(default)]
    pub route: String,
    /// Upstream attempts made (1 + fallbacks; 0 when refused before any).
    #[serde(default)]
    pub attempts: u32,
}
