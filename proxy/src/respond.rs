//! Writing whole responses (JSON bodies, errors) to the client.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::ctx::RequestCtx;
use crate::error::ApiError;

/// A response header with the headers every TokenRoute response carries.
///
/// Built without Pingora's map of header-name spellings: every name here is
/// lowercase or one Pingora titles itself, so the wire is the same, and a streamed
/// answer's header (kept until the stream ends) holds one map instead of two.
pub fn header(
    status: u16,
    content_type: &str,
    ctx: &RequestCtx,
) -> pingora::Result<ResponseHeader> {
    let mut h = ResponseHeader::build_no_case(status, Some(8))?;
    h.insert_header(http::header::CONTENT_TYPE, content_type)?;
    h.insert_header("x-request-id", ctx.request_id.as_str())?;
    h.insert_header("x-tokenroute-generation-id", ctx.request_id.as_str())?;
    if let Some(provider) = &ctx.provider {
        h.insert_header("x-tokenroute-provider", provider.as_str())?;
    }
    if let Some(model) = &ctx.model {
        h.insert_header("x-tokenroute-model", model.as_str())?;
    }
    for (name, value) in &ctx.extra_headers {
        h.insert_header(*name, value.as_str())?;
    }
    Ok(h)
}

/// Writes a complete response with a body.
pub async fn whole(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    content_type: &str,
    body: Bytes,
) -> pingora::Result<()> {
    let mut h = header(status, content_type, ctx)?;
    h.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    ctx.first_byte.get_or_insert_with(std::time::Instant::now);
    if let Some(capture) = ctx.debug.as_mut() {
        capture.answer(&body);
    }
    ctx.status = status;
    ctx.response_started = true;
    session.write_response_header(Box::new(h), false).await?;
    session.write_response_body(Some(body), true).await
}

pub async fn json(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    body: Vec<u8>,
) -> pingora::Result<()> {
    whole(session, ctx, status, "application/json", Bytes::from(body)).await
}

/// Writes an error in OpenAI's shape, unless a response is already under way.
pub async fn error(
    session: &mut Session,
    ctx: &mut RequestCtx,
    e: &ApiError,
) -> pingora::Result<()> {
    if ctx.response_started {
        return Ok(());
    }
    let body = ctx.surface.error_body(e, &ctx.request_id);
    ctx.error_code = Some(e.code());
    json(session, ctx, e.status(), body).await
}
