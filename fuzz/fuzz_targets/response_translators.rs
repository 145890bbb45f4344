//! Every response translator on any bytes: whole answers (Anthropic, Gemini, OpenAI →
//! Anthropic surface), error bodies, and the three stream translators fed in two
//! pieces. Errors are fine; panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenroute_providers::{anthropic, gemini, messages_api};

fuzz_target!(|data: &[u8]| {
    let _ = anthropic::from_response(data, "m");
    let _ = gemini::from_response(data, "m");
    let _ = gemini::embeddings_from_response(data, "m", data.len());
    let _ = messages_api::from_openai_response(data, "m");
    let _ = messages_api::error_body(500, data);
    let _ = anthropic::error_message(data);
    let _ = gemini::error_message(data);
    let cut = data.len() / 2;
    let (a, b) = data.split_at(cut);
    let mut t = anthropic::StreamTranslator::new("m");
    let _ = (t.push(a), t.push(b), t.finish());
    let mut t = gemini::StreamTranslator::new("m");
    let _ = (t.push(a), t.push(b), t.finish());
    let mut t = messages_api::StreamTranslator::new("m");
    let _ = (t.push(a), t.push(b), t.finish());
});
