//! `Stripe-Signature` verification: `t=<unix seconds>,v1=<hex>[,v1=<hex>...]`, each `v1`
//! an HMAC-SHA256 of `"{t}.{payload}"` under the endpoint's signing secret. Several
//! `v1` values appear while a secret is being rolled; any one matching is enough.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far the signature's timestamp may be from now (replay window), as Stripe's own
/// libraries default to.
pub const TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing Stripe-Signature header")]
    Missing,
    #[error("malformed Stripe-Signature header")]
    Malformed,
    #[error("the signature's timestamp is more than 5 minutes from now")]
    Stale,
    #[error("no v1 signature matches")]
    Mismatch,
}

/// Checks `header` against `payload` at time `now_secs`.
pub fn verify(
    header: Option<&str>,
    payload: &[u8],
    secret: &str,
    now_secs: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => {
                timestamp = Some(t.parse::<i64>().map_err(|_| SignatureError::Malformed)?)
            }
            Some(("v1", sig)) => {
                signatures.push(hex::decode(sig).map_err(|_| SignatureError::Malformed)?)
            }
            Some(_) => {} // v0 (test-mode legacy) and future schemes are ignored
            None => return Err(SignatureError::Malformed),
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now_secs - timestamp).abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    let matches = |sig: &Vec<u8>| {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            return false;
        };
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(payload);
        // Constant-time comparison.
        mac.verify_slice(sig).is_ok()
    };
    if signatures.iter().any(matches) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The header Stripe would send for `payload` at `timestamp` (tests and tools).
pub fn sign(payload: &[u8], secret: &str, timestamp: i64) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(), // HMAC takes keys of any length
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const NOW: i64 = 1_800_000_000;

    #[test]
    fn accepts_a_fresh_signature() {
        let header = sign(b"{}", SECRET, NOW - 10);
        assert_eq!(verify(Some(&header), b"{}", SECRET, NOW), Ok(()));
    }

    #[test]
    fn accepts_any_of_several_v1_signatures() {
        let good = sign(b"{}", SECRET, NOW);
        let good_sig = good.split_once("v1=").map(|(_, s)| s).unwrap_or_default();
        let header = format!("t={NOW},v1={},v1={good_sig},v0=abcd", "00".repeat(32));
        assert_eq!(verify(Some(&header), b"{}", SECRET, NOW), Ok(()));
    }

    #[test]
    fn refuses_tampering_staleness_and_garbage() {
        let header = sign(b"{\"amount\":1}", SECRET, NOW);
        assert_eq!(
            verify(Some(&header), b"{\"amount\":9}", SECRET, NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&header), b"{\"amount\":1}", "whsec_other", NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&header), b"{\"amount\":1}", SECRET, NOW + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(Some(&header), b"{\"amount\":1}", SECRET, NOW - 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(verify(None, b"", SECRET, NOW), Err(SignatureError::Missing));
        for bad in ["", "t=1", "v1=00", "t=x,v1=00", "t=1,v1=zz", "garbage"] {
            assert!(verify(Some(bad), b"", SECRET, NOW).is_err(), "{bad}");
        }
    }
}
