//! The retry budget: fallbacks may add a bounded share of load, so that during an
//! outage of every candidate TokenRoute does not multiply the traffic it sends.
//!
//! A token bucket (Finagle's and Envoy's retry budget): every request deposits
//! `percent / 100` of a token, time deposits `min-per-sec` tokens a second, and each
//! fallback attempt withdraws one. The bucket holds at most ten seconds' worth of
//! the minimum plus the share of a hundred requests (and starts full), so a quiet
//! period cannot save up a retry storm.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

pub struct RetryBudget {
    percent: u32,
    min_per_sec: u32,
    state: Mutex<(f64, Instant)>,
}

impl RetryBudget {
    pub fn new(percent: u32, min_per_sec: u32) -> RetryBudget {
        RetryBudget {
            percent,
            min_per_sec,
            state: Mutex::new((Self::cap_of(percent, min_per_sec), Instant::now())),
        }
    }

    fn cap_of(percent: u32, min_per_sec: u32) -> f64 {
        f64::from(min_per_sec) * 10.0 + f64::from(percent)
    }

    fn refill(&self, tokens: &mut f64, at: &mut Instant, now: Instant) {
        let elapsed = now.saturating_duration_since(*at).as_secs_f64();
        *at = now;
        *tokens = (*tokens + elapsed * f64::from(self.min_per_sec))
            .min(Self::cap_of(self.percent, self.min_per_sec));
    }

    /// A request arrived.
    pub fn deposit(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (tokens, at) = &mut *state;
        self.refill(tokens, at, Instant::now());
        *tokens = (*tokens + f64::from(self.percent) / 100.0)
            .min(Self::cap_of(self.percent, self.min_per_sec));
    }

    /// Whether one more attempt is within budget (and if so, spends it).
    pub fn withdraw(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (tokens, at) = &mut *state;
        self.refill(tokens, at, Instant::now());
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallbacks_are_bounded_by_the_share_of_requests() {
        // No time-based refill: only the 20% share (plus the starting bucket).
        let budget = RetryBudget::new(20, 0);
        let mut granted = 0;
        for _ in 0..1000 {
            budget.deposit();
            if budget.withdraw() {
                granted += 1;
            }
        }
        // 200 from the share, plus the 20-token starting bucket at most.
        assert!((200..=220).contains(&granted), "{granted}");
        // Once spent, no deposits means no more fallbacks.
        while budget.withdraw() {}
        assert!(!budget.withdraw());
    }
}
