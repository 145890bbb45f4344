//! The wire types both sides speak, as far as this translation reads them: pieces of an
//! Anthropic Messages request, and OpenAI's `chat.completion` / `chat.completion.chunk`.
//!
//! Every type ignores fields it does not name (`cache_control`, `logprobs`,
//! `system_fingerprint`, ...), so new fields on either side never break a request.
//! Request pieces borrow from the parsed request (`&'a str`), because they are read
//! from a `serde_json::Value` that outlives them; polymorphic parts (`content` that is
//! a string or a list of blocks) are walked by hand in `request.rs`, so that errors
//! can name the exact path, e.g. `messages[2].content[0].source`.

use serde::Deserialize;
use serde_json::Value;

// --- Anthropic request pieces -------------------------------------------------------

#[derive(Debug, Deserialize)]
pub(super) struct TextBlock<'a> {
    pub text: &'a str,
}

#[derive(Debug, Deserialize)]
pub(super) struct ImageBlock<'a> {
    #[serde(borrow)]
    pub source: MediaSource<'a>,
}

#[derive(Debug, Deserialize)]
pub(super) struct DocumentBlock<'a> {
    #[serde(borrow)]
    pub source: MediaSource<'a>,
    pub title: Option<&'a str>,
}

/// Where an image's or a document's bytes are.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum MediaSource<'a> {
    Base64 {
        media_type: &'a str,
        data: &'a str,
    },
    Url {
        url: &'a str,
    },
    /// A plain-text document.
    Text {
        data: &'a str,
    },
    /// The Files API, a document made of content blocks, ...: nothing OpenAI chat
    /// can take.
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
pub(super) struct ToolUseBlock<'a> {
    pub id: &'a str,
    pub name: &'a str,
    #[serde(default)]
    pub input: Value,
}

/// A `tool_result` block; its `content` (a string or blocks) is read by hand.
#[derive(Debug, Deserialize)]
pub(super) struct ToolResultBlock<'a> {
    pub tool_use_id: &'a str,
    #[serde(default)]
    pub is_error: bool,
}

#[derive(Debug, Deserialize)]
pub(super) struct Tool<'a> {
    /// Absent or `custom` for a client tool; e.g. `web_search_20250305` for Anthropic's
    /// server tools, which only Anthropic can run.
    #[serde(rename = "type")]
    pub kind: Option<&'a str>,
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub input_schema: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ToolChoice<'a> {
    Auto {
        #[serde(default)]
        disable_parallel_tool_use: bool,
    },
    Any {
        #[serde(default)]
        disable_parallel_tool_use: bool,
    },
    Tool {
        name: &'a str,
        #[serde(default)]
        disable_parallel_tool_use: bool,
    },
    None {},
}

#[derive(Debug, Deserialize)]
pub(super) struct Metadata<'a> {
    pub user_id: Option<&'a str>,
}

// --- OpenAI answers -----------------------------------------------------------------

/// A `chat.completion` body.
#[derive(Debug, Deserialize)]
pub(super) struct ChatCompletion {
    pub id: Option<String>,
    #[serde(default)]
    pub choices: Vec<Choice>,
    pub usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Choice {
    #[serde(default)]
    pub index: u32,
    pub message: Option<ChatMessage>,
    pub finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ChatMessage {
    /// A string, `null`, or (from some OpenAI-compatible providers) text parts.
    #[serde(default)]
    pub content: Value,
    pub refusal: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCall>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ToolCall {
    pub id: Option<String>,
    pub function: Option<FunctionCall>,
}

#[derive(Debug, Deserialize)]
pub(super) struct FunctionCall {
    pub name: Option<String>,
    pub arguments: Option<String>,
}

/// OpenAI usage, with what TokenRoute adds (`cost`, in USD).
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct Usage {
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// Passed on as is when it is a number.
    pub cost: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct PromptTokensDetails {
    pub cached_tokens: Option<u64>,
}

/// One `chat.completion.chunk` (an error event, `{"error": {...}}`, is told apart before).
#[derive(Debug, Deserialize)]
pub(super) struct Chunk {
    pub id: Option<String>,
    #[serde(default)]
    pub choices: Option<Vec<ChunkChoice>>,
    pub usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ChunkChoice {
    #[serde(default)]
    pub index: u32,
    pub delta: Option<Delta>,
    pub finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Delta {
    pub content: Option<String>,
    pub refusal: Option<String>,
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ToolCallDelta {
    pub index: Option<u32>,
    pub id: Option<String>,
    pub function: Option<FunctionCall>,
}
