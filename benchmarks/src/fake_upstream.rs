//! `fake-upstream`: a tiny, fast provider for load tests, in the three dialects
//! TokenRoute speaks upstream (the wire shapes of `fixtures/providers/`).
//!
//! - OpenAI: `POST /v1/chat/completions` answers a fixed `chat.completion` with a
//!   `usage` object, or — for `"stream": true` — `--stream-events`
//!   `chat.completion.chunk` events, the usage chunk (`choices: []`) when
//!   `stream_options.include_usage` is true, then `data: [DONE]`.
//! - Anthropic: `POST /v1/messages` answers a `message`, or for `"stream": true`
//!   `message_start`, `content_block_start`, the `content_block_delta`s,
//!   `content_block_stop`, `message_delta` (with the output tokens), `message_stop`.
//! - Gemini: `POST /v1beta/models/{model}:generateContent` answers a
//!   `GenerateContentResponse`; `:streamGenerateContent?alt=sse` sends
//!   `--stream-events` of them, the last with `finishReason` and the full
//!   `usageMetadata`.
//!
//! Streamed events are spaced `--event-gap-ms` apart; every answer can be held back
//! by a fixed `--delay-ms`. All bodies are built once at start-up; a request costs
//! one small JSON parse and a few reference-counted clones.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::Router;
use clap::Parser;
use futures_util::stream;
use serde_json::{json, Value};

/// A fast fake provider (OpenAI, Anthropic and Gemini dialects) for benchmarks.
#[derive(Parser, Debug)]
#[command(name = "fake-upstream")]
struct Args {
    /// Address to listen on (`127.0.0.1:0` picks a free port; the bound address is
    /// printed on stdout as `listening on ADDR`).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Fixed delay before answering (headers included), in milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Events per streamed answer (OpenAI: `chat.completion.chunk`s before the usage
    /// chunk; Anthropic: all of them, deltas and framing; Gemini: chunks).
    #[arg(long, default_value_t = 20)]
    stream_events: usize,
    /// Pause between two streamed events, in milliseconds.
    #[arg(long, default_value_t = 0)]
    event_gap_ms: u64,
    /// Tokens in a whole (not streamed) OpenAI answer: ` tok0 tok1 …`, about 7 bytes
    /// each; 0 answers one sentence of 8 tokens, a 626-byte answer.
    #[arg(long, default_value_t = 0)]
    answer_tokens: usize,
}

const ID: &str = "chatcmpl-bench0000000000000000";
const CREATED: u64 = 1_741_570_283;
const MODEL: &str = "gpt-4o-mini-2024-07-18";
const PROMPT_TOKENS: usize = 24;

/// Everything a response is made of, prepared once.
struct Canned {
    delay: Duration,
    gap: Duration,
    openai: OpenAi,
    anthropic: Answers,
    gemini: Answers,
}

/// An OpenAI answer, whole or as events (the usage chunk only when asked for).
struct OpenAi {
    whole: Bytes,
    events: Vec<Bytes>,
    usage_event: Bytes,
    done: Bytes,
}

/// A dialect's answer, whole or as every event of its stream.
struct Answers {
    whole: Bytes,
    events: Vec<Bytes>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("fake-upstream: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let canned = Arc::new(canned(&args));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("no local address: {e}"))?;
        // The harness reads this line to learn the port.
        #[allow(
            clippy::print_stdout,
            reason = "the bound address is the program's output"
        )]
        {
            println!("listening on {addr}");
        }
        let listener = listener.tap_io(|tcp| {
            // Spaced stream events must leave at once, not wait for an ACK.
            let _ = tcp.set_nodelay(true);
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/messages", post(messages))
            .route("/v1beta/models/{call}", post(generate))
            .with_state(canned);
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|e| format!("server error: {e}"))
    })
}

