//! Talking to providers: one HTTP exchange per attempt over Pingora's pooled
//! connectors (TLS with SNI and certificate verification, keep-alive, TCP_NODELAY).
//!
//! The data plane drives the upstream exchange itself instead of letting Pingora's
//! proxy loop do it: Pingora 0.9 replays at most 64 KiB of a request body, and a
//! request must be routed, translated and retried identically whatever its size. So
//! the whole body is read first, and each attempt sends it from memory.

mod mock;
mod resolve;

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Buf, Bytes};
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::protocols::http::v1::client::{http_req_header_to_wire, HttpSession as Http1Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};
use tokenroute_domain::config::{Endpoint, Provider, ProviderEndpoint, ProviderKind};
use tokio::io::AsyncWriteExt;

pub(crate) use resolve::Resolver;

/// Keep idle upstream connections this long for reuse.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub struct UpstreamClient {
    connector: Connector,
    resolver: Resolver,
    connect_timeout: Duration,
    read_timeout: Duration,
}

/// One request to a provider, body already translated.
pub struct UpstreamRequest<'a> {
    pub provider: &'a Provider,
    /// Which of the provider's endpoints (address and key).
    pub endpoint: &'a ProviderEndpoint,
    /// Path (and query) under the provider's base URL, e.g. `/chat/completions`.
    pub path: &'a str,
    pub body: Bytes,
    /// Headers the provider's dialect needs (e.g. `anthropic-version`).
    pub headers: &'a [(&'static str, String)],
    pub stream: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{0}")]
    Connect(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Protocol(String),
}

impl From<Box<Error>> for UpstreamError {
    fn from(e: Box<Error>) -> Self {
        let text = e.to_string();
        match e.etype() {
            ErrorType::ConnectTimedout
            | ErrorType::ReadTimedout
            | ErrorType::WriteTimedout
            | ErrorType::TLSHandshakeTimedout => UpstreamError::Timeout(text),
            ErrorType::ConnectRefused
            | ErrorType::ConnectNoRoute
            | ErrorType::ConnectError
            | ErrorType::TLSHandshakeFailure => UpstreamError::Connect(text),
            _ => UpstreamError::Protocol(text),
        }
    }
}

/// A provider's answer: status and content type now, the body chunk by chunk.
pub struct UpstreamResponse {
    pub status: u16,
    pub content_type: Option<String>,
    /// The provider's `Retry-After`, relayed with its 429s.
    pub retry_after: Option<String>,
    source: Source,
}

enum Source {
    Http {
        session: Box<HttpSession>,
        peer: Box<HttpPeer>,
    },
    Mock(VecDeque<Bytes>),
}

impl UpstreamClient {
    /// `ca_file`: verify providers against this CA bundle instead of the system's.
    pub fn new(
        connect_timeout: Duration,
        read_timeout: Duration,
        ca_file: Option<&std::path::Path>,
    ) -> UpstreamClient {
        let mut options = pingora::connectors::ConnectorOptions::new(128);
        options.ca_file = ca_file.map(|p| p.display().to_string());
        UpstreamClient {
            connector: Connector::new(Some(options)),
            resolver: Resolver::default(),
            connect_timeout,
            read_timeout,
        }
    }

    /// Sends the request and reads the response header.
    ///
    /// The exchange runs in a future of its own on the heap. Connecting (the TLS
    /// handshake included) takes a future of about 10 KiB. Awaited in place, that
    /// space would be part of the whole request's future, and a streamed answer
    /// would hold it as long as the stream stays open. Boxed, it is freed once the
    /// response header is in.
    pub async fn send(&self, req: UpstreamRequest<'_>) -> Result<UpstreamResponse, UpstreamError> {
        Box::pin(self.exchange(req)).await
    }

