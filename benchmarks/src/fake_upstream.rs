//! `fake-upstream`: a tiny, fast OpenAI-compatible provider for load tests.
//!
//! `POST /v1/chat/completions` answers a fixed `chat.completion` with a `usage`
//! object, or — for `"stream": true` — `--stream-events` `chat.completion.chunk`
//! events spaced `--event-gap-ms` apart, the usage chunk (`choices: []`) when
//! `stream_options.include_usage` is true, then `data: [DONE]`. Every answer can be
//! held back by a fixed `--delay-ms`. All bodies are built once at start-up; a
//! request costs one small JSON parse and a few reference-counted clones.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::Router;
use clap::Parser;
use futures_util::stream;
use serde_json::{json, Value};

/// A fast fake OpenAI-compatible upstream for benchmarks.
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
    /// `chat.completion.chunk` events per streamed answer (before the usage chunk).
    #[arg(long, default_value_t = 20)]
    stream_events: usize,
    /// Pause between two streamed events, in milliseconds.
    #[arg(long, default_value_t = 0)]
    event_gap_ms: u64,
}

const ID: &str = "chatcmpl-bench0000000000000000";
const CREATED: u64 = 1_741_570_283;
const MODEL: &str = "gpt-4o-mini-2024-07-18";
const PROMPT_TOKENS: usize = 24;

/// Everything a response is made of, prepared once.
struct Canned {
    delay: Duration,
    gap: Duration,
    whole: Bytes,
    events: Vec<Bytes>,
    usage_event: Bytes,
    done: Bytes,
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
    let streamed = request["stream"].as_bool().unwrap_or(false);
    let include_usage = request["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    if !canned.delay.is_zero() {
        tokio::time::sleep(canned.delay).await;
    }
    if !streamed {
        return ([(CONTENT_TYPE, "application/json")], canned.whole.clone()).into_response();
    }
    let mut frames: Vec<Bytes> = canned.events.clone();
    if include_usage {
        frames.push(canned.usage_event.clone());
    }
    frames.push(canned.done.clone());
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
    let whole = json!({
        "id": ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "The capital of France is Paris.",
                "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": usage(8),
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
                (json!({"content": format!(" tok{i}")}), Value::Null)
            };
            chunk(
                json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]),
                Value::Null,
            )
        })
        .collect();
    Canned {
        delay: Duration::from_millis(args.delay_ms),
        gap: Duration::from_millis(args.event_gap_ms),
        whole: Bytes::from(whole.to_string()),
        events,
        usage_event: chunk(json!([]), usage(n.saturating_sub(2).max(1))),
        done: Bytes::from_static(b"data: [DONE]\n\n"),
    }
}
