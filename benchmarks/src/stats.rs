//! Latency percentiles, as every load tool reports them.

use std::time::Duration;

/// The `p`th percentile (0–100, nearest rank) of `sorted`, in milliseconds; NaN when
/// there is nothing to rank.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_rank_the_sorted_latencies() {
        let ms: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&ms, 0.0), 1.0);
        assert_eq!(percentile_ms(&ms, 50.0), 51.0);
        assert_eq!(percentile_ms(&ms, 99.0), 99.0);
        assert_eq!(percentile_ms(&ms, 100.0), 100.0);
        assert!(percentile_ms(&[], 50.0).is_nan());
    }
}
