//! Per-client protections on the public API: header limits, a cap on one client
//! address's requests in flight, and a limit on its failed authentications — so a
//! 401 storm from one address stops reaching the store after a few dozen attempts
//! (keys already in memory keep working from it).
//!
//! The client address is the peer, or `X-Forwarded-For` behind `log.trusted-proxies`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use pingora::http::RequestHeader;

use crate::error::ApiError;

/// The window failed authentications are counted in.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Past this many tracked addresses, expired entries are swept.
const SWEEP_FROM: usize = 50_000;

pub struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_in_flight_per_client: usize,
    pub failed_auth_per_minute: u32,
}

pub struct ClientGuard {
    limits: Limits,
    in_flight: Mutex<HashMap<String, usize>>,
    failures: Mutex<HashMap<String, (Instant, u32)>>,
}

/// A request's place in its client's in-flight count; released when dropped (with
/// the request's context, after its logging).
pub struct InFlight {
    guard: Arc<ClientGuard>,
    client: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut map = self
            .guard
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.client);
            }
        }
    }
}

impl ClientGuard {
    pub fn new(limits: Limits) -> Arc<ClientGuard> {
        Arc::new(ClientGuard {
            limits,
            in_flight: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// Refuses a request header over the size or count limit (431).
    pub fn check_headers(&self, req: &RequestHeader) -> Result<(), ApiError> {
        let count = req.headers.len();
        if count > self.limits.max_headers {
            return Err(ApiError::HeadersTooLarge(format!(
                "{count} header fields; at most {} are accepted",
                self.limits.max_headers
            )));
        }
        let bytes: usize = req
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>()
            + req.uri.path_and_query().map_or(0, |p| p.as_str().len());
        if bytes > self.limits.max_header_bytes {
            return Err(ApiError::HeadersTooLarge(format!(
                "{bytes} bytes of request line and headers; at most {} are accepted",
                self.limits.max_header_bytes
            )));
        }
        Ok(())
    }

    /// Counts a request in flight for `client`, or refuses it (429) at the cap.
    pub fn enter(self: &Arc<Self>, client: &str) -> Result<InFlight, ApiError> {
        let mut map = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(client.to_string()).or_insert(0);
        if *n >= self.limits.max_in_flight_per_client {
            return Err(ApiError::TooManyFromClient(
                self.limits.max_in_flight_per_client,
            ));
        }
        *n += 1;
        Ok(InFlight {
            guard: self.clone(),
            client: client.to_string(),
        })
    }

    /// Whether `client` failed authentication too often in the last minute.
    pub fn auth_blocked(&self, client: &str, now: Instant) -> bool {
        let map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(client).is_some_and(|(since, n)| {
            now.duration_since(*since) < FAILURE_WINDOW && *n >= self.limits.failed_auth_per_minute
        })
    }

    /// `client` presented a missing, unknown or revoked key.
    pub fn auth_failed(&self, client: &str, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() > SWEEP_FROM {
            map.retain(|_, (since, _)| now.duration_since(*since) < FAILURE_WINDOW);
        }
        let entry = map.entry(client.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0) >= FAILURE_WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Arc<ClientGuard> {
        ClientGuard::new(Limits {
            max_header_bytes: 200,
            max_headers: 3,
            max_in_flight_per_client: 2,
            failed_auth_per_minute: 3,
        })
    }

    #[test]
    fn in_flight_requests_are_capped_per_client_and_released() {
        let g = guard();
        let a = g.enter("1.2.3.4").unwrap();
        let _b = g.enter("1.2.3.4").unwrap();
        assert!(g.enter("1.2.3.4").is_err());
        assert!(g.enter("5.6.7.8").is_ok(), "another client is not affected");
        drop(a);
        assert!(g.enter("1.2.3.4").is_ok());
    }

    #[test]
    fn failed_authentications_block_for_the_rest_of_the_minute() {
        let g = guard();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(!g.auth_blocked("c", t0));
            g.auth_failed("c", t0);
        }
        assert!(g.auth_blocked("c", t0));
        assert!(!g.auth_blocked("d", t0));
        assert!(!g.auth_blocked("c", t0 + FAILURE_WINDOW), "a new window");
    }

    #[test]
    fn header_limits_are_enforced() {
        let g = guard();
        let mut req = RequestHeader::build("GET", b"/v1/models", None).unwrap();
        req.insert_header("a", "1").unwrap();
        assert!(g.check_headers(&req).is_ok());
        req.insert_header("b", "x".repeat(300)).unwrap();
        assert!(g.check_headers(&req).is_err(), "too many bytes");
        let mut many = RequestHeader::build("GET", b"/", None).unwrap();
        for h in ["a", "b", "c", "d"] {
            many.insert_header(h, "1").unwrap();
        }
        assert!(g.check_headers(&many).is_err(), "too many fields");
    }
}
