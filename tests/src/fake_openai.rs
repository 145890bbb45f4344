//! A fake OpenAI: serves `POST /v1/chat/completions` with the shapes in
//! `shared/fixtures/providers/openai/`, streaming included, and records what it got.
//!
//! Each test configures its reply explicitly with [`FakeOpenAi::reply`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures_util::{stream, StreamExt};
use serde_json::Value;

use crate::fixture;

/// What the fake answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// `chat.json`, or `chat-stream.sse` for streams (its usage chunk only when the
    /// request asks for `stream_options.include_usage`, as OpenAI does).
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

#[derive(Clone)]
pub struct FakeOpenAi {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    _stop: Arc<tokio::sync::oneshot::Sender<()>>,
}

impl FakeOpenAi {
    pub async fn start() -> FakeOpenAi {
        let inner = Arc::new(Mutex::new(Inner {
            reply: Some(Reply::Fixture),
            requests: vec![],
        }));
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
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

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn reply(&self, reply: Reply) {
        self.inner.lock().unwrap().reply = Some(reply);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }
}

async fn chat(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: Bytes) -> Response {
    let reply = {
        let mut inner = inner.lock().unwrap();
        inner.requests.push(Recorded {
            headers,
            body: body.to_vec(),
        });
        inner.reply.clone().unwrap_or(Reply::Fixture)
    };
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let stream = request["stream"].as_bool().unwrap_or(false);
    let include_usage = request["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    match reply {
        Reply::Status(code, body) => (
            StatusCode::from_u16(code).unwrap(),
            [("content-type", "application/json")],
            body,
        )
            .into_response(),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        Reply::Fixture if !stream => (
            [("content-type", "application/json")],
            fixture("openai/chat.json"),
        )
            .into_response(),
        Reply::Fixture => {
            let events = fixture_events(include_usage);
            sse(stream::iter(events.into_iter().map(Ok::<_, Infallible>)))
        }
        Reply::Cut { after_events } => {
            let events: Vec<Bytes> = fixture_events(false)
                .into_iter()
                .take(after_events)
                .collect();
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
            let events: Vec<Bytes> = fixture_events(false)
                .into_iter()
                .take(after_events)
                .collect();
            sse(stream::iter(events.into_iter().map(Ok::<_, Infallible>)))
        }
        Reply::Spaced { events, gap } => {
            let chunks = spaced_events(events, include_usage);
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
