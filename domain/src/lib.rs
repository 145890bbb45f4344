//! TokenRoute's shared domain: the types both planes and the store agree on.
//!
//! Nothing here does I/O beyond reading a config file: money arithmetic, API key
//! generation and hashing, the validated configuration, and the usage event the
//! data plane emits for every metered request.

pub mod api_key;
pub mod clock;
pub mod config;
pub mod limits;
pub mod money;
pub mod secret;
pub mod usage;

pub use api_key::{ApiKey, KeyHash};
pub use limits::KeyLimits;
pub use money::{NanoUsd, Price};
pub use secret::Secret;
pub use usage::UsageEvent;
