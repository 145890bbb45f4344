//! The Stripe-Signature parser on any header and payload: an answer, never a panic;
//! and a header it signed itself always verifies.
#![no_main]

#[allow(dead_code)]
#[path = "../../control-plane/src/stripe/signature.rs"]
mod signature;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (header, payload) = data.split_at(split);
    if let Ok(header) = std::str::from_utf8(header) {
        let _ = signature::verify(Some(header), payload, "whsec_fuzz", 1_700_000_000);
    }
    let signed = signature::sign(payload, "whsec_fuzz", 1_700_000_000);
    assert_eq!(
        signature::verify(Some(&signed), payload, "whsec_fuzz", 1_700_000_100),
        Ok(())
    );
});
