//! Client connections: a cap on the connections one address holds open at once, and
//! a deadline for each request's headers.
//!
//! A slow client (slowloris: headers one byte at a time, each byte inside Pingora's
//! 60 s read timeout) costs the data plane a connection, not a worker; what it must
//! not get is every connection, nor one for ever. Pingora 0.9 has no hook for a
//! connection's end nor a bound on the time its headers take, so the data plane's
//! application is wrapped ([`PerClientConnections`]) and every connection's stream too
//! ([`Tracked`]):
//! - each new connection is counted against its peer address and carries its place in
//!   the count, given back when the stream is dropped — whenever and however the
//!   connection ends (closed by either side, timed out, handed over in an upgrade). A
//!   connection over the cap gets a 429 in OpenAI's error shape and is closed (see
//!   [`refuse`]);
//! - from the first byte of a request, its headers must be in within
//!   `proxy.client-header-timeout-ms`, or the connection is closed. The request's
//!   start ([`request_started`], as the data plane takes it) stops the clock, its end
//!   ([`request_ended`]) lets the next request's first byte start it again; the body
//!   has its own limit (`client-body-timeout-ms`). HTTP/2 connections (ALPN or prior
//!   knowledge) carry many requests at once over one stream of frames: not timed here.
//!
//! The address is the TCP peer's: behind a proxy listed in `log.trusted-proxies`
//! every client shares that proxy's address, so its connections are not counted (its
//! own limits apply; the per-client request limits still see `X-Forwarded-For`).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef, ALPN};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType,
};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::error::ApiError;

/// How long a refused connection is waited for: its first bytes, the answer's write,
/// the lingering close — each.
const REFUSAL_WAIT: Duration = Duration::from_millis(700);

/// Refused connections answered at once; more are closed without an answer.
const POLITE_REFUSALS: usize = 64;

/// Open connections per client address.
pub struct ConnectionCounts {
    limit: usize,
    trusted: Vec<ipnet::IpNet>,
    open: Mutex<HashMap<IpAddr, usize>>,
    refused: prometheus::IntCounter,
    /// Connections being refused right now.
    refusing: AtomicUsize,
}

impl ConnectionCounts {
    pub fn new(
        limit: usize,
        trusted: Vec<ipnet::IpNet>,
        refused: prometheus::IntCounter,
    ) -> Arc<ConnectionCounts> {
        Arc::new(ConnectionCounts {
            limit,
            trusted,
            open: Mutex::new(HashMap::new()),
            refused,
            refusing: AtomicUsize::new(0),
        })
    }

    /// A place for a new connection from `peer`, unless it has `limit` open already.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Place> {
        if self.trusted.iter().any(|net| net.contains(&peer)) {
            return Some(Place { counts: None, peer });
        }
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(peer).or_insert(0);
        if *n >= self.limit {
            self.refused.inc();
            return None;
        }
        *n += 1;
        Some(Place {
            counts: Some(self.clone()),
            peer,
        })
    }

    /// Closes a connection over the cap: with an answer (see [`refuse`]) while few
    /// are being refused, at once past that — a flood of refused connections must not
    /// hold sockets for seconds each.
    async fn refuse(&self, stream: Stream) {
        if self.refusing.fetch_add(1, Ordering::AcqRel) < POLITE_REFUSALS {
            refuse(stream, &ApiError::TooManyConnections(self.limit)).await;
        }
        self.refusing.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's place in its address's count, given back when dropped.
struct Place {
    counts: Option<Arc<ConnectionCounts>>,
    peer: IpAddr,
}

impl Drop for Place {
    fn drop(&mut self) {
        let Some(counts) = &self.counts else { return };
        let mut open = counts.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.peer);
            }
        }
    }
}

/// The data plane's application, with its connections counted per client address and
/// their request headers timed.
pub struct PerClientConnections<A> {
    inner: Arc<A>,
    counts: Arc<ConnectionCounts>,
    header_timeout: Duration,
}

impl<A> PerClientConnections<A> {
    pub fn new(
        inner: A,
        counts: Arc<ConnectionCounts>,
        header_timeout: Duration,
    ) -> PerClientConnections<A> {
        PerClientConnections {
            inner: Arc::new(inner),
            counts,
            header_timeout,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for PerClientConnections<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let place = match peer {
            None => None,
            Some(peer) => match self.counts.admit(peer) {
                Some(place) => Some(place),
                None => {
                    self.counts.refuse(stream).await;
                    return None;
                }
            },
        };
        let phase = if stream.selected_alpn_proto() == Some(ALPN::H2) {
            Phase::Untimed
        } else {
            Phase::Idle
        };
        let stream = Box::new(Tracked {
            inner: stream,
            _place: place,
            phase: AtomicU8::new(phase as u8),
            header_timeout: self.header_timeout,
            header_deadline: None,
            opening: [0; H2_PREFACE.len()],
            opening_len: 0,
        });
        // Pingora 0.9 serves every request of the connection inside this call.
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// The first bytes of an HTTP/2 connection with prior knowledge (RFC 9113, 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// Where a connection is between its requests, for the header clock.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// Waiting for a request (Pingora's read and keep-alive timeouts bound this).
    Idle = 0,
    /// A request's first bytes are in: its headers must follow before the deadline.
    Headers = 1,
    /// The request is being served (its body has its own limit).
    Serving = 2,
    /// HTTP/2: never timed here.
    Untimed = 3,
}

/// The request's headers are in (the data plane's first look at a request).
pub fn request_started(session: &pingora::proxy::Session) {
    set_phase(session, Phase::Serving);
}

/// The request is answered: the connection waits for the next one.
pub fn request_ended(session: &pingora::proxy::Session) {
    set_phase(session, Phase::Idle);
}

fn set_phase(session: &pingora::proxy::Session, phase: Phase) {
    let tracked = session
        .as_downstream()
        .stream()
        .and_then(|s| s.as_any().downcast_ref::<Tracked>());
    if let Some(tracked) = tracked {
        // An HTTP/2 connection stays untimed (its requests share the stream).
        let _ = tracked
            .phase
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now != Phase::Untimed as u8).then_some(phase as u8)
            });
    }
}

