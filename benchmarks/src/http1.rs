//! What the load tools send: one JSON POST to one server, as raw HTTP/1.1 bytes on
//! their own connections, and how they read the answer.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The server, the request and the key, as every load tool takes them.
#[derive(clap::Args, Debug)]
pub struct Target {
    /// `HOST:PORT` of the server (plain HTTP/1.1).
    #[arg(long)]
    pub addr: String,
    /// Request path.
    #[arg(long, default_value = "/v1/chat/completions")]
    pub path: String,
    /// Sent as `Authorization: Bearer KEY`.
    #[arg(long)]
    pub key: Option<String>,
    /// More request headers, `Name: value` (repeatable).
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// JSON request body.
    #[arg(long)]
    pub body: String,
}

impl Target {
    /// `POST path` with the body, `Host` and, when given, the key; the bytes to write
    /// as they are (the connection stays open).
    pub fn request(&self) -> Vec<u8> {
        self.request_with_key(self.key.as_deref())
    }

    /// The same request with another key (or none).
    pub fn request_with_key(&self, key: Option<&str>) -> Vec<u8> {
        let auth = key
            .map(|k| format!("authorization: Bearer {k}\r\n"))
            .unwrap_or_default();
        let extra = header_lines(&self.headers);
        format!(
            "POST {} HTTP/1.1\r\nhost: {}\r\n{auth}{extra}content-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
            self.path,
            self.addr,
            self.body.len(),
            self.body
        )
        .into_bytes()
    }
}

/// `Name: value` headers as request lines (each ending in CRLF).
pub fn header_lines(headers: &[String]) -> String {
    headers
        .iter()
        .map(|h| format!("{}\r\n", h.trim()))
        .collect()
}

/// Sends one request on the connection (opening one if there is none); true on a 200
/// read whole. A failed connection is dropped, the next request opens another.
pub async fn send(addr: &str, conn: &mut Option<TcpStream>, request: &[u8]) -> bool {
    if conn.is_none() {
        match TcpStream::connect(addr).await {
            Ok(c) => {
                let _ = c.set_nodelay(true);
                *conn = Some(c);
            }
            Err(_) => return false,
        }
    }
    let Some(c) = conn.as_mut() else {
        return false;
    };
    let result = exchange(c, request).await;
    match result {
        Ok((status, keep)) => {
            if !keep {
                *conn = None;
            }
            status == 200
        }
        Err(_) => {
            *conn = None;
            false
        }
    }
}

/// Writes the request and reads the response whole (content-length or chunked);
/// returns the status and whether the connection stays open.
pub async fn exchange(c: &mut TcpStream, request: &[u8]) -> std::io::Result<(u16, bool)> {
    c.write_all(request).await?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = c.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let keep = !head.contains("connection: close");
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let done = |body: &[u8]| match length {
        Some(n) => body.len() >= n,
        None => body.ends_with(b"0\r\n\r\n"),
    };
    while !done(&buf[head_end..]) {
        let n = c.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((status, keep))
}
