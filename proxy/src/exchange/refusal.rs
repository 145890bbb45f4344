//! The provider refused or failed before answering. Nothing is charged, and nothing
//! the provider echoes of a credential is relayed ([`crate::scrub`]).

use bytes::Bytes;
use pingora::proxy::Session;

use crate::ctx::RequestCtx;
use crate::dialect::Dialect;
use crate::error::ApiError;
use crate::respond;
use crate::state::ProxyState;
use crate::surface::Surface;
use crate::upstream::UpstreamResponse;

/// Largest provider error body read.
const MAX_ERROR_BYTES: usize = 64 * 1024;

/// Refusals of TokenRoute's own credentials are the operator's to fix (502); other
/// client errors (4xx) are the client's, relayed with the provider's message — as
/// the provider sent it when client and provider speak OpenAI, else in the client's
/// shape; 429 keeps `Retry-After`; an overloaded provider (503, 529) is 503; other
/// server errors are 502.
pub async fn relay(
    state: &ProxyState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    mut response: UpstreamResponse,
    dialect: Dialect,
    provider: &str,
) -> Result<(), ApiError> {
    let status = response.status;
    if let Some(retry) = response.retry_after.clone() {
        ctx.extra_headers.push(("retry-after", retry));
    }
    let body = response.collect(MAX_ERROR_BYTES).await.unwrap_or_default();
    state.upstream.release(response).await;
    // Nothing the provider echoes of a credential reaches the client.
    let live = state.router.live();
    let secrets: Vec<&str> = live
        .config
        .providers
        .iter()
        .flat_map(|p| &p.endpoints)
        .filter_map(|e| e.api_key.as_ref())
        .map(|k| k.expose().as_str())
        .collect();
    let body = crate::scrub::credentials(&body, &secrets).into_owned();
    let message = dialect
        .error_message(&body)
        .unwrap_or_else(|| format!("HTTP {status}"));
    let provider = provider.to_string();
    match status {
        401 | 403 => Err(ApiError::UpstreamFailed {
            provider,
            detail: format!(
                "it refused TokenRoute's credentials (HTTP {status}); the operator must fix the provider key"
            ),
        }),
        400..=499 if dialect == Dialect::OpenAi && ctx.surface == Surface::OpenAi => {
            let content_type = if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok() {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            respond::whole(session, ctx, status, content_type, Bytes::from(body))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))
        }
        400..=499 => Err(ApiError::UpstreamRejected {
            status,
            provider,
            message,
        }),
        503 | 529 => Err(ApiError::UpstreamOverloaded { provider, message }),
        _ => Err(ApiError::UpstreamFailed {
            provider,
            detail: format!("HTTP {status}: {message}"),
        }),
    }
}
