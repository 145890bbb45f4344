//! What the load tools send: one JSON POST to one server, as raw HTTP/1.1 bytes on
//! their own connections.

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
    /// JSON request body.
    #[arg(long)]
    pub body: String,
}

impl Target {
    /// `POST path` with the body, `Host` and, when given, the key; the bytes to write
    /// as they are (the connection stays open).
    pub fn request(&self) -> Vec<u8> {
        let auth = self
            .key
            .as_ref()
            .map(|k| format!("authorization: Bearer {k}\r\n"))
            .unwrap_or_default();
        format!(
            "POST {} HTTP/1.1\r\nhost: {}\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
            self.path,
            self.addr,
            self.body.len(),
            self.body
        )
        .into_bytes()
    }
}
