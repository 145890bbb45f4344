//! A raw HTTP/1.1 request, as the load tools send it on their own connections.

/// `POST path` with a JSON body, the `Host` header and, when given, the key as
/// `Authorization: Bearer`; the bytes to write as they are.
pub fn post(path: &str, host: &str, key: Option<&str>, body: &str) -> Vec<u8> {
    let auth = key
        .map(|k| format!("authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    format!(
        "POST {path} HTTP/1.1\r\nhost: {host}\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
