//! Per-key request and token rates over a sliding 60-second window, with the
//! rate-limit headers OpenAI clients read.
//!
//! Written here rather than taken from a crate (e.g. `governor`): GCRA-style limiters
//! let a key that was idle use its burst *and* the refill within one minute — a
//! 60 RPM key could make 119 requests in a wall-clock minute — and do not expose the
//! remaining/reset figures the headers need. An exact window holds one timestamp per
//! request of the last minute, which is small at the rates a per-key limit sets.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokenroute_domain::KeyLimits;

const WINDOW: Duration = Duration::from_secs(60);
/// Windows kept before idle ones are swept.
const SWEEP_AT: usize = 10_000;

#[derive(Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<String, Arc<Mutex<Window>>>>,
}

#[derive(Debug, Default)]
struct Window {
    requests: VecDeque<Instant>,
    /// (ticket id, when, tokens counted)
    tokens: VecDeque<(u64, Instant, u64)>,
    token_sum: u64,
    next_id: u64,
}

/// Response headers: `x-ratelimit-*`.
pub type Headers = Vec<(&'static str, String)>;

/// What an admitted request carries: its headers, and its place in the token window.
#[derive(Debug)]
pub struct Admitted {
    pub ticket: Option<Ticket>,
    pub headers: Headers,
}

/// What a refused request is told.
#[derive(Debug)]
pub struct Refusal {
    /// `requests per minute` or `tokens per minute`.
    pub what: &'static str,
    pub limit: u64,
    pub retry_after: Duration,
    pub headers: Headers,
}

/// An admitted request's place in the token window, to correct its estimate to the
/// real count once known.
#[derive(Debug)]
pub struct Ticket {
    window: Arc<Mutex<Window>>,
    id: u64,
}

impl Window {
    fn prune(&mut self, now: Instant) {
        while self
            .requests
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            self.requests.pop_front();
        }
        while let Some(&(_, t, n)) = self.tokens.front() {
            if now.duration_since(t) < WINDOW {
                break;
            }
            self.token_sum -= n;
            self.tokens.pop_front();
        }
    }

    fn headers(&self, limits: &KeyLimits, now: Instant) -> Headers {
        let until_clear = |last: Option<Instant>| {
            last.map_or(Duration::ZERO, |t| {
                (t + WINDOW).saturating_duration_since(now)
            })
        };
        headers(
            limits,
            (
                self.requests.len() as u64,
                until_clear(self.requests.back().copied()),
            ),
            (self.token_sum, until_clear(self.tokens.back().map(|t| t.1))),
        )
    }
}

/// The `x-ratelimit-*` headers of a key whose windows hold `requests` and `tokens`,
/// each with the time until the window is clear.
pub fn headers(limits: &KeyLimits, requests: (u64, Duration), tokens: (u64, Duration)) -> Headers {
    let mut h = Vec::new();
    if let Some(rpm) = limits.rpm {
        h.push(("x-ratelimit-limit-requests", rpm.to_string()));
        h.push((
            "x-ratelimit-remaining-requests",
            rpm.saturating_sub(requests.0).to_string(),
        ));
        h.push(("x-ratelimit-reset-requests", openai_duration(requests.1)));
    }
    if let Some(tpm) = limits.tpm {
        h.push(("x-ratelimit-limit-tokens", tpm.to_string()));
        h.push((
            "x-ratelimit-remaining-tokens",
            tpm.saturating_sub(tokens.0).to_string(),
        ));
        h.push(("x-ratelimit-reset-tokens", openai_duration(tokens.1)));
    }
    h
}

