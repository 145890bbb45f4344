//! Metering: reading token usage out of provider responses, and the usage writer
//! that takes metered events off the request path.

pub mod adopt;
mod fsync;
pub mod openai;
mod prezero;
pub mod spool;
pub use tokenroute_providers::sse;

/// Tokens a request consumed, as the provider reported them or as estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
    /// Of `input`, the tokens read from the provider's prompt cache.
    pub cached: u64,
}

/// A rough token count for text of `bytes` bytes: about four bytes a token for
/// English. Used only when a provider never reported usage; such rows are marked
/// `estimated`.
pub fn estimate_tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}
pub mod writer;
pub mod writer_runtime;
