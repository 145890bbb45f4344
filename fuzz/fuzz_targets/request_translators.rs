//! Every request translator on any JSON: OpenAI → Anthropic, OpenAI → Gemini, and the
//! Anthropic Messages surface → OpenAI. Errors are fine; panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use tokenroute_providers::{anthropic, gemini, messages_api};

fuzz_target!(|data: &[u8]| {
    let _ = messages_api::to_openai_chat(data);
    if let Ok(Value::Object(chat)) = serde_json::from_slice::<Value>(data) {
        let chat: Map<String, Value> = chat;
        let _ = anthropic::to_upstream(&chat, "claude-x");
        let _ = gemini::to_upstream(&chat, "gemini-x");
        let _ = gemini::embeddings_to_upstream(&chat, "embed-x");
    }
});
