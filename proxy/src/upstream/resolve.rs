//! Provider host names to socket addresses, resolved asynchronously and cached.
//!
//! Pingora's peers take a socket address; resolving a name there would block a
//! worker thread, so names are resolved here (tokio's resolver) and kept a minute.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::UpstreamError;

const TTL: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Resolver {
    cache: Mutex<HashMap<(String, u16), (SocketAddr, Instant)>>,
}

impl Resolver {
    pub async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, UpstreamError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let key = (host.to_string(), port);
        if let Some((addr, at)) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            if at.elapsed() < TTL {
                return Ok(*addr);
            }
        }
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| UpstreamError::Connect(format!("cannot resolve {host}: {e}")))?
            .next()
            .ok_or_else(|| UpstreamError::Connect(format!("{host} has no address")))?;
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, (addr, Instant::now()));
        Ok(addr)
    }
}
