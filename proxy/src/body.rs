//! Reading the client's request body whole, bounded by `proxy.max-body-bytes`, and
//! draining one refused as too large.
//!
//! The whole body is read before routing (see `upstream`'s module docs for why),
//! so a 2 MiB request is routed, translated and retried exactly like a 2 KiB one.

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;

use crate::error::ApiError;

/// The whole body, bounded in size (413) and in time (408), and refused (400) when
/// its JSON nests deeper than `max_depth`.
pub async fn read_json(
    session: &mut Session,
    proxy: &tokenroute_domain::config::ProxyConfig,
) -> Result<Bytes, ApiError> {
    let read = tokio::time::timeout(
        proxy.client_body_timeout,
        read_whole(session, proxy.max_body_bytes),
    )
    .await;
    let body = match read {
        Ok(body) => body?,
        Err(_) => {
            session.set_keepalive(None);
            return Err(ApiError::ClientTimeout(
                u64::try_from(proxy.client_body_timeout.as_millis()).unwrap_or(u64::MAX),
            ));
        }
    };
    check_depth(&body, proxy.max_json_depth)?;
    Ok(body)
}

/// Refuses JSON whose arrays and objects nest deeper than `max` — before any parser
/// recurses into it. A byte scan: brackets inside strings do not count.
pub fn check_depth(bytes: &[u8], max: usize) -> Result<(), ApiError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Err(ApiError::invalid(
                        format!("The request body nests deeper than {max} levels."),
                        None,
                    ));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// After refusing a body as too large, reads (and drops) what the client is still
/// sending — up to a bound — before the connection closes: closing with unread data
/// makes the kernel reset the connection, and the client may lose the 413 it was
/// sent (nginx's "lingering close"). A body declared larger than the bound is not
/// read at all; one without a declared length (chunked) is read up to the bound, and
/// any read stops after `MAX_LINGER`.
pub async fn linger(session: &mut Session) {
    const MAX_LINGER_BYTES: usize = 64 * 1024 * 1024;
    const MAX_LINGER: std::time::Duration = std::time::Duration::from_secs(5);
    if declared_length(session).is_some_and(|n| n > MAX_LINGER_BYTES) {
        return;
    }
    let drain = async {
        let mut read = 0;
        while let Ok(Some(chunk)) = session.read_request_body().await {
            read += chunk.len();
            if read > MAX_LINGER_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(MAX_LINGER, drain).await;
}

/// The body's `Content-Length`, when the client declared one.
fn declared_length(session: &Session) -> Option<usize> {
    session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}

async fn read_whole(session: &mut Session, limit: usize) -> Result<Bytes, ApiError> {
    let declared = declared_length(session);
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

#[cfg(test)]
mod tests {
    use super::check_depth;

    #[test]
    fn depth_counts_brackets_outside_strings_only() {
        assert!(check_depth(br#"{"a":[[1]]}"#, 3).is_ok());
        assert!(check_depth(br#"{"a":[[[1]]]}"#, 3).is_err());
        assert!(
            check_depth(br#"{"a":"[[[[[[\"[[["}"#, 1).is_ok(),
            "inside a string"
        );
        assert!(check_depth(&b"[".repeat(100_000), 64).is_err());
    }
}
