//! The SSE reader: any bytes, cut anywhere, never panic, and what it splits out is the
//! same however the bytes were cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenroute_providers::sse::SseSplitter;

fn events(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut splitter = SseSplitter::new();
    let mut out: Vec<Vec<u8>> = Vec::new();
    for chunk in chunks {
        out.extend(splitter.push(chunk).into_iter().map(|e| e.raw.to_vec()));
    }
    out.extend(splitter.finish().map(|e| e.raw.to_vec()));
    out
}

fuzz_target!(|data: &[u8]| {
    let cut = data.first().map_or(0, |b| *b as usize) % (data.len() + 1);
    let (a, b) = data.split_at(cut);
    assert_eq!(events(&[data]), events(&[a, b]), "the cut changed the events");
});