/// Answers a connection over the cap and closes it. The answer waits for the client's
/// first bytes (a client that reads only after writing its request, as HTTP clients
/// do, would take an answer before it as a protocol error), and the close lingers
/// while the client may still be sending, so the answer is read rather than reset.
/// HTTP/2 clients get the close. At most ~2 s per refused connection.
async fn refuse(mut stream: Stream, error: &ApiError) {
    // On the heap: an array here would be part of every admitted connection's
    // future (see `process_new`), for as long as the connection is open.
    let mut buf = vec![0u8; 4096];
    let waited = tokio::time::timeout(REFUSAL_WAIT, stream.read(&mut buf)).await;
    if matches!(waited, Ok(Ok(0)) | Ok(Err(_))) {
        return;
    }
    if stream.selected_alpn_proto() != Some(ALPN::H2) {
        let body = error.body();
        let mut answer = format!(
            "HTTP/1.1 {} Too Many Requests\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
            error.status(),
            body.len()
        )
        .into_bytes();
        answer.extend_from_slice(&body);
        let write = async {
            stream.write_all(&answer).await?;
            stream.flush().await
        };
        let _ = tokio::time::timeout(REFUSAL_WAIT, write).await;
    }
    Shutdown::shutdown(&mut *stream).await;
    let linger = async { while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(REFUSAL_WAIT, linger).await;
}

/// A client connection's stream: the stream itself, its place in its address's count
/// (none for a trusted proxy), and the header clock. It is Pingora's `IO` (by
/// Pingora's blanket implementation) by passing every call on.
struct Tracked {
    inner: Stream,
    _place: Option<Place>,
    /// A [`Phase`]; the data plane's hooks change it through `&Tracked`.
    phase: AtomicU8,
    header_timeout: Duration,
    /// Set when a request's first bytes arrive.
    header_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The connection's first bytes, to recognise HTTP/2 with prior knowledge.
    opening: [u8; H2_PREFACE.len()],
    opening_len: u8,
}

impl fmt::Debug for Tracked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracked")
            .field("inner", &self.inner)
            .finish()
    }
}

impl Tracked {
    fn late() -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "request headers took longer than proxy.client-header-timeout-ms",
        )
    }

    /// Notes the connection's first bytes; true once they are HTTP/2's preface.
    fn opens_http2(&mut self, fresh: &[u8]) -> bool {
        let have = usize::from(self.opening_len);
        if have == H2_PREFACE.len() {
            return false;
        }
        let take = fresh.len().min(H2_PREFACE.len() - have);
        self.opening[have..have + take].copy_from_slice(&fresh[..take]);
        self.opening_len += take as u8;
        usize::from(self.opening_len) == H2_PREFACE.len() && self.opening == *H2_PREFACE
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        let phase = self.phase.load(Ordering::Acquire);
        if phase == Phase::Serving as u8 || phase == Phase::Untimed as u8 {
            return read;
        }
        match read {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                if self.opens_http2(&buf.filled()[before..]) {
                    self.phase.store(Phase::Untimed as u8, Ordering::Release);
                } else if phase == Phase::Idle as u8 {
                    let timeout = self.header_timeout;
                    self.header_deadline = Some(Box::pin(tokio::time::sleep(timeout)));
                    // Unless the data plane moved it meanwhile.
                    let _ = self.phase.compare_exchange(
                        Phase::Idle as u8,
                        Phase::Headers as u8,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                } else if self
                    .header_deadline
                    .as_ref()
                    .is_some_and(|d| d.is_elapsed())
                {
                    return Poll::Ready(Err(Tracked::late()));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if phase == Phase::Headers as u8 => {
                let late = self
                    .header_deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if late {
                    Poll::Ready(Err(Tracked::late()))
                } else {
                    Poll::Pending
                }
            }
            other => other,
        }
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for Tracked {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(&mut *self.inner).await
    }
}

impl UniqueID for Tracked {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Tracked {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Tracked {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Tracked {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Tracked {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for Tracked {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An application that ends every connection at once.
    struct Nothing;

    #[async_trait]
    impl ServerApp for Nothing {
        async fn process_new(self: &Arc<Self>, _: Stream, _: &ShutdownWatch) -> Option<Stream> {
            None
        }
    }

    #[tokio::test]
    async fn an_admitted_connection_does_not_carry_the_refusal_in_its_future() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let stream: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(server));
        let refused = prometheus::IntCounter::new("refused", "refused").unwrap();
        let counts = ConnectionCounts::new(1, Vec::new(), refused);
        let app = Arc::new(PerClientConnections::new(
            Nothing,
            counts,
            Duration::from_secs(1),
        ));
        let (_shutdown, watch) = tokio::sync::watch::channel(false);

        // Every open connection holds this future until it closes; the refusal's
        // 4 KiB read buffer, awaited in place, would be part of it.
        let future = app.process_new(stream, &watch);
        let size = std::mem::size_of_val(&*future);
        assert!(size < 1024, "a connection's future is {size} bytes");
    }
}
