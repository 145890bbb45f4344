//! Errors a client can receive from the data plane, each with its HTTP status and an
//! OpenAI-shaped body (`{"error": {"message", "type", "param", "code"}}`), so OpenAI
//! SDKs surface the message as they would OpenAI's own.

use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("You didn't provide an API key. Send it as `Authorization: Bearer tr-...`; create one with `tokenroute keys create` or in the dashboard.")]
    MissingKey,
    #[error("Incorrect API key provided. TokenRoute keys start with `tr-`; check the key or create a new one.")]
    InvalidKey,
    #[error("This API key has been revoked and can no longer be used. Create a new key in the dashboard.")]
    RevokedKey,
    #[error("This API key is suspended by the operator. Contact support if this is unexpected.")]
    SuspendedKey,
    #[error("The account that owns this API key is {0}. Contact support if this is unexpected.")]
    AccountInactive(String),
    #[error("Insufficient credits: the balance of this account is {balance}. Top up in the dashboard to continue.")]
    InsufficientCredits { balance: String },
    #[error(
        "This key may not use the model `{0}`. Ask its owner to allow it, or use another key."
    )]
    ModelNotAllowed(String),
    #[error("Rate limit reached for this key: {limit} {what}. Please try again in {retry}.")]
    RateLimited {
        what: &'static str,
        limit: u64,
        retry: String,
    },
    #[error("This key has reached its {cap} spend limit{resets}. Its owner can raise the limit in the dashboard.")]
    SpendLimit { cap: &'static str, resets: String },
    #[error("Too many requests of this account are in flight at once (the limit is {0}). Wait for some to finish.")]
    TooManyConcurrent(usize),
    #[error("The request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<&'static str>,
    },
    #[error("The model `{0}` does not exist. List the available models with GET /v1/models.")]
    UnknownModel(String),
    #[error("No generation `{0}` of this account is recorded (yet: usage is written within a moment of the answer).")]
    GenerationNotFound(String),
    #[error("The request body is larger than the limit of {limit} bytes.")]
    BodyTooLarge { limit: usize },
    #[error("The request headers are too large: {0}.")]
    HeadersTooLarge(String),
    #[error("The request body did not arrive within {0} ms.")]
    ClientTimeout(u64),
    #[error("Too many requests from your address are in flight at once (the limit is {0}). Wait for some to finish.")]
    TooManyFromClient(usize),
    #[error("Too many failed authentications from your address; try again in a minute with a valid key.")]
    AuthBlocked,
    #[error("Too many connections from your address are open at once (the limit is {0}). Close some, or reuse them (keep-alive).")]
    TooManyConnections(usize),
    #[error(
        "Unknown request URL: {method} {path}. See GET /v1/models and POST /v1/chat/completions."
    )]
    NotFound { method: String, path: String },
    #[error("The provider `{provider}` could not be reached: {detail}. Try again, or pick another model.")]
    UpstreamUnavailable { provider: String, detail: String },
    #[error("The provider `{provider}` did not answer in time ({detail}). Try again, or pick another model.")]
    UpstreamTimeout { provider: String, detail: String },
    #[error("The provider `{provider}` failed: {detail}.")]
    UpstreamFailed { provider: String, detail: String },
    #[error("The provider `{provider}` refused the request (HTTP {status}): {message}")]
    UpstreamRejected {
        status: u16,
        provider: String,
        message: String,
    },
    #[error("The provider `{provider}` is overloaded: {message}. Try again shortly, or pick another model.")]
    UpstreamOverloaded { provider: String, message: String },
    #[error("TokenRoute is not accepting requests for a moment: {0}. Please retry shortly.")]
    Unavailable(String),
    #[error("Internal error; the request was not charged. Please retry.")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            ApiError::MissingKey | ApiError::InvalidKey | ApiError::RevokedKey => 401,
            ApiError::AccountInactive(_)
            | ApiError::SuspendedKey
            | ApiError::ModelNotAllowed(_) => 403,
            ApiError::RateLimited { .. }
            | ApiError::SpendLimit { .. }
            | ApiError::TooManyConcurrent(_) => 429,
            ApiError::InsufficientCredits { .. } => 402,
            ApiError::MalformedJson(_)
            | ApiError::InvalidRequest { .. }
            | ApiError::UnknownModel(_) => 400,
            ApiError::NotFound { .. } | ApiError::GenerationNotFound(_) => 404,
            ApiError::BodyTooLarge { .. } => 413,
            ApiError::HeadersTooLarge(_) => 431,
            ApiError::ClientTimeout(_) => 408,
            ApiError::TooManyFromClient(_)
            | ApiError::AuthBlocked
            | ApiError::TooManyConnections(_) => 429,
            ApiError::UpstreamUnavailable { .. } | ApiError::UpstreamFailed { .. } => 502,
            ApiError::UpstreamTimeout { .. } => 504,
            ApiError::UpstreamRejected { status, .. } => *status,
            ApiError::UpstreamOverloaded { .. } => 503,
            ApiError::Unavailable(_) => 503,
            ApiError::Internal(_) => 500,
        }
    }

    /// The machine-readable code of the error (bounded: a metrics label).
    pub fn code(&self) -> &'static str {
        self.kind_and_code().1
    }

    fn kind_and_code(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::MissingKey => ("invalid_request_error", "missing_api_key"),
            ApiError::InvalidKey => ("invalid_request_error", "invalid_api_key"),
            ApiError::RevokedKey => ("invalid_request_error", "revoked_api_key"),
            ApiError::AccountInactive(_) => ("permission_error", "account_inactive"),
            ApiError::SuspendedKey => ("permission_error", "key_suspended"),
            ApiError::ModelNotAllowed(_) => ("permission_error", "model_not_allowed"),
            ApiError::RateLimited { what, .. } => (
                if what.starts_with("tokens") {
                    "tokens"
                } else {
                    "requests"
                },
                "rate_limit_exceeded",
            ),
            ApiError::SpendLimit { .. } => ("insufficient_quota", "spend_limit_reached"),
            ApiError::TooManyConcurrent(_) => ("requests", "concurrency_limit_exceeded"),
            ApiError::InsufficientCredits { .. } => ("insufficient_quota", "insufficient_credits"),
            ApiError::MalformedJson(_) => ("invalid_request_error", "invalid_json"),
            ApiError::InvalidRequest { .. } => ("invalid_request_error", "invalid_request"),
            ApiError::UnknownModel(_) => ("invalid_request_error", "model_not_found"),
            ApiError::BodyTooLarge { .. } => ("invalid_request_error", "request_too_large"),
            ApiError::HeadersTooLarge(_) => ("invalid_request_error", "request_headers_too_large"),
            ApiError::ClientTimeout(_) => ("invalid_request_error", "request_timeout"),
            ApiError::TooManyFromClient(_) => ("requests", "too_many_requests_from_client"),
            ApiError::AuthBlocked => ("requests", "too_many_failed_authentications"),
            ApiError::TooManyConnections(_) => ("requests", "too_many_connections"),
            ApiError::NotFound { .. } => ("invalid_request_error", "unknown_url"),
            ApiError::GenerationNotFound(_) => ("invalid_request_error", "generation_not_found"),
            ApiError::UpstreamUnavailable { .. } => ("upstream_error", "upstream_unavailable"),
            ApiError::UpstreamTimeout { .. } => ("upstream_error", "upstream_timeout"),
            ApiError::UpstreamFailed { .. } => ("upstream_error", "upstream_failed"),
            ApiError::UpstreamRejected { status: 429, .. } => ("requests", "rate_limit_exceeded"),
            ApiError::UpstreamRejected { .. } => ("invalid_request_error", "upstream_rejected"),
            ApiError::UpstreamOverloaded { .. } => ("upstream_error", "upstream_overloaded"),
            ApiError::Unavailable(_) => ("server_error", "service_unavailable"),
            ApiError::Internal(_) => ("server_error", "internal_error"),
        }
    }

    fn param(&self) -> Option<&'static str> {
        match self {
            ApiError::UnknownModel(_) | ApiError::ModelNotAllowed(_) => Some("model"),
            ApiError::InvalidRequest { param, .. } => *param,
            _ => None,
        }
    }

    /// The JSON body sent to the client.
    pub fn body(&self) -> Vec<u8> {
        self.json().to_string().into_bytes()
    }

    /// The body as JSON, OpenAI's error shape.
    pub fn json(&self) -> serde_json::Value {
        let (kind, code) = self.kind_and_code();
        json!({
            "error": {
                "message": self.to_string(),
                "type": kind,
                "param": self.param(),
                "code": code,
            }
        })
    }

    pub fn invalid(message: impl Into<String>, param: Option<&'static str>) -> ApiError {
        ApiError::InvalidRequest {
            message: message.into(),
            param,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_openai_shape() {
        let e = ApiError::UnknownModel("nope/x".into());
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(e.status(), 400);
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["param"], "model");
        assert!(v["error"]["message"].as_str().unwrap().contains("nope/x"));
    }
}
