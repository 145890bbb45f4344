//! Exact money: integer nano-USD from the price table to the ledger.
//!
//! Prices are configured as decimal strings (USD per 1M tokens) and parsed without
//! floating point. A request's cost is rounded up to the next nano-USD once, on the
//! total, so usage sums and ledger sums reconcile to the unit.

use std::fmt;
use std::ops::{Add, AddAssign, Neg, Sub, SubAssign};

/// Nano-USD per USD.
pub const NANOS_PER_USD: i64 = 1_000_000_000;
const TOKENS_PER_PRICE_UNIT: i128 = 1_000_000;

/// An amount of money in nano-USD (10⁻⁹ USD). Signed: ledger debits are negative.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct NanoUsd(pub i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("`{0}` is not a decimal USD amount (expected digits with an optional `.` and at most 9 decimals, e.g. \"2.50\")")]
    Malformed(String),
    #[error("`{0}` has more than 9 decimal places; the smallest unit is 0.000000001 USD")]
    TooPrecise(String),
    #[error("`{0}` is too large")]
    Overflow(String),
}

impl NanoUsd {
    pub const ZERO: NanoUsd = NanoUsd(0);

    /// Parses a decimal USD amount such as `"10"`, `"2.50"`, `"-0.000000001"` exactly.
    pub fn parse_usd(text: &str) -> Result<NanoUsd, MoneyError> {
        let malformed = || MoneyError::Malformed(text.to_string());
        let trimmed = text.trim();
        let (negative, digits) = match trimmed.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let (whole, frac) = match digits.split_once('.') {
            Some((w, f)) => (w, f),
            None => (digits, ""),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() && frac.is_empty()
            || !all_digits(whole)
            || !all_digits(frac)
            || digits.ends_with('.') && frac.is_empty() && whole.is_empty()
        {
            return Err(malformed());
        }
        if frac.len() > 9 {
            return Err(MoneyError::TooPrecise(text.to_string()));
        }
        let overflow = || MoneyError::Overflow(text.to_string());
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| overflow())?
        };
        let frac_nanos: i64 = if frac.is_empty() {
            0
        } else {
            let padded = format!("{frac:0<9}");
            padded.parse().map_err(|_| malformed())?
        };
        let nanos = whole
            .checked_mul(NANOS_PER_USD)
            .and_then(|n| n.checked_add(frac_nanos))
            .ok_or_else(overflow)?;
        Ok(NanoUsd(if negative { -nanos } else { nanos }))
    }

    pub fn nanos(self) -> i64 {
        self.0
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub fn min(self, other: NanoUsd) -> NanoUsd {
        NanoUsd(self.0.min(other.0))
    }

    /// The amount in USD as a float, for JSON fields clients display (`usage.cost`).
    /// Never used for arithmetic.
    pub fn as_usd_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_USD as f64
    }

    /// The amount as a plain decimal string without `$`, e.g. `"0.0000084"`.
    pub fn to_decimal(self) -> String {
        self.to_string().replacen('$', "", 1)
    }
}

impl fmt::Display for NanoUsd {
    /// USD with at least two decimals and no trailing zeros past them: `$0.000150`, `$12.50`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let whole = abs / NANOS_PER_USD as u64;
        let frac = abs % NANOS_PER_USD as u64;
        let mut frac_text = format!("{frac:09}");
        while frac_text.len() > 2 && frac_text.ends_with('0') {
            frac_text.pop();
        }
        write!(f, "{sign}${whole}.{frac_text}")
    }
}

