//! The client side of translation: the API the client speaks. Everything inside the
//! data plane is OpenAI-shaped; an Anthropic SDK client (`POST /v1/messages`) gets its
//! answers, streams and errors turned into Anthropic's shapes on the way out.

use bytes::Bytes;
use tokenroute_providers::messages_api;

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Surface {
    /// OpenAI Chat Completions (`/v1/chat/completions` and the rest of `/v1`).
    #[default]
    OpenAi,
    /// Anthropic Messages (`/v1/messages`).
    Anthropic,
}

impl Surface {
    /// A whole answer (OpenAI `chat.completion`, cost included) for the client.
    pub fn answer(self, openai: Vec<u8>, client_model: &str) -> Vec<u8> {
        match self {
            Surface::OpenAi => openai,
            Surface::Anthropic => {
                messages_api::from_openai_response(&openai, client_model).unwrap_or(openai)
            }
        }
    }

    pub fn stream(self, client_model: &str) -> ClientStream {
        match self {
            Surface::OpenAi => ClientStream::Passthrough,
            Surface::Anthropic => {
                ClientStream::Anthropic(Box::new(messages_api::StreamTranslator::new(client_model)))
            }
        }
    }

    /// An error body in the client's shape, carrying the request id (also the
    /// `x-request-id` header) so a user's report can be traced in the logs: OpenAI's
    /// shape gets `error.request_id`, Anthropic's a top-level `request_id`, as theirs do.
    pub fn error_body(self, e: &ApiError, request_id: &str) -> Vec<u8> {
        match self {
            Surface::OpenAi => {
                let mut body = e.json();
                body["error"]["request_id"] = request_id.into();
                body.to_string().into_bytes()
            }
            Surface::Anthropic => {
                let body = messages_api::error_body(e.status(), &e.body());
                // Anthropic's own errors carry the request id at the top level.
                match serde_json::from_slice::<serde_json::Value>(&body) {
                    Ok(mut value) if value.is_object() => {
                        value["request_id"] = request_id.into();
                        value.to_string().into_bytes()
                    }
                    _ => body,
                }
            }
        }
    }
}

/// An OpenAI stream on its way to the client's shape.
pub enum ClientStream {
    Passthrough,
    Anthropic(Box<messages_api::StreamTranslator>),
}

impl ClientStream {
    pub fn push(&mut self, openai: Bytes) -> Bytes {
        match self {
            ClientStream::Passthrough => openai,
            ClientStream::Anthropic(t) => Bytes::from(t.push(&openai)),
        }
    }

    pub fn finish(&mut self) -> Bytes {
        match self {
            ClientStream::Passthrough => Bytes::new(),
            ClientStream::Anthropic(t) => Bytes::from(t.finish()),
        }
    }
}