    async fn exchange(&self, req: UpstreamRequest<'_>) -> Result<UpstreamResponse, UpstreamError> {
        let endpoint = match (&req.provider.kind, &req.endpoint.url) {
            (ProviderKind::Mock, _) if req.path == "/embeddings" => {
                return Ok(mock::embeddings(&req.body))
            }
            (ProviderKind::Mock, _) => return Ok(mock::respond(&req.body)),
            (_, Some(endpoint)) => endpoint,
            (_, None) => {
                return Err(UpstreamError::Connect(format!(
                    "provider {} has no endpoint",
                    req.provider.id
                )))
            }
        };
        let addr = self.resolver.resolve(&endpoint.host, endpoint.port).await?;
        let mut peer = HttpPeer::new(addr, endpoint.tls, endpoint.host.clone());
        peer.options.connection_timeout = Some(self.connect_timeout);
        peer.options.total_connection_timeout = Some(self.connect_timeout);
        peer.options.read_timeout = Some(self.read_timeout);
        peer.options.idle_timeout = Some(POOL_IDLE_TIMEOUT);

        let (session, _reused) = self.connector.get_http_session(&peer).await?;
        let header = request_header(&req, endpoint)?;
        let mut session = match session {
            HttpSession::H1(h1) => HttpSession::H1(send_h1(h1, &peer, &header, req.body).await?),
            mut other => {
                other.write_request_header(Box::new(header)).await?;
                other.write_request_body(req.body, true).await?;
                other.finish_request_body().await?;
                other
            }
        };
        session.set_read_timeout(Some(self.read_timeout));
        session.read_response_header().await?;
        let response = session
            .response_header()
            .ok_or_else(|| UpstreamError::Protocol("no response header".into()))?;
        let status = response.status.as_u16();
        let header = |name: http::header::HeaderName| {
            response
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Ok(UpstreamResponse {
            status,
            content_type: header(http::header::CONTENT_TYPE),
            retry_after: header(http::header::RETRY_AFTER),
            source: Source::Http {
                session: Box::new(session),
                peer: Box::new(peer),
            },
        })
    }

    /// Returns a fully read connection to the pool; anything else is closed.
    ///
    /// Boxed for the reason [`UpstreamClient::send`] is: returning a connection to
    /// the pool takes a future of about 3 KiB, which would otherwise be part of every
    /// request's future, streams included.
    pub async fn release(&self, response: UpstreamResponse) {
        if let Source::Http { session, peer } = response.source {
            Box::pin(self.give_back(session, peer)).await;
        }
    }

    async fn give_back(&self, mut session: Box<HttpSession>, peer: Box<HttpPeer>) {
        if session.response_done() {
            self.connector
                .release_http_session(*session, &*peer, Some(POOL_IDLE_TIMEOUT))
                .await;
        } else {
            session.shutdown().await;
        }
    }
}

impl UpstreamResponse {
    /// The next piece of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        match &mut self.source {
            Source::Http { session, .. } => loop {
                match session.read_response_body().await? {
                    Some(b) if b.is_empty() => continue,
                    other => return Ok(other),
                }
            },
            Source::Mock(chunks) => Ok(chunks.pop_front()),
        }
    }

    /// The whole body, refusing more than `limit` bytes.
    pub async fn collect(&mut self, limit: usize) -> Result<Vec<u8>, UpstreamError> {
        let mut body = Vec::new();
        while let Some(chunk) = self.chunk().await? {
            if body.len() + chunk.len() > limit {
                return Err(UpstreamError::Protocol(format!(
                    "response larger than {limit} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Sends an HTTP/1.1 request, header and body, in one write.
///
/// Pingora's client flushes the header on its own and then writes the body: two
/// packets and two wake-ups of the provider's side for every request, where nginx
/// sends one. Here the header is serialized by Pingora as it would be, written with
/// the body as one vectored write, and a fresh session over the same connection reads
/// the response. (That session has no record of the request; it needs one only for
/// `HEAD`, upgrades and a request's own `Connection: close`, none of which is sent.)
async fn send_h1(
    session: Http1Session,
    peer: &HttpPeer,
    header: &RequestHeader,
    body: Bytes,
) -> Result<Http1Session, UpstreamError> {
    let head = http_req_header_to_wire(header)
        .ok_or_else(|| UpstreamError::Protocol("request header cannot be written".into()))?;
    let mut stream = session.into_inner();
    let mut whole = head.freeze().chain(body);
    let written = async {
        stream.write_all_buf(&mut whole).await?;
        stream.flush().await
    };
    written
        .await
        .map_err(|e| UpstreamError::Protocol(format!("while writing the request: {e}")))?;
    Ok(Http1Session::new_with_options(stream, peer))
}

fn request_header(
    req: &UpstreamRequest<'_>,
    endpoint: &Endpoint,
) -> Result<RequestHeader, UpstreamError> {
    let path = format!("{}{}", endpoint.base_path, req.path);
    // No map of name spellings (as for responses, see `respond::header`): the
    // connection keeps the request's header as long as the answer streams.
    let mut h = RequestHeader::build_no_case("POST", path.as_bytes(), Some(8))?;
    let default_port = if endpoint.tls { 443 } else { 80 };
    let host = if endpoint.port == default_port {
        endpoint.host.clone()
    } else {
        format!("{}:{}", endpoint.host, endpoint.port)
    };
    h.insert_header(http::header::HOST, host)?;
    h.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    h.insert_header(http::header::CONTENT_LENGTH, req.body.len().to_string())?;
    h.insert_header(
        http::header::ACCEPT,
        if req.stream {
            "text/event-stream"
        } else {
            "application/json"
        },
    )?;
    h.insert_header(
        http::header::USER_AGENT,
        concat!("tokenroute/", env!("CARGO_PKG_VERSION")),
    )?;
    if let Some(key) = &req.endpoint.api_key {
        let key = key.expose();
        match req.provider.kind {
            ProviderKind::Anthropic => h.insert_header("x-api-key", key.as_str())?,
            ProviderKind::Gemini => h.insert_header("x-goog-api-key", key.as_str())?,
            ProviderKind::OpenAi | ProviderKind::Mock => {
                h.insert_header(http::header::AUTHORIZATION, format!("Bearer {key}"))?
            }
        }
    }
    for (name, value) in req.headers {
        h.insert_header(*name, value.as_str())?;
    }
    for (name, value) in &req.provider.headers {
        h.insert_header(name.clone(), value.clone())?;
    }
    Ok(h)
}