impl Add for NanoUsd {
    type Output = NanoUsd;
    fn add(self, rhs: NanoUsd) -> NanoUsd {
        NanoUsd(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign for NanoUsd {
    fn add_assign(&mut self, rhs: NanoUsd) {
        *self = *self + rhs;
    }
}

impl Sub for NanoUsd {
    type Output = NanoUsd;
    fn sub(self, rhs: NanoUsd) -> NanoUsd {
        NanoUsd(self.0.saturating_sub(rhs.0))
    }
}

impl SubAssign for NanoUsd {
    fn sub_assign(&mut self, rhs: NanoUsd) {
        *self = *self - rhs;
    }
}

impl Neg for NanoUsd {
    type Output = NanoUsd;
    fn neg(self) -> NanoUsd {
        NanoUsd(self.0.saturating_neg())
    }
}

/// A model's price: nano-USD per one million input and output tokens, and for input
/// read from the provider's prompt cache when the model prices it differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Price {
    pub input_per_mtok: NanoUsd,
    pub output_per_mtok: NanoUsd,
    /// `None`: cached input costs what other input costs.
    pub cached_input_per_mtok: Option<NanoUsd>,
}

impl Price {
    /// The exact cost of a request, rounded up to the next nano-USD (never down:
    /// a request that used tokens is never free by rounding).
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> NanoUsd {
        self.cost_with_cache(input_tokens, 0, output_tokens)
    }

    /// As [`Price::cost`], when `cached_tokens` of the input came from the provider's
    /// prompt cache (they are part of `input_tokens`).
    pub fn cost_with_cache(
        &self,
        input_tokens: u64,
        cached_tokens: u64,
        output_tokens: u64,
    ) -> NanoUsd {
        let cached = cached_tokens.min(input_tokens);
        let cached_price = self.cached_input_per_mtok.unwrap_or(self.input_per_mtok);
        let numerator = i128::from(input_tokens - cached) * i128::from(self.input_per_mtok.0)
            + i128::from(cached) * i128::from(cached_price.0)
            + i128::from(output_tokens) * i128::from(self.output_per_mtok.0);
        let nanos = (numerator + TOKENS_PER_PRICE_UNIT - 1).div_euclid(TOKENS_PER_PRICE_UNIT);
        NanoUsd(i64::try_from(nanos).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_usd_exactly() {
        assert_eq!(NanoUsd::parse_usd("10").unwrap(), NanoUsd(10_000_000_000));
        assert_eq!(NanoUsd::parse_usd("2.50").unwrap(), NanoUsd(2_500_000_000));
        assert_eq!(NanoUsd::parse_usd("0.15").unwrap(), NanoUsd(150_000_000));
        assert_eq!(NanoUsd::parse_usd(".5").unwrap(), NanoUsd(500_000_000));
        assert_eq!(NanoUsd::parse_usd("0.000000001").unwrap(), NanoUsd(1));
        assert_eq!(NanoUsd::parse_usd("-1.5").unwrap(), NanoUsd(-1_500_000_000));
    }

    #[test]
    fn rejects_what_is_not_money() {
        for bad in ["", ".", "-", "1.2.3", "abc", "1e3", "1,5", "0x10", " . "] {
            assert!(
                NanoUsd::parse_usd(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
        assert!(matches!(
            NanoUsd::parse_usd("0.0000000001"),
            Err(MoneyError::TooPrecise(_))
        ));
        assert!(matches!(
            NanoUsd::parse_usd("99999999999999"),
            Err(MoneyError::Overflow(_))
        ));
    }

    #[test]
    fn cost_rounds_up_once_on_the_total() {
        // gpt-4o-mini: $0.15 in, $0.60 out per 1M tokens.
        let price = Price {
            input_per_mtok: NanoUsd::parse_usd("0.15").unwrap(),
            output_per_mtok: NanoUsd::parse_usd("0.60").unwrap(),
            cached_input_per_mtok: Some(NanoUsd::parse_usd("0.075").unwrap()),
        };
        // 19 in, 10 out: 19*150 + 10*600 = 8_850 nanos exactly.
        assert_eq!(price.cost(19, 10), NanoUsd(8_850));
        assert_eq!(price.cost(1, 0), NanoUsd(150));
        assert_eq!(price.cost(0, 0), NanoUsd(0));
        // A very cheap model: $0.0000001 per 1M tokens is 0.0001 nano a token.
        let cheap = Price {
            input_per_mtok: NanoUsd::parse_usd("0.0000001").unwrap(),
            output_per_mtok: NanoUsd::parse_usd("0.0000003").unwrap(),
            cached_input_per_mtok: None,
        };
        // One token rounds up to 1 nano; three tokens are 0.0003 nano → 1, not 3 × 1.
        assert_eq!(cheap.cost(1, 0), NanoUsd(1));
        assert_eq!(cheap.cost(3, 0), NanoUsd(1));
        // 7M in + 1M out = 700 + 300 nanos exactly: no rounding when exact.
        assert_eq!(cheap.cost(7_000_000, 1_000_000), NanoUsd(1_000));
        // Without a cached price, cached input costs what other input costs.
        assert_eq!(
            cheap.cost_with_cache(7_000_000, 5_000_000, 1_000_000),
            NanoUsd(1_000)
        );
    }

    #[test]
    fn cached_input_has_its_own_price() {
        let price = Price {
            input_per_mtok: NanoUsd::parse_usd("0.15").unwrap(),
            output_per_mtok: NanoUsd::parse_usd("0.60").unwrap(),
            cached_input_per_mtok: Some(NanoUsd::parse_usd("0.075").unwrap()),
        };
        // 100 in, of which 40 cached, 10 out: 60×150 + 40×75 + 10×600 = 18,000.
        assert_eq!(price.cost_with_cache(100, 40, 10), NanoUsd(18_000));
        // More cached than input (a provider's odd count) is capped at the input.
        assert_eq!(price.cost_with_cache(10, 50, 0), NanoUsd(750));
    }

    #[test]
    fn displays_as_usd() {
        assert_eq!(NanoUsd(12_500_000_000).to_string(), "$12.50");
        assert_eq!(NanoUsd(150_000).to_string(), "$0.00015");
        assert_eq!(NanoUsd(-1).to_string(), "-$0.000000001");
    }
}
