//! The provider side of translation: which wire format a provider speaks, and how an
//! OpenAI chat request and its answer cross into it and back. The translations
//! themselves live in `tokenroute-providers` (pure functions); this module picks one.

use bytes::Bytes;
use tokenroute_domain::config::ProviderKind;
use tokenroute_providers::{anthropic, gemini, TranslateError, UpstreamCall};

use crate::chat::ChatRequest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAI Chat Completions (OpenAI, every compatible API, the built-in mock).
    OpenAi,
    Anthropic,
    Gemini,
}

impl Dialect {
    pub fn of(kind: ProviderKind) -> Dialect {
        match kind {
            ProviderKind::OpenAi | ProviderKind::Mock => Dialect::OpenAi,
            ProviderKind::Anthropic => Dialect::Anthropic,
            ProviderKind::Gemini => Dialect::Gemini,
        }
    }

    /// The request for the provider.
    pub fn call(
        self,
        chat: &ChatRequest,
        upstream_model: &str,
    ) -> Result<UpstreamCall, TranslateError> {
        match self {
            Dialect::OpenAi => Ok(UpstreamCall {
                path: "/chat/completions".into(),
                body: chat.to_openai_upstream(upstream_model),
                headers: Vec::new(),
            }),
            Dialect::Anthropic => anthropic::to_upstream(chat.body(), upstream_model),
            Dialect::Gemini => gemini::to_upstream(chat.body(), upstream_model),
        }
    }

    /// A whole answer, in OpenAI's `chat.completion` shape.
    pub fn answer(self, body: Vec<u8>, client_model: &str) -> Result<Vec<u8>, TranslateError> {
        match self {
            Dialect::OpenAi => Ok(body),
            Dialect::Anthropic => anthropic::from_response(&body, client_model),
            Dialect::Gemini => gemini::from_response(&body, client_model),
        }
    }

    /// Turns the provider's stream into OpenAI's, chunk by chunk.
    pub fn stream(self, client_model: &str) -> StreamAdapter {
        match self {
            Dialect::OpenAi => StreamAdapter::Passthrough,
            Dialect::Anthropic => {
                StreamAdapter::Anthropic(Box::new(anthropic::StreamTranslator::new(client_model)))
            }
            Dialect::Gemini => {
                StreamAdapter::Gemini(Box::new(gemini::StreamTranslator::new(client_model)))
            }
        }
    }

    /// The human message in the provider's error body.
    pub fn error_message(self, body: &[u8]) -> Option<String> {
        match self {
            Dialect::OpenAi => serde_json::from_slice::<serde_json::Value>(body)
                .ok()?
                .pointer("/error/message")?
                .as_str()
                .map(str::to_string),
            Dialect::Anthropic => anthropic::error_message(body),
            Dialect::Gemini => gemini::error_message(body),
        }
    }
}

/// A provider stream on its way to OpenAI's shape.
pub enum StreamAdapter {
    Passthrough,
    Anthropic(Box<anthropic::StreamTranslator>),
    Gemini(Box<gemini::StreamTranslator>),
}

impl StreamAdapter {
    pub fn push(&mut self, chunk: Bytes) -> Bytes {
        match self {
            StreamAdapter::Passthrough => chunk,
            StreamAdapter::Anthropic(t) => Bytes::from(t.push(&chunk)),
            StreamAdapter::Gemini(t) => Bytes::from(t.push(&chunk)),
        }
    }

    /// The provider's stream ended.
    pub fn finish(&mut self) -> Bytes {
        match self {
            StreamAdapter::Passthrough => Bytes::new(),
            StreamAdapter::Anthropic(t) => Bytes::from(t.finish()),
            StreamAdapter::Gemini(t) => Bytes::from(t.finish()),
        }
    }
}