async fn chat(State(canned): State<Arc<Canned>>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let include_usage = request["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    let openai = &canned.openai;
    if !streamed(&request) {
        return whole(&canned, openai.whole.clone()).await;
    }
    let mut frames: Vec<Bytes> = openai.events.clone();
    if include_usage {
        frames.push(openai.usage_event.clone());
    }
    frames.push(openai.done.clone());
    stream_of(&canned, frames).await
}

async fn messages(State(canned): State<Arc<Canned>>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    answer(&canned, &canned.anthropic, streamed(&request)).await
}

/// `{model}:generateContent` or `{model}:streamGenerateContent` (with `?alt=sse`).
async fn generate(State(canned): State<Arc<Canned>>, Path(call): Path<String>) -> Response {
    let streamed = call.ends_with(":streamGenerateContent");
    if !streamed && !call.ends_with(":generateContent") {
        return (axum::http::StatusCode::NOT_FOUND, "unknown method").into_response();
    }
    answer(&canned, &canned.gemini, streamed).await
}

fn streamed(request: &Value) -> bool {
    request["stream"].as_bool().unwrap_or(false)
}

async fn answer(canned: &Canned, answers: &Answers, streamed: bool) -> Response {
    if streamed {
        stream_of(canned, answers.events.clone()).await
    } else {
        whole(canned, answers.whole.clone()).await
    }
}

async fn whole(canned: &Canned, body: Bytes) -> Response {
    if !canned.delay.is_zero() {
        tokio::time::sleep(canned.delay).await;
    }
    ([(CONTENT_TYPE, "application/json")], body).into_response()
}

/// The frames as a server-sent event stream, `--event-gap-ms` apart.
async fn stream_of(canned: &Canned, frames: Vec<Bytes>) -> Response {
    if !canned.delay.is_zero() {
        tokio::time::sleep(canned.delay).await;
    }
    let body = if canned.gap.is_zero() {
        Body::from_stream(stream::iter(frames.into_iter().map(Ok::<_, Infallible>)))
    } else {
        let gap = canned.gap;
        let frames = stream::unfold(
            (frames.into_iter(), true),
            move |(mut rest, first)| async move {
                let frame = rest.next()?;
                if !first {
                    tokio::time::sleep(gap).await;
                }
                Some((Ok::<_, Infallible>(frame), (rest, false)))
            },
        );
        Body::from_stream(frames)
    };
    (
        [
            (CONTENT_TYPE, "text/event-stream"),
            (CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn canned(args: &Args) -> Canned {
    let n = args.stream_events.max(1);
    Canned {
        delay: Duration::from_millis(args.delay_ms),
        gap: Duration::from_millis(args.event_gap_ms),
        openai: openai(n, args.answer_tokens),
        anthropic: anthropic(n),
        gemini: gemini(n),
    }
}

/// Text of streamed event `i` (one token each).
fn token(i: usize) -> String {
    format!(" tok{i}")
}

fn openai(n: usize, answer_tokens: usize) -> OpenAi {
    let usage = |completion: usize| {
        json!({
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": completion,
            "total_tokens": PROMPT_TOKENS + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        })
    };
    let (content, completion) = match answer_tokens {
        0 => ("The capital of France is Paris.".to_string(), 8),
        n => ((0..n).map(token).collect::<String>(), n),
    };
    let whole = json!({
        "id": ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content,
                "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": usage(completion),
        "service_tier": "default",
        "system_fingerprint": "fp_06737a9306",
    });
    let chunk = |choices: Value, usage: Value| {
        let c = json!({
            "id": ID, "object": "chat.completion.chunk", "created": CREATED, "model": MODEL,
            "service_tier": "default", "system_fingerprint": "fp_06737a9306",
            "choices": choices, "usage": usage,
        });
        Bytes::from(format!("data: {c}\n\n"))
    };
    // Event 0 opens the assistant turn, the last one carries finish_reason, the ones
    // in between carry one token of text each.
    let events = (0..n)
        .map(|i| {
            let (delta, finish) = if i == 0 {
                (
                    json!({"role": "assistant", "content": "", "refusal": null}),
                    Value::Null,
                )
            } else if i + 1 == n {
                (json!({}), json!("stop"))
            } else {
                (json!({"content": token(i)}), Value::Null)
            };
            chunk(
                json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]),
                Value::Null,
            )
        })
        .collect();
    OpenAi {
        whole: Bytes::from(whole.to_string()),
        events,
        usage_event: chunk(json!([]), usage(n.saturating_sub(2).max(1))),
        done: Bytes::from_static(b"data: [DONE]\n\n"),
    }
}

fn anthropic(n: usize) -> Answers {
    const MSG_ID: &str = "msg_01Bench000000000000000000";
    const CLAUDE: &str = "claude-3-5-haiku-20241022";
    let whole = json!({
        "id": MSG_ID, "type": "message", "role": "assistant", "model": CLAUDE,
        "content": [{"type": "text", "text": "The capital of France is Paris."}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": PROMPT_TOKENS, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0, "output_tokens": 8},
    });
    let event = |name: &str, data: Value| Bytes::from(format!("event: {name}\ndata: {data}\n\n"));
    // message_start, content_block_start, the deltas, content_block_stop,
    // message_delta, message_stop: n events in all (at least one delta).
    let deltas = n.saturating_sub(5).max(1);
    let mut events = vec![
        event(
            "message_start",
            json!({"type": "message_start", "message": {"id": MSG_ID, "type": "message",
                "role": "assistant", "model": CLAUDE, "content": [], "stop_reason": null,
                "stop_sequence": null, "usage": {"input_tokens": PROMPT_TOKENS,
                "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                "output_tokens": 1}}}),
        ),
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    events.extend((1..=deltas).map(|i| {
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": token(i)}}),
        )
    }));
    events.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn",
            "stop_sequence": null}, "usage": {"output_tokens": deltas}}),
    ));
    events.push(event("message_stop", json!({"type": "message_stop"})));
    Answers {
        whole: Bytes::from(whole.to_string()),
        events,
    }
}

fn gemini(n: usize) -> Answers {
    const VERSION: &str = "gemini-2.0-flash";
    const RESPONSE_ID: &str = "benchBenchBench00000";
    let prompt = json!([{"modality": "TEXT", "tokenCount": PROMPT_TOKENS}]);
    let usage = |completion: usize| {
        json!({"promptTokenCount": PROMPT_TOKENS, "candidatesTokenCount": completion,
            "totalTokenCount": PROMPT_TOKENS + completion, "promptTokensDetails": prompt,
            "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": completion}]})
    };
    let whole = json!({
        "candidates": [{"content": {"parts": [{"text": "The capital of France is Paris."}],
            "role": "model"}, "finishReason": "STOP", "avgLogprobs": -0.0123}],
        "usageMetadata": usage(8), "modelVersion": VERSION, "responseId": RESPONSE_ID,
    });
    // Every chunk carries a token and the prompt's count; the last one finishes the
    // candidate and carries the whole usage, as Gemini's stream does.
    let events = (1..=n)
        .map(|i| {
            let mut candidate =
                json!({"content": {"parts": [{"text": token(i)}], "role": "model"}});
            let usage = if i == n {
                candidate["finishReason"] = json!("STOP");
                usage(n)
            } else {
                json!({"promptTokenCount": PROMPT_TOKENS, "totalTokenCount": PROMPT_TOKENS,
                    "promptTokensDetails": prompt})
            };
            let chunk = json!({"candidates": [candidate], "usageMetadata": usage,
                "modelVersion": VERSION, "responseId": RESPONSE_ID});
            Bytes::from(format!("data: {chunk}\r\n\r\n"))
        })
        .collect();
    Answers {
        whole: Bytes::from(whole.to_string()),
        events,
    }
}
