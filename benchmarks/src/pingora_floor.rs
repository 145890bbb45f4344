//! `pingora-floor`: Pingora 0.9's own HTTP proxy with no logic, the floor of any
//! proxy built on it. Every request goes to one upstream over Pingora's pooled
//! keep-alive connections, streamed both ways; requests under `/stream/` go (with the
//! prefix taken off) to a second upstream, so one process can stand for both the fast
//! and the spaced fake provider, as nginx does in `peers.sh`.
//!
//! It runs Pingora the way `tokenroute proxy` does — one data-plane thread, plain
//! HTTP/1.1 clients read without a buffer of their own, the same server defaults, the
//! same allocator (mimalloc without transparent huge pages) — so
//! TokenRoute minus this is what TokenRoute's own work costs, and this minus nginx is
//! what the framework costs.

use std::net::SocketAddr;

use async_trait::async_trait;
use clap::Parser;
use pingora::listeners::{L4BufferSettings, ListenerConfig, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

/// The allocator `tokenroute` runs with, so that memory and CPU compare.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Pingora's HTTP proxy with no logic, for benchmarks.
#[derive(Parser, Debug)]
#[command(name = "pingora-floor")]
struct Args {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The upstream every request goes to.
    #[arg(long)]
    upstream: SocketAddr,
    /// The upstream for requests under `/stream/` (default: `--upstream`).
    #[arg(long)]
    stream_upstream: Option<SocketAddr>,
    /// Data-plane threads (as `[proxy] threads`).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

struct Forward {
    upstream: SocketAddr,
    stream_upstream: SocketAddr,
}

/// Whether the request goes to the stream upstream (its path was rewritten).
#[derive(Default)]
struct Ctx {
    stream: bool,
}

const STREAM_PREFIX: &str = "/stream";

#[async_trait]
impl ProxyHttp for Forward {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let path = session.req_header().uri.path();
        if let Some(rest) = path.strip_prefix(STREAM_PREFIX) {
            if rest.starts_with('/') {
                let rewritten: http::Uri = rest
                    .parse()
                    .map_err(|_| Error::explain(HTTPStatus(400), "bad path"))?;
                session.req_header_mut().set_uri(rewritten);
                ctx.stream = true;
            }
        }
        let addr = if ctx.stream {
            self.stream_upstream
        } else {
            self.upstream
        };
        Ok(Box::new(HttpPeer::new(addr, false, String::new())))
    }
}

fn main() {
    let args = Args::parse();
    let conf = ServerConf {
        threads: args.threads,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = http_proxy_service(
        &server.configuration,
        Forward {
            upstream: args.upstream,
            stream_upstream: args.stream_upstream.unwrap_or(args.upstream),
        },
    );
    // As TokenRoute's plain-text listener: no read buffer under Pingora's own.
    service.add_listener(
        ListenerConfig::tcp(args.listen.to_string())
            .l4_buffer(L4BufferSettings::new(0, DEFAULT_L4_WRITE_BUFFER_SIZE)),
    );
    server.add_service(service);
    eprintln!("listening on {}", args.listen);
    server.run_forever();
}
