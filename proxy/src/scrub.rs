//! Credentials removed from what a provider says before a client sees it.
//!
//! Providers' error bodies sometimes echo the credential they were sent ("Incorrect
//! API key provided: sk-..."), and a misconfigured upstream (a proxy, a local server)
//! may echo whole requests. Before an upstream error body is relayed, every configured
//! provider key and anything shaped like an API key — `sk-…` (OpenAI, Anthropic),
//! `AIza…` (Google), `tr-…` (ours), `Bearer …` — is replaced by `[redacted]`.
//! Written by hand: a handful of prefixes over bytes (bodies need not be UTF-8) does
//! not warrant a regex engine on the proxy.

use std::borrow::Cow;

const REDACTED: &[u8] = b"[redacted]";
/// Prefixes of key-shaped tokens, replaced with what follows them when at least
/// [`MIN_TAIL`] token characters follow (so `sk-` in prose survives).
const PREFIXES: &[&[u8]] = &[b"sk-", b"tr-", b"AIza", b"xai-", b"gsk_", b"Bearer "];
const MIN_TAIL: usize = 16;
/// Configured secrets shorter than this are not searched for (they would match prose).
const MIN_SECRET: usize = 8;

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// `body` without `secrets` and without key-shaped tokens.
pub fn credentials<'a>(body: &'a [u8], secrets: &[&str]) -> Cow<'a, [u8]> {
    let mut out: Cow<'a, [u8]> = Cow::Borrowed(body);
    for secret in secrets.iter().map(|s| s.as_bytes()) {
        if secret.len() >= MIN_SECRET && find(&out, secret).is_some() {
            out = Cow::Owned(replace_all(&out, secret));
        }
    }
    if !PREFIXES.iter().any(|p| find(&out, p).is_some()) {
        return out;
    }
    let text = out.as_ref();
    let mut cleaned = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let at_boundary = i == 0 || !is_token(text[i - 1]);
        let matched = at_boundary
            .then(|| PREFIXES.iter().find(|p| text[i..].starts_with(p)))
            .flatten();
        if let Some(prefix) = matched {
            let start = i + prefix.len();
            let tail = text[start..].iter().take_while(|b| is_token(**b)).count();
            if tail >= MIN_TAIL {
                if prefix.ends_with(b" ") {
                    cleaned.extend_from_slice(prefix);
                }
                cleaned.extend_from_slice(REDACTED);
                i = start + tail;
                continue;
            }
        }
        cleaned.push(text[i]);
        i += 1;
    }
    Cow::Owned(cleaned)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn replace_all(text: &[u8], needle: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = find(rest, needle) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(REDACTED);
        rest = &rest[at + needle.len()..];
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::credentials;

    fn clean(text: &str, secrets: &[&str]) -> String {
        String::from_utf8(credentials(text.as_bytes(), secrets).into_owned()).unwrap()
    }

    #[test]
    fn configured_keys_and_key_shaped_tokens_are_redacted() {
        assert_eq!(
            clean(
                r#"{"error":{"message":"Incorrect API key provided: sk-proj-abcdefghijklmnop1234."}}"#,
                &[]
            ),
            r#"{"error":{"message":"Incorrect API key provided: [redacted]."}}"#
        );
        assert_eq!(
            clean(
                "key=upstream-secret-123 again upstream-secret-123",
                &["upstream-secret-123"]
            ),
            "key=[redacted] again [redacted]"
        );
        assert_eq!(
            clean("sent Authorization: Bearer abcdefghijklmnopqrstuvwxyz", &[]),
            "sent Authorization: Bearer [redacted]"
        );
        assert_eq!(
            clean(
                "x-goog-api-key AIzaSyA1234567890abcdefghij and tr-0123456789abcdefghij",
                &[]
            ),
            "x-goog-api-key [redacted] and [redacted]"
        );
    }

    #[test]
    fn prose_and_short_tokens_survive() {
        for text in [
            "use a task-specific model",
            "sk-short",
            "disk-abcdefghijklmnopqrstuvwxyz is a word, not a key",
            "",
        ] {
            assert_eq!(clean(text, &["tiny"]), text);
        }
        assert!(matches!(
            credentials(b"nothing here", &["a-long-secret"]),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
