//! TokenRoute's data plane: a Pingora service that authenticates API keys, forwards
//! OpenAI-style requests to providers, meters their tokens and cost, and debits the
//! credit ledger — with no database round trip on the hot path.
//!
//! Module map: [`service`] (the thin `ProxyHttp`), [`exchange`] (one chat completion
//! end to end), [`auth`], [`credit`], [`chat`] (request parsing and translation),
//! [`upstream`] (providers over Pingora's connectors), [`meter`] (usage out of
//! responses, and the usage writer), [`route`] (which provider serves a request, in
//! what fallback order; `tokenroute-auto`).

pub mod auth;
mod body;
pub mod change_log;
pub mod chat;
mod client_api;
pub mod connections;
pub mod credit;
mod ctx;
mod debug_log;
pub mod dialect;
pub mod error;
mod exchange;
mod explain;
pub mod guard;
pub mod limits;
pub mod meter;
pub mod metrics;
mod models;
mod respond;
pub mod route;
mod scrub;
pub mod service;
pub mod shared;
pub mod state;
mod surface;
pub mod tls;
pub mod upstream;

use std::sync::Arc;

use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::proxy::HttpProxy;
use pingora::server::configuration::ServerConf;
use pingora::services::listening::Service;

use crate::connections::{ConnectionCounts, PerClientConnections};

pub use service::TokenRoute;
pub use state::{BackgroundTasks, ProxyState};

/// The read buffer under each TLS client connection. Pingora's default is 64 KiB,
/// held (and zeroed) for as long as the connection is open; rustls asks for a few KiB
/// per read, so a buffer still saves system calls there, and 16 KiB holds a whole TLS
/// record.
const TLS_CLIENT_READ_BUFFER: usize = 16 * 1024;

/// Plain-text client connections read without a buffer of their own: Pingora reads the
/// request head into its header buffer and the body into its body buffer, so another
/// buffer below them would only add a copy of every request byte, and 16 KiB to every
/// open stream.
const PLAIN_CLIENT_READ_BUFFER: usize = 0;

/// The write buffer under each client connection (Pingora's default: 1,460 bytes, one
/// Ethernet segment). A whole answer is written as its header and then its body; when
/// the two do not fit the buffer together, the header is sent on its own first — two
/// segments, two wake-ups of the client, where one would do. An answer of a few hundred
/// tokens with TokenRoute's headers takes 1–4 KiB, so the buffer holds 4 KiB. Streams
/// flush every event and touch only the start of it (memory per open stream did not
/// change, see benchmarks/README.md); an idle connection keeps resident what its
/// longest answer touched, at most 4 KiB.
const CLIENT_WRITE_BUFFER: usize = 4 * 1024;

/// The data plane as a Pingora service listening on the configured address.
pub fn proxy_service(
    server_conf: &Arc<ServerConf>,
    state: Arc<ProxyState>,
) -> pingora::Result<impl pingora::services::Service + 'static> {
    let listen = state.config.proxy.listen.to_string();
    let http2 = state.config.proxy.http2;
    let tls = state.tls.clone().zip(state.config.proxy.tls.clone());
    let header_timeout = state.config.proxy.client_header_timeout;
    let counts = ConnectionCounts::new(
        state.config.proxy.max_connections_per_client,
        state.config.log.trusted_proxies.clone(),
        state.metrics.connections_refused.clone(),
    );
    let mut proxy = HttpProxy::new(TokenRoute { state }, server_conf.clone());
    proxy.handle_init_modules();
    let mut options = pingora::apps::HttpServerOptions::default();
    // HTTP/2 with prior knowledge beside HTTP/1.1 on the same port.
    options.h2c = http2;
    proxy.server_options = Some(options);
    let mut service = Service::new(
        "TokenRoute data plane".to_string(),
        PerClientConnections::new(proxy, counts, header_timeout),
    );
    let read_buffer = if tls.is_some() {
        TLS_CLIENT_READ_BUFFER
    } else {
        PLAIN_CLIENT_READ_BUFFER
    };
    let mut listener = ListenerConfig::tcp(listen)
        .l4_buffer(L4BufferSettings::new(read_buffer, CLIENT_WRITE_BUFFER));
    if let Some((cert, files)) = tls {
        let mut settings = TlsSettings::intermediate(
            &files.cert.display().to_string(),
            &files.key.display().to_string(),
        )?;
        // The certificate comes from the reloading resolver, not the paths.
        settings.set_cert_resolver(cert);
        if http2 {
            settings.enable_h2();
        }
        listener = listener.tls(settings);
    }
    service.add_listener(listener);
    Ok(service)
}
