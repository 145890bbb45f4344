//! TokenRoute API keys: `tr-` followed by 32 random bytes in URL-safe base64.
//!
//! A key is shown once, at creation; the store keeps only its SHA-256. The display
//! prefix and last four characters let people recognise a key without holding it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

pub const KEY_PREFIX: &str = "tr-";
const RANDOM_BYTES: usize = 32;
/// Length of the encoded random part: 32 bytes → 43 base64url characters.
const ENCODED_LEN: usize = 43;

/// A freshly generated key. Its plaintext exists only until it is shown to the user.
pub struct ApiKey {
    plaintext: String,
}

/// The SHA-256 of a key, hex-encoded: what the store and the caches hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyHash(pub String);

impl ApiKey {
    /// A new key from the operating system's CSPRNG.
    pub fn generate() -> ApiKey {
        let mut bytes = [0u8; RANDOM_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        ApiKey {
            plaintext: format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)),
        }
    }

    pub fn plaintext(&self) -> &str {
        &self.plaintext
    }

    pub fn hash(&self) -> KeyHash {
        KeyHash::of(&self.plaintext)
    }

    /// What a listing may show: `tr-AbCd`.
    pub fn display_prefix(&self) -> String {
        self.plaintext.chars().take(KEY_PREFIX.len() + 4).collect()
    }

    pub fn last_four(&self) -> String {
        let n = self.plaintext.len();
        self.plaintext[n - 4..].to_string()
    }
}

impl KeyHash {
    pub fn of(plaintext: &str) -> KeyHash {
        KeyHash(hex::encode(Sha256::digest(plaintext.as_bytes())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `text` has the shape of a TokenRoute key. Cheap, and checked before hashing
/// so that obviously wrong credentials never reach a cache or the store.
pub fn looks_like_key(text: &str) -> bool {
    text.len() == KEY_PREFIX.len() + ENCODED_LEN
        && text.starts_with(KEY_PREFIX)
        && text[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_well_formed_and_hashed() {
        let a = ApiKey::generate();
        let b = ApiKey::generate();
        assert_ne!(a.plaintext(), b.plaintext());
        assert!(looks_like_key(a.plaintext()), "{}", a.plaintext());
        assert_eq!(a.hash().as_str().len(), 64);
        assert_eq!(a.hash(), KeyHash::of(a.plaintext()));
        assert!(!a.hash().as_str().contains(&a.plaintext()[3..]));
        assert!(a.display_prefix().starts_with("tr-"));
        assert_eq!(a.last_four().len(), 4);
    }

    #[test]
    fn shape_check_refuses_other_credentials() {
        assert!(!looks_like_key("sk-proj-abc"));
        assert!(!looks_like_key("tr-short"));
        assert!(!looks_like_key(&format!("tr-{}", "!".repeat(43))));
    }
}
