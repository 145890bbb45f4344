//! Anthropic Messages API wire types: what we send (`Serialize`) and what we read
//! (`Deserialize`).
//!
//! Reading is tolerant on purpose: unknown fields are ignored, and unknown content
//! block, delta and event types land in an `Other` variant, so a new Anthropic feature
//! (a new block type, a new stream event) degrades into "ignored" rather than into a
//! failed response.

use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};

// ---------------------------------------------------------------------------------
// Request (POST /v1/messages)
// ---------------------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct Request {
    pub model: String,
    /// Required by Anthropic, unlike OpenAI.
    pub max_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    pub messages: Vec<Message>,
    /// Kept as the client's `Number` so the value is sent exactly as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<Number>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Serialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Block>,
}

/// A content block of a request message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Text {
        text: String,
    },
    Image {
        source: ImageSource,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        /// Text and image blocks; omitted when the tool returned nothing.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        content: Vec<Block>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageSource {
    Base64 { media_type: String, data: String },
    Url { url: String },
}

#[derive(Debug, Serialize)]
pub struct Tool {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub input_schema: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoice {
    Auto {
        #[serde(skip_serializing_if = "is_false")]
        disable_parallel_tool_use: bool,
    },
    /// OpenAI's `required`: some tool must be called.
    Any {
        #[serde(skip_serializing_if = "is_false")]
        disable_parallel_tool_use: bool,
    },
    Tool {
        name: String,
        #[serde(skip_serializing_if = "is_false")]
        disable_parallel_tool_use: bool,
    },
    None,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Serialize)]
pub struct Metadata {
    pub user_id: String,
}

// ---------------------------------------------------------------------------------
// Response, stream events, errors
// ---------------------------------------------------------------------------------

/// A whole (non-streaming) answer.
#[derive(Debug, Deserialize)]
pub struct Response {
    pub id: String,
    #[serde(default)]
    pub content: Vec<ResponseBlock>,
    pub stop_reason: Option<String>,
    /// Optional so that a missing usage stays missing (the data plane then estimates)
    /// instead of becoming a bill of zero tokens.
    pub usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    /// `thinking`, `redacted_thinking`, server tool blocks, and whatever comes next.
    #[serde(other)]
    Other,
}

/// Token counts as Anthropic reports them. Every field may be absent (message_delta
/// usually carries only `output_tokens`) or null.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cache_creation_input_tokens: Option<u64>,
    pub cache_read_input_tokens: Option<u64>,
}

/// One streaming event's `data`, told apart by its `type`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    MessageStart {
        message: StartedMessage,
    },
    ContentBlockStart {
        index: u64,
        content_block: StartedBlock,
    },
    ContentBlockDelta {
        index: u64,
        delta: BlockDelta,
    },
    ContentBlockStop {
        index: u64,
    },
    MessageDelta {
        delta: MessageDelta,
        usage: Option<Usage>,
    },
    MessageStop {},
    Error {
        error: ErrorDetail,
    },
    /// `ping`, and events added after this was written.
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
pub struct StartedMessage {
    pub id: String,
    pub usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StartedBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    /// `thinking_delta`, `signature_delta`, `citations_delta`, ...
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
pub struct MessageDelta {
    pub stop_reason: Option<String>,
}

/// `{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}`,
/// as an HTTP error body and as a mid-stream `event: error`.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Default, Deserialize)]
pub struct ErrorDetail {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub message: Option<String>,
}
