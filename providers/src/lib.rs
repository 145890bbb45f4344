//! Translation between TokenRoute's client surfaces and each provider's wire format.
//!
//! Everything here is pure and synchronous — bytes in, bytes out, no I/O — so it
//! runs inside the data plane's streaming loop and is testable (and fuzzable) on the
//! transcripts in `fixtures/providers/`.
//!
//! The data plane speaks OpenAI Chat Completions internally: every upstream adapter
//! turns an OpenAI chat request into its provider's request, and turns the provider's
//! answer back into OpenAI's shape — a `chat.completion` body, or a stream of
//! `chat.completion.chunk` events ending with a usage chunk (`choices: []`) and
//! `data: [DONE]`. Metering then reads usage from that one shape.
//!
//! | module | job |
//! | --- | --- |
//! | [`sse`] | one incremental SSE reader for every provider |
//! | [`anthropic`] | OpenAI chat → Anthropic Messages upstream, and back |
//! | [`gemini`] | OpenAI chat → Google Gemini generateContent upstream, and back |
//! | [`messages_api`] | the Anthropic Messages client surface (`POST /v1/messages`) ↔ OpenAI chat |

pub mod anthropic;
pub mod gemini;
pub mod messages_api;
pub mod sse;

/// A request for a provider, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamCall {
    /// Path under the provider's base URL, e.g. `/messages` or
    /// `/models/gemini-2.0-flash:streamGenerateContent?alt=sse`.
    pub path: String,
    pub body: Vec<u8>,
    /// Headers the dialect needs besides authentication (e.g. `anthropic-version`).
    pub headers: Vec<(&'static str, String)>,
}

/// Why a request cannot be translated for a provider. Shown to the client as a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// The request uses something this provider cannot do.
    #[error("{provider} does not support {what}")]
    Unsupported {
        provider: &'static str,
        what: String,
    },
    /// The request is malformed for this translation (names the field).
    #[error("invalid `{field}`: {reason}")]
    Invalid { field: String, reason: String },
    /// The provider's answer is not what its API documents.
    #[error("unexpected answer from {provider}: {reason}")]
    BadAnswer {
        provider: &'static str,
        reason: String,
    },
}
