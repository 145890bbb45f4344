//! A fake provider that speaks all three dialects on one server, with the shapes in
//! `fixtures/providers/`, streaming included, and records what it got:
//! OpenAI (`POST /v1/chat/completions`), Anthropic (`POST /v1/messages`) and Gemini
//! (`POST /v1beta/models/{model}:generateContent` / `:streamGenerateContent?alt=sse`).
//!
//! Each test configures its reply explicitly with [`FakeProvider::reply`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures_util::{stream, StreamExt};
use serde_json::Value;

use crate::fixture;

/// What the fake answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// The dialect's fixture: OpenAI `chat.json` / `chat-stream.sse` (its usage chunk
    /// only when the request asks for `stream_options.include_usage`, as OpenAI does),
    /// Anthropic `messages.json` / `messages-stream.sse` (`tool-use-stream.sse` when
    /// the request has tools), Gemini `generate.json` / `generate-stream.sse`.
    Fixture,
    /// This status with this body (e.g. the 429 fixture).
    Status(u16, String),
    /// Accept the request and never answer.
    Hang,
    /// Stream `events` content chunks, `gap` apart, then usage and `[DONE]`.
    Spaced { events: usize, gap: Duration },
    /// Stream this many fixture events, then drop the connection mid-stream.
    Cut { after_events: usize },
    /// Stream this many fixture events, then end the response cleanly — without the
    /// usage chunk and without `[DONE]`.
    Truncated { after_events: usize },
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub dialect: Dialect,
    /// Path and query, e.g. `/v1beta/models/gemini-2.0-flash:generateContent`.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct Inner {
    reply: Option<Reply>,
    requests: Vec<Recorded>,
}

/// Which API a request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Anthropic,
    Gemini,
}

/// The historical name: the fake began as an OpenAI-only server.
pub type FakeOpenAi = FakeProvider;

#[derive(Clone)]
pub struct FakeProvider {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    _stop: Arc<tokio::sync::oneshot::Sender<()>>,
}

impl FakeProvider {
    pub async fn start() -> FakeProvider {
        let inner = Arc::new(Mutex::new(Inner {
            reply: Some(Reply::Fixture),
            requests: vec![],
        }));
        let app = Router::new()
            .route("/v1/chat/completions", post(openai))
            .route("/v1/messages", post(anthropic))
            .route("/v1/embeddings", post(openai_embeddings))
            .route("/v1beta/models/{*call}", post(gemini))
            .layer(DefaultBodyLimit::disable())
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        FakeOpenAi {
            addr,
            inner,
            _stop: Arc::new(stop),
        }
    }

    /// The OpenAI and Anthropic base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The Gemini base URL.
    pub fn gemini_base_url(&self) -> String {
        format!("http://{}/v1beta", self.addr)
    }

    pub fn reply(&self, reply: Reply) {
        self.inner.lock().unwrap().reply = Some(reply);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }
}

async fn openai(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(inner, Dialect::OpenAi, uri, headers, body).await
}

async fn openai_embeddings(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&inner, Dialect::OpenAi, &uri, headers, &body);
    (
        [("content-type", "application/json")],
        fixture("openai/embeddings.json"),
    )
        .into_response()
}

/// Gemini's `batchEmbedContents` answer: one 4-number vector per request.
fn gemini_embeddings(body: &[u8]) -> Response {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let n = request["requests"].as_array().map_or(1, Vec::len);
    let embeddings: Vec<Value> = (0..n)
        .map(|i| serde_json::json!({"values": [0.01 * i as f64, -0.02, 0.03, -0.04]}))
        .collect();
    let body = serde_json::json!({ "embeddings": embeddings });
    ([("content-type", "application/json")], body.to_string()).into_response()
}

fn record(inner: &Mutex<Inner>, dialect: Dialect, uri: &Uri, headers: HeaderMap, body: &[u8]) {
    inner.lock().unwrap().requests.push(Recorded {
        dialect,
        uri: uri.to_string(),
        headers,
        body: body.to_vec(),
    });
}

