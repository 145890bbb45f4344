//! Endpoint health: a passive circuit breaker per endpoint, fed by real traffic, and
//! the verdict of active checks.
//!
//! Closed: requests flow; `breaker-failures` consecutive failures (connect errors,
//! timeouts, 5xx, 429) open it. Open: the endpoint is not a candidate for
//! `breaker-open-ms`. Then half-open: one request is let through as a probe; its
//! success closes the circuit, its failure opens it again. An endpoint whose active
//! check fails is down until a check passes, whatever its circuit says.
//!
//! Breakers are keyed by `provider/endpoint` and outlive config reloads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokenroute_domain::config::RoutingSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
        }
    }

    /// As a gauge value: 0 closed, 1 half-open, 2 open.
    pub fn level(self) -> i64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => 1,
            CircuitState::Open => 2,
        }
    }
}

#[derive(Debug, Default)]
struct BreakerState {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    /// A half-open probe is in flight.
    probing: bool,
    /// The last active check failed.
    check_failed: bool,
    /// Recent time to response header, exponentially averaged (ms).
    latency_ms: Option<f64>,
}

#[derive(Debug, Default)]
pub struct Breaker {
    state: Mutex<BreakerState>,
}

impl Breaker {
    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn state(&self, now: Instant) -> CircuitState {
        let s = self.lock();
        match s.open_until {
            _ if s.check_failed => CircuitState::Open,
            None => CircuitState::Closed,
            Some(until) if now < until => CircuitState::Open,
            Some(_) => CircuitState::HalfOpen,
        }
    }

    /// Whether a request may go here now; a half-open circuit admits one probe.
    pub fn try_acquire(&self, now: Instant) -> bool {
        let mut s = self.lock();
        if s.check_failed {
            return false;
        }
        match s.open_until {
            None => true,
            Some(until) if now < until => false,
            Some(_) if s.probing => false,
            Some(_) => {
                s.probing = true;
                true
            }
        }
    }

    pub fn success(&self, latency: Duration) {
        let mut s = self.lock();
        s.consecutive_failures = 0;
        s.open_until = None;
        s.probing = false;
        let ms = latency.as_secs_f64() * 1000.0;
        s.latency_ms = Some(s.latency_ms.map_or(ms, |avg| avg * 0.8 + ms * 0.2));
    }

    pub fn failure(&self, now: Instant, settings: &RoutingSettings) {
        let mut s = self.lock();
        s.consecutive_failures = s.consecutive_failures.saturating_add(1);
        if s.probing || s.consecutive_failures >= settings.breaker_failures {
            s.open_until = Some(now + settings.breaker_open);
            s.probing = false;
        }
    }

    /// A request that acquired the half-open probe ended without a verdict.
    pub fn release_probe(&self) {
        self.lock().probing = false;
    }

    pub fn checked(&self, ok: bool) {
        self.lock().check_failed = !ok;
    }

    pub fn latency_ms(&self) -> Option<f64> {
        self.lock().latency_ms
    }
}

/// Every endpoint's breaker.
#[derive(Default)]
pub struct Health {
    breakers: RwLock<HashMap<String, Arc<Breaker>>>,
}

impl Health {
    /// The breaker of `provider/endpoint`, made on first use.
    pub fn breaker(&self, endpoint: &str) -> Arc<Breaker> {
        if let Some(b) = self
            .breakers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(endpoint)
        {
            return b.clone();
        }
        self.breakers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(endpoint.to_string())
            .or_default()
            .clone()
    }

    /// Why `provider/endpoint` is no candidate now, if it is not.
    pub fn unavailable_because(&self, endpoint: &str, now: Instant) -> Option<&'static str> {
        let breakers = self.breakers.read().unwrap_or_else(PoisonError::into_inner);
        let breaker = breakers.get(endpoint)?;
        if breaker.lock().check_failed {
            return Some("health check failing");
        }
        (breaker.state(now) == CircuitState::Open).then_some("circuit open")
    }

    pub fn latency_ms(&self, endpoint: &str) -> Option<f64> {
        self.breakers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(endpoint)
            .and_then(|b| b.latency_ms())
    }

    /// Every known endpoint's circuit state, for metrics.
    pub fn states(&self, now: Instant) -> Vec<(String, CircuitState)> {
        self.breakers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, b)| (k.clone(), b.state(now)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RoutingSettings {
        RoutingSettings {
            max_attempts: 3,
            deadline: Duration::from_secs(60),
            retry_budget_percent: 20,
            retry_budget_min_per_sec: 10,
            breaker_failures: 3,
            breaker_open: Duration::from_secs(30),
            health_check_interval: None,
        }
    }

    #[test]
    fn opens_after_consecutive_failures_and_probes_when_half_open() {
        let b = Breaker::default();
        let t0 = Instant::now();
        let s = settings();
        b.failure(t0, &s);
        b.success(Duration::from_millis(5));
        b.failure(t0, &s);
        b.failure(t0, &s);
        assert_eq!(
            b.state(t0),
            CircuitState::Closed,
            "a success resets the count"
        );
        b.failure(t0, &s);
        assert_eq!(b.state(t0), CircuitState::Open);
        assert!(!b.try_acquire(t0));
        let later = t0 + Duration::from_secs(31);
        assert_eq!(b.state(later), CircuitState::HalfOpen);
        assert!(b.try_acquire(later), "one probe");
        assert!(!b.try_acquire(later), "only one");
        b.failure(later, &s);
        assert_eq!(b.state(later), CircuitState::Open, "a failed probe reopens");
        let again = later + Duration::from_secs(31);
        assert!(b.try_acquire(again));
        b.success(Duration::from_millis(5));
        assert_eq!(b.state(again), CircuitState::Closed);
    }

    #[test]
    fn a_failed_active_check_takes_the_endpoint_out() {
        let h = Health::default();
        let now = Instant::now();
        assert!(h.unavailable_because("p/default", now).is_none());
        h.breaker("p/default").checked(false);
        assert!(h.unavailable_because("p/default", now).is_some());
        h.breaker("p/default").checked(true);
        assert!(h.unavailable_because("p/default", now).is_none());
    }
}
