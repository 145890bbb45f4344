//! Per-key spend caps: by UTC day, by UTC month, and over the key's lifetime.
//!
//! A key with caps gets a [`KeySpend`] the first time it is used: what it spent in
//! each period (read from the store once), plus what this node settled since, plus
//! what its requests in flight hold.

use tokenroute_domain::clock::{day_start_ms, month_start_ms, next_month_start_ms};
use tokenroute_domain::{KeyLimits, NanoUsd};
use tokenroute_store::{Store, StoreError};

const DAY_MS: i64 = 86_400_000;

/// Which cap binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    Day,
    Month,
    Total,
}

impl Cap {
    pub fn describe(self) -> &'static str {
        match self {
            Cap::Day => "daily",
            Cap::Month => "monthly",
            Cap::Total => "total",
        }
    }

    /// When the cap's period starts over, in ms since the epoch (`None`: never).
    pub fn resets_at_ms(self, now_ms: i64) -> Option<i64> {
        match self {
            Cap::Day => Some(day_start_ms(now_ms) + DAY_MS),
            Cap::Month => Some(next_month_start_ms(now_ms)),
            Cap::Total => None,
        }
    }
}

#[derive(Debug)]
pub struct KeySpend {
    day_start_ms: i64,
    day: NanoUsd,
    month_start_ms: i64,
    month: NanoUsd,
    total: NanoUsd,
    pub reserved: NanoUsd,
    pub partial_in_flight: bool,
}

impl KeySpend {
    pub async fn load(store: &Store, key_id: &str, now_ms: i64) -> Result<KeySpend, StoreError> {
        let day_start = day_start_ms(now_ms);
        let month_start = month_start_ms(now_ms);
        Ok(KeySpend {
            day_start_ms: day_start,
            day: store.key_spend_since(key_id, day_start).await?,
            month_start_ms: month_start,
            month: store.key_spend_since(key_id, month_start).await?,
            total: store.key_spend_since(key_id, 0).await?,
            reserved: NanoUsd::ZERO,
            partial_in_flight: false,
        })
    }

    /// Starts the day's and the month's count over when their period has passed.
    pub fn roll(&mut self, now_ms: i64) {
        if day_start_ms(now_ms) != self.day_start_ms {
            self.day_start_ms = day_start_ms(now_ms);
            self.day = NanoUsd::ZERO;
        }
        if month_start_ms(now_ms) != self.month_start_ms {
            self.month_start_ms = month_start_ms(now_ms);
            self.month = NanoUsd::ZERO;
        }
    }

    /// What the tightest cap still allows (after what requests in flight hold), and
    /// which cap that is; `None` when the key has no cap.
    pub fn remaining(&self, limits: &KeyLimits) -> Option<(NanoUsd, Cap)> {
        [
            (limits.spend_per_day, self.day, Cap::Day),
            (limits.spend_per_month, self.month, Cap::Month),
            (limits.spend_total, self.total, Cap::Total),
        ]
        .into_iter()
        .filter_map(|(cap, spent, which)| cap.map(|cap| (cap - spent - self.reserved, which)))
        .min_by_key(|(left, _)| *left)
    }

    pub fn add_spent(&mut self, cost: NanoUsd) {
        self.day += cost;
        self.month += cost;
        self.total += cost;
    }

    /// What the key spent today, this month and in all, as this node knows it.
    pub fn spent(&self) -> (NanoUsd, NanoUsd, NanoUsd) {
        (self.day, self.month, self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spend(day: i64, month: i64, total: i64) -> KeySpend {
        KeySpend {
            day_start_ms: day_start_ms(1_795_907_861_000),
            day: NanoUsd(day),
            month_start_ms: month_start_ms(1_795_907_861_000),
            month: NanoUsd(month),
            total: NanoUsd(total),
            reserved: NanoUsd(5),
            partial_in_flight: false,
        }
    }

    #[test]
    fn the_tightest_cap_binds() {
        let s = spend(10, 50, 100);
        let limits = KeyLimits {
            spend_per_day: Some(NanoUsd(40)),
            spend_per_month: Some(NanoUsd(60)),
            spend_total: Some(NanoUsd(1000)),
            ..KeyLimits::default()
        };
        assert_eq!(s.remaining(&limits), Some((NanoUsd(5), Cap::Month)));
        assert_eq!(s.remaining(&KeyLimits::default()), None);
    }

    #[test]
    fn periods_start_over() {
        let mut s = spend(10, 50, 100);
        let next_day = day_start_ms(1_795_907_861_000) + DAY_MS + 1;
        s.roll(next_day);
        assert_eq!(s.spent(), (NanoUsd(0), NanoUsd(50), NanoUsd(100)));
        s.roll(next_month_start_ms(next_day));
        assert_eq!(s.spent(), (NanoUsd(0), NanoUsd(0), NanoUsd(100)));
        assert_eq!(Cap::Total.resets_at_ms(next_day), None);
    }
}