async fn anthropic(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(inner, Dialect::Anthropic, uri, headers, body).await
}

async fn gemini(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(inner, Dialect::Gemini, uri, headers, body).await
}

async fn answer(
    inner: Arc<Mutex<Inner>>,
    dialect: Dialect,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&inner, dialect, &uri, headers, &body);
    if dialect == Dialect::Gemini && uri.path().ends_with(":batchEmbedContents") {
        return gemini_embeddings(&body);
    }
    let reply = inner
        .lock()
        .unwrap()
        .reply
        .clone()
        .unwrap_or(Reply::Fixture);
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let stream = match dialect {
        Dialect::Gemini => uri.path().ends_with(":streamGenerateContent"),
        _ => request["stream"].as_bool().unwrap_or(false),
    };
    let include_usage = request["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    let with_tools = request["tools"].as_array().is_some_and(|t| !t.is_empty());
    let events = || stream_events(dialect, include_usage, with_tools);
    match reply {
        Reply::Status(code, body) => (
            StatusCode::from_u16(code).unwrap(),
            [("content-type", "application/json"), ("retry-after", "7")],
            body,
        )
            .into_response(),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        Reply::Fixture if !stream && with_tools => (
            [("content-type", "application/json")],
            tool_call_answer(dialect).to_string(),
        )
            .into_response(),
        Reply::Fixture if !stream => {
            let file = match dialect {
                Dialect::OpenAi => "openai/chat.json",
                Dialect::Anthropic => "anthropic/messages.json",
                Dialect::Gemini => "gemini/generate.json",
            };
            ([("content-type", "application/json")], fixture(file)).into_response()
        }
        Reply::Fixture => sse(stream::iter(events().into_iter().map(Ok::<_, Infallible>))),
        Reply::Cut { after_events } => {
            let events: Vec<Bytes> = events().into_iter().take(after_events).collect();
            // Send the events, give them time to reach the client, then break the connection.
            let s = stream::iter(events.into_iter().map(Ok::<_, std::io::Error>)).chain(
                stream::once(async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Err(std::io::Error::other("cut"))
                }),
            );
            sse(s)
        }
        Reply::Truncated { after_events } => {
            let events: Vec<Bytes> = events().into_iter().take(after_events).collect();
            sse(stream::iter(events.into_iter().map(Ok::<_, Infallible>)))
        }
        Reply::Spaced { events, gap } => {
            let chunks = match dialect {
                Dialect::OpenAi => spaced_events(events, include_usage),
                Dialect::Anthropic => spaced_anthropic_events(events),
                Dialect::Gemini => spaced_gemini_events(events),
            };
            let s = stream::unfold(
                (chunks.into_iter(), true),
                move |(mut it, first)| async move {
                    let next = it.next()?;
                    if !first {
                        tokio::time::sleep(gap).await;
                    }
                    Some((Ok::<_, Infallible>(next), (it, false)))
                },
            );
            sse(s)
        }
    }
}

/// A whole answer that calls the `get_weather` tool, in the dialect's shape (the
/// streamed fixtures carry the same call).
fn tool_call_answer(dialect: Dialect) -> Value {
    match dialect {
        Dialect::OpenAi => serde_json::json!({
            "id": "chatcmpl-tool", "object": "chat.completion", "created": 1741570500,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": null,
                "tool_calls": [{"id": "call_abc", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris, France\"}"}}]
            }}],
            "usage": {"prompt_tokens": 80, "completion_tokens": 17, "total_tokens": 97}
        }),
        Dialect::Anthropic => serde_json::json!({
            "id": "msg_tool", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
            "content": [
                {"type": "text", "text": "Let me check the weather."},
                {"type": "tool_use", "id": "toolu_abc", "name": "get_weather", "input": {"location": "Paris, France"}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 472, "output_tokens": 89}
        }),
        Dialect::Gemini => serde_json::json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"location": "Paris, France"}}}
            ]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 60, "candidatesTokenCount": 12, "totalTokenCount": 72},
            "modelVersion": "gemini-2.0-flash", "responseId": "tool1"
        }),
    }
}

