//! Active health checks: every `routing.health-check-interval-ms`, a TCP connect (and
//! TLS handshake, for https endpoints) to each provider endpoint, with
//! pingora-load-balancing's `TcpHealthCheck`. An endpoint that fails is no candidate
//! until a check passes; passive circuit breaking (real traffic) works beside it.
//!
//! A connect check, not an HTTP one: it needs no provider credentials, costs nothing
//! at the provider, and catches what fallback cares about most (an unreachable
//! endpoint) before a request pays the connect timeout.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pingora::lb::health_check::{HealthCheck, TcpHealthCheck};
use pingora::lb::Backend;
use tokio::sync::watch;

use super::Router;
use crate::upstream::Resolver;

pub async fn run(router: Arc<Router>, mut shutdown: watch::Receiver<bool>) {
    let resolver = Resolver::default();
    let mut checkers: HashMap<(String, bool), Box<TcpHealthCheck>> = HashMap::new();
    loop {
        let config = router.live().config.clone();
        let Some(interval) = config.routing.health_check_interval else {
            // Off; a reload may turn them on.
            if wait(&mut shutdown, Duration::from_secs(1)).await {
                return;
            }
            continue;
        };
        for provider in &config.providers {
            for endpoint in &provider.endpoints {
                let Some(url) = &endpoint.url else { continue };
                let ok = match resolver.resolve(&url.host, url.port).await {
                    Ok(addr) => {
                        let checker =
                            checkers
                                .entry((url.host.clone(), url.tls))
                                .or_insert_with(|| {
                                    if url.tls {
                                        TcpHealthCheck::new_tls(&url.host)
                                    } else {
                                        TcpHealthCheck::new()
                                    }
                                });
                        match Backend::new(&addr.to_string()) {
                            Ok(backend) => checker.check(&backend).await.is_ok(),
                            Err(_) => false,
                        }
                    }
                    Err(_) => false,
                };
                let breaker = router.health.breaker(&endpoint.key);
                if !ok {
                    tracing::warn!(endpoint = %endpoint.key, "health check failed: the endpoint is out of rotation until one passes");
                }
                breaker.checked(ok);
            }
        }
        if wait(&mut shutdown, interval).await {
            return;
        }
    }
}

/// Sleeps `d`; true when shutdown was asked for meanwhile.
async fn wait(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}
