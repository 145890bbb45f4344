//! Per-request state, carried through the Pingora phases.

use std::sync::Arc;
use std::time::Instant;

use tokenroute_domain::NanoUsd;
use tokenroute_store::KeyRecord;

use crate::meter::Tokens;

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
}