impl RateLimiter {
    /// Counts a request of `estimated_tokens` against the key's limits, or refuses it.
    /// Keys without rate limits are not tracked at all.
    pub fn admit(
        &self,
        key_id: &str,
        limits: &KeyLimits,
        estimated_tokens: u64,
    ) -> Result<Admitted, Refusal> {
        if limits.rpm.is_none() && limits.tpm.is_none() {
            return Ok(Admitted {
                ticket: None,
                headers: Vec::new(),
            });
        }
        let window = self.window(key_id);
        let now = Instant::now();
        let mut w = window.lock().unwrap_or_else(PoisonError::into_inner);
        w.prune(now);
        if let Some(rpm) = limits.rpm {
            if w.requests.len() as u64 >= rpm {
                let oldest = w.requests.front().copied().unwrap_or(now);
                return Err(Refusal {
                    what: "requests per minute",
                    limit: rpm,
                    retry_after: (oldest + WINDOW).saturating_duration_since(now),
                    headers: w.headers(limits, now),
                });
            }
        }
        if let Some(tpm) = limits.tpm {
            if w.token_sum + estimated_tokens > tpm {
                // Wait until enough of the window's tokens have aged out.
                let mut freed = 0;
                let mut retry_after = WINDOW;
                for &(_, t, n) in &w.tokens {
                    freed += n;
                    if w.token_sum - freed + estimated_tokens <= tpm {
                        retry_after = (t + WINDOW).saturating_duration_since(now);
                        break;
                    }
                }
                return Err(Refusal {
                    what: "tokens per minute",
                    limit: tpm,
                    retry_after,
                    headers: w.headers(limits, now),
                });
            }
        }
        w.requests.push_back(now);
        let id = w.next_id;
        w.next_id += 1;
        w.tokens.push_back((id, now, estimated_tokens));
        w.token_sum += estimated_tokens;
        let headers = w.headers(limits, now);
        drop(w);
        Ok(Admitted {
            ticket: Some(Ticket { window, id }),
            headers,
        })
    }

    fn window(&self, key_id: &str) -> Arc<Mutex<Window>> {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if windows.len() >= SWEEP_AT {
            let now = Instant::now();
            windows.retain(|_, w| {
                let mut w = w.lock().unwrap_or_else(PoisonError::into_inner);
                w.prune(now);
                !w.requests.is_empty() || !w.tokens.is_empty()
            });
        }
        windows.entry(key_id.to_string()).or_default().clone()
    }
}

impl Ticket {
    /// Replaces the admission estimate by the tokens the request really used.
    pub fn settle(self, actual_tokens: u64) {
        let mut w = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let Window {
            tokens, token_sum, ..
        } = &mut *w;
        if let Some(entry) = tokens.iter_mut().find(|e| e.0 == self.id) {
            *token_sum = *token_sum - entry.2 + actual_tokens;
            entry.2 = actual_tokens;
        }
    }
}

/// A duration the way OpenAI writes it in `x-ratelimit-reset-*`: `20ms`, `1.5s`, `6m0s`.
pub fn openai_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let secs = ms / 1_000;
    if secs >= 60 {
        return format!("{}m{}s", secs / 60, secs % 60);
    }
    let text = format!("{secs}.{:03}", ms % 1_000);
    format!("{}s", text.trim_end_matches('0').trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rpm: Option<u64>, tpm: Option<u64>) -> KeyLimits {
        KeyLimits {
            rpm,
            tpm,
            ..KeyLimits::default()
        }
    }

    #[test]
    fn allows_exactly_the_requests_per_minute() {
        let limiter = RateLimiter::default();
        let l = limits(Some(3), None);
        for remaining in ["2", "1", "0"] {
            let headers = limiter.admit("k", &l, 0).unwrap().headers;
            assert!(headers.contains(&("x-ratelimit-remaining-requests", remaining.to_string())));
        }
        let refusal = limiter.admit("k", &l, 0).unwrap_err();
        assert_eq!((refusal.what, refusal.limit), ("requests per minute", 3));
        assert!(refusal.retry_after > Duration::from_secs(59));
        assert!(limiter.admit("other", &l, 0).is_ok(), "limits are per key");
    }

    #[test]
    fn tokens_count_the_estimate_then_the_real_use() {
        let limiter = RateLimiter::default();
        let l = limits(None, Some(100));
        let ticket = limiter.admit("k", &l, 80).unwrap().ticket;
        assert!(limiter.admit("k", &l, 30).is_err(), "80 + 30 > 100");
        ticket.unwrap().settle(20);
        let headers = limiter.admit("k", &l, 30).unwrap().headers;
        assert!(headers.contains(&("x-ratelimit-remaining-tokens", "50".to_string())));
    }

    #[test]
    fn unlimited_keys_are_not_tracked() {
        let limiter = RateLimiter::default();
        let admitted = limiter.admit("k", &KeyLimits::default(), 10).unwrap();
        assert!(admitted.ticket.is_none() && admitted.headers.is_empty());
    }

    #[test]
    fn durations_read_like_openai_s() {
        assert_eq!(openai_duration(Duration::from_millis(20)), "20ms");
        assert_eq!(openai_duration(Duration::from_millis(1_500)), "1.5s");
        assert_eq!(openai_duration(Duration::from_secs(1)), "1s");
        assert_eq!(openai_duration(Duration::from_secs(360)), "6m0s");
    }
}
