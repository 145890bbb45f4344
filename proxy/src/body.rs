//! Reading the client's request body whole, bounded by `proxy.max-body-bytes`.
//!
//! The whole body is read before routing (see `upstream`'s module docs for why),
//! so a 2 MiB request is routed, translated and retried exactly like a 2 KiB one.

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;

use crate::error::ApiError;

pub async fn read_whole(session: &mut Session, limit: usize) -> Result<Bytes, ApiError> {
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(session, limit));
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0));
    loop {
        let chunk = session.read_request_body().await.map_err(|e| {
            ApiError::invalid(format!("Could not read the request body: {e}"), None)
        })?;
        let Some(chunk) = chunk else { break };
        if body.len() + chunk.len() > limit {
            return Err(too_large(session, limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn too_large(session: &mut Session, limit: usize) -> ApiError {
    // The rest of the body stays unread: the connection cannot be reused.
    session.set_keepalive(None);
    ApiError::BodyTooLarge { limit }
}
