#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Translation + metering per streamed event: a provider's stream (the transcripts
//! in `fixtures/providers/`) through the dialect adapter into OpenAI events,
//! the SSE reader and the meter — the synchronous work the data plane does for every
//! event of every stream. `cargo bench -p tokenroute-proxy --bench stream_event`.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tokenroute_domain::{NanoUsd, Price};
use tokenroute_proxy::dialect::Dialect;
use tokenroute_proxy::meter::openai::StreamMeter;
use tokenroute_proxy::meter::sse::SseSplitter;

/// The transcripts: `TOKENROUTE_FIXTURES` when set (a checkout elsewhere), else the
/// repository's `fixtures/providers/`.
fn fixture(path: &str) -> Vec<u8> {
    let dir = std::env::var("TOKENROUTE_FIXTURES")
        .unwrap_or_else(|_| format!("{}/../fixtures/providers", env!("CARGO_MANIFEST_DIR")));
    let full = format!("{dir}/{path}");
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// The stream in network-sized pieces (as a provider's TCP reads arrive).
fn pieces(bytes: &[u8]) -> Vec<Bytes> {
    bytes.chunks(512).map(Bytes::copy_from_slice).collect()
}

/// Runs one whole stream through; returns the events the client got.
fn run(dialect: Dialect, stream: &[Bytes]) -> usize {
    let price = Price {
        input_per_mtok: NanoUsd(150_000_000),
        output_per_mtok: NanoUsd(600_000_000),
        cached_input_per_mtok: None,
    };
    let mut adapter = dialect.stream("bench/model");
    let mut splitter = SseSplitter::new();
    let mut meter = StreamMeter::new(price);
    let mut events = 0;
    for chunk in stream {
        for event in splitter.push(&adapter.push(chunk.clone())) {
            std::hint::black_box(meter.observe(&event));
            events += 1;
        }
    }
    for event in splitter.push(&adapter.finish()) {
        std::hint::black_box(meter.observe(&event));
        events += 1;
    }
    events
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("stream_event");
    for (name, dialect, file) in [
        ("openai", Dialect::OpenAi, "openai/chat-stream.sse"),
        (
            "openai_tools",
            Dialect::OpenAi,
            "openai/chat-tools-stream.sse",
        ),
        (
            "anthropic",
            Dialect::Anthropic,
            "anthropic/messages-stream.sse",
        ),
        (
            "anthropic_tools",
            Dialect::Anthropic,
            "anthropic/tool-use-stream.sse",
        ),
        ("gemini", Dialect::Gemini, "gemini/generate-stream.sse"),
    ] {
        let stream = pieces(&fixture(file));
        // Per provider event: the SSE events in the provider's own stream.
        let provider_events = SseSplitter::new().push(&fixture(file)).len() as u64;
        group.throughput(Throughput::Elements(provider_events));
        // The id carries the event count, so per-event figures can be derived from
        // `--output-format bencher` lines (benchmarks/run.sh does).
        group.bench_function(format!("{name}/{provider_events}"), |b| {
            b.iter_batched(
                || stream.clone(),
                |s| run(dialect, &s),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
