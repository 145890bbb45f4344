//! Per-request state, carried through the Pingora phases.

use std::sync::Arc;
use std::time::Instant;

use tokenroute_domain::{NanoUsd, UsageEvent};
use tokenroute_store::KeyRecord;

use crate::meter::Tokens;
use crate::surface::Surface;

#[derive(Default)]
pub struct RequestCtx {
    pub request_id: String,
    pub started: Option<Instant>,
    pub received_at_ms: i64,
    /// The authenticated key, once known: usage is recorded only for requests that
    /// can be attributed to a key.
    pub key: Option<Arc<KeyRecord>>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    pub streamed: bool,
    pub tokens: Tokens,
    pub cost: NanoUsd,
    pub estimated: bool,
    /// Status sent to the client.
    pub status: u16,
    /// A response header has gone out: errors can no longer change the status.
    pub response_started: bool,
    /// Whether the request is an API call to meter (chat completions), as opposed to
    /// a model listing or a health check.
    pub metered: bool,
    /// The client went away before the answer was complete.
    pub cancelled: bool,
    /// The usage event has been handed to the spool.
    pub recorded: bool,
    /// Headers every response to this request carries (rate limits, Retry-After).
    pub extra_headers: Vec<(&'static str, String)>,
    /// The API the client speaks: answers and errors are shaped for it.
    pub surface: Surface,
    /// When the first byte of the answer went out (time to first byte/token).
    pub first_byte: Option<Instant>,
    /// The error code of a refused request (a metrics label).
    pub error_code: Option<&'static str>,
    /// The exchange's bodies, when the key has request debugging on ([P6]).
    pub debug: Option<crate::debug_log::Capture>,
    /// The model as the client named it, when routing resolved it to another id (a
    /// route such as `tokenroute-auto`, or an alias).
    pub route: Option<String>,
    /// Upstream attempts made (fallbacks included).
    pub attempts: u32,
    /// The chosen endpoint of the provider.
    pub endpoint: Option<String>,
    /// Why this target (`x-tokenroute-route`).
    pub route_header: Option<String>,
    /// The client's address (the peer, or X-Forwarded-For from a trusted proxy).
    pub client: String,
    /// The request's place in its client's in-flight count (released with the context).
    pub in_flight: Option<crate::guard::InFlight>,
}

impl RequestCtx {
    /// The usage event of this request, if it is one to record: a metered API call
    /// attributable to a key.
    pub fn usage_event(&self) -> Option<UsageEvent> {
        if !self.metered {
            return None;
        }
        let key = self.key.as_ref()?;
        let duration_ms = self
            .started
            .map(|s| i64::try_from(s.elapsed().as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Some(UsageEvent {
            request_id: self.request_id.clone(),
            account_id: key.account_id.clone(),
            key_id: key.id.clone(),
            created_at_ms: self.received_at_ms,
            model: self.model.clone().unwrap_or_default(),
            provider: self.provider.clone().unwrap_or_default(),
            upstream_model: self.upstream_model.clone().unwrap_or_default(),
            input_tokens: i64::try_from(self.tokens.input).unwrap_or(i64::MAX),
            output_tokens: i64::try_from(self.tokens.output).unwrap_or(i64::MAX),
            cached_input_tokens: i64::try_from(self.tokens.cached).unwrap_or(i64::MAX),
            cost: self.cost,
            status: self.status,
            streamed: self.streamed,
            estimated: self.estimated,
            cancelled: self.cancelled,
            duration_ms,
            route: self.route.clone().unwrap_or_default(),
            attempts: self.attempts,
        })
    }
}