/// A dialect's fixture stream, event by event.
pub fn stream_events(dialect: Dialect, include_usage: bool, with_tools: bool) -> Vec<Bytes> {
    match dialect {
        Dialect::OpenAi if with_tools => {
            split_events(&fixture("openai/chat-tools-stream.sse"), "\n\n")
                .into_iter()
                .filter(|e| {
                    include_usage
                        || !e.starts_with(b"data: {")
                        || !String::from_utf8_lossy(e).contains("\"choices\":[]")
                })
                .collect()
        }
        Dialect::OpenAi => fixture_events(include_usage),
        Dialect::Anthropic => {
            let file = if with_tools {
                "anthropic/tool-use-stream.sse"
            } else {
                "anthropic/messages-stream.sse"
            };
            split_events(&fixture(file), "\n\n")
        }
        Dialect::Gemini => split_events(&fixture("gemini/generate-stream.sse"), "\r\n\r\n"),
    }
}

fn split_events(bytes: &[u8], separator: &str) -> Vec<Bytes> {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .split_inclusive(separator)
        .filter(|e| !e.trim().is_empty())
        .map(|e| Bytes::from(e.to_string()))
        .collect()
}

fn sse<S, E>(s: S) -> Response
where
    S: futures_util::Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<axum::BoxError> + 'static,
{
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(s))
        .unwrap()
}

/// The fixture stream split into its events, the usage-only chunk kept on request.
pub fn fixture_events(include_usage: bool) -> Vec<Bytes> {
    let text = String::from_utf8(fixture("openai/chat-stream.sse")).unwrap();
    text.split_inclusive("\n\n")
        .filter(|e| include_usage || !e.contains("\"choices\":[]"))
        .map(|e| Bytes::from(e.to_string()))
        .collect()
}

/// `n` text deltas in Anthropic's stream format, with its usage at the end.
fn spaced_anthropic_events(n: usize) -> Vec<Bytes> {
    let event = |name: &str, data: Value| Bytes::from(format!("event: {name}\ndata: {data}\n\n"));
    let mut out = vec![
        event(
            "message_start",
            serde_json::json!({"type": "message_start", "message": {
            "id": "msg_spaced", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
            "content": [], "stop_reason": null, "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        ),
        event(
            "content_block_start",
            serde_json::json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    out.extend((0..n).map(|i| {
        event(
            "content_block_delta",
            serde_json::json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": format!("w{i} ")}}),
        )
    }));
    out.push(event(
        "content_block_stop",
        serde_json::json!({"type": "content_block_stop", "index": 0}),
    ));
    out.push(event(
        "message_delta",
        serde_json::json!({"type": "message_delta",
        "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": n}}),
    ));
    out.push(event(
        "message_stop",
        serde_json::json!({"type": "message_stop"}),
    ));
    out
}

/// `n` chunks in Gemini's stream format, each with its cumulative usage.
fn spaced_gemini_events(n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| {
            let mut candidate = serde_json::json!({"content": {"role": "model", "parts": [{"text": format!("w{i} ")}]}});
            if i + 1 == n {
                candidate["finishReason"] = serde_json::json!("STOP");
            }
            let chunk = serde_json::json!({"candidates": [candidate],
                "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": i + 1, "totalTokenCount": 11 + i}});
            Bytes::from(format!("data: {chunk}\r\n\r\n"))
        })
        .collect()
}

fn spaced_events(n: usize, include_usage: bool) -> Vec<Bytes> {
    let chunk = |content: &str| {
        Bytes::from(format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}},\"finish_reason\":null}}]}}\n\n"
        ))
    };
    let mut out: Vec<Bytes> = (0..n).map(|i| chunk(&format!("w{i} "))).collect();
    if include_usage {
        out.push(Bytes::from(format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{{\"prompt_tokens\":10,\"completion_tokens\":{n},\"total_tokens\":{}}}}}\n\n",
            10 + n
        )));
    }
    out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    out
}
