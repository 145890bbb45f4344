//! An incremental, synchronous Server-Sent Events splitter.
//!
//! Bytes arrive in arbitrary pieces; complete events come out, each as the exact bytes
//! it arrived as (so forwarding them changes nothing), with its `data` lines joined.
//! Hand-written rather than taken from a crate because the SSE crates we know are
//! built around async streams, and the data plane needs plain bytes in, events out.
//! Line endings may be `\n`, `\r\n` or `\r`, as the SSE spec allows (Gemini uses CRLF).

use bytes::{Bytes, BytesMut};

/// One complete event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The event exactly as received, terminating blank line included.
    pub raw: Bytes,
    /// The `data:` lines' values joined with `\n`; empty when the event had none.
    pub data: String,
    /// The `event:` field, if any.
    pub event: Option<String>,
}

#[derive(Debug, Default)]
pub struct SseSplitter {
    buf: BytesMut,
    /// Start of the first line of the current event not yet scanned; always a line start.
    scanned: usize,
}

impl SseSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes and returns every event they complete.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = self.find_event_end() {
            let raw = self.buf.split_to(end).freeze();
            self.scanned = 0;
            if let Some(event) = parse_event(raw) {
                events.push(event);
            }
        }
        events
    }

    /// Bytes received that do not (yet) form a complete event.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// The stream ended: whatever is left, as a last event (a final event may lack its
    /// blank line, or end in a lone CR that could not be told from half a CRLF).
    pub fn finish(&mut self) -> Option<SseEvent> {
        self.scanned = 0;
        if self.buf.is_empty() {
            return None;
        }
        let raw = self.buf.split().freeze();
        parse_event(raw.clone()).or(Some(SseEvent {
            raw,
            data: String::new(),
            event: None,
        }))
    }

    /// The end (exclusive) of the first complete event, if the buffer holds one: the
    /// end of its first empty line.
    fn find_event_end(&mut self) -> Option<usize> {
        loop {
            let line_start = self.scanned;
            let rest = &self.buf[line_start..];
            let at = rest.iter().position(|&b| b == b'\n' || b == b'\r')?;
            let terminator = if rest[at] == b'\r' {
                match rest.get(at + 1) {
                    None => return None, // a CR at the end: CRLF or lone CR, not known yet
                    Some(b'\n') => 2,
                    Some(_) => 1,
                }
            } else {
                1
            };
            let line_end = line_start + at + terminator;
            self.scanned = line_end;
            if at == 0 {
                return Some(line_end);
            }
        }
    }
}

/// Splits an event into its fields; `None` for an event with no fields at all
/// (e.g. a stray blank line between events).
fn parse_event(raw: Bytes) -> Option<SseEvent> {
    let text = String::from_utf8_lossy(&raw);
    let mut data: Option<String> = None;
    let mut event = None;
    let mut any_field = false;
    for line in text.split(['\n', '\r']) {
        if line.is_empty() {
            continue;
        }
        any_field = true;
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_string()),
            },
            "event" => event = Some(value.to_string()),
            _ => {}
        }
    }
    any_field.then(|| SseEvent {
        raw,
        data: data.unwrap_or_default(),
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(input: &[u8], piece: usize) -> Vec<SseEvent> {
        let mut s = SseSplitter::new();
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            out.extend(s.push(chunk));
        }
        out.extend(s.finish());
        assert!(s.pending().is_empty(), "left over: {:?}", s.pending());
        out
    }

    #[test]
    fn splits_lf_crlf_and_cr_streams_whatever_the_chunking() {
        for input in [
            &b"data: {\"a\":1}\n\ndata: [DONE]\n\n"[..],
            &b"data: {\"a\":1}\r\n\r\ndata: [DONE]\r\n\r\n"[..],
            &b"data: {\"a\":1}\r\rdata: [DONE]\r\r"[..],
        ] {
            for piece in 1..input.len() {
                let events = split_all(input, piece);
                assert_eq!(events.len(), 2, "piece {piece} of {input:?}");
                assert_eq!(events[0].data, "{\"a\":1}");
                assert_eq!(events[1].data, "[DONE]");
                let joined: Vec<u8> = events.iter().flat_map(|e| e.raw.to_vec()).collect();
                assert_eq!(joined, input, "raw bytes are kept exactly");
            }
        }
    }

    #[test]
    fn joins_multi_line_data_and_reads_event_names() {
        let events = split_all(b"event: message_start\ndata: a\ndata: b\n: comment\n\n", 3);
        assert_eq!(events[0].event.as_deref(), Some("message_start"));
        assert_eq!(events[0].data, "a\nb");
    }

    #[test]
    fn keeps_incomplete_events_pending_until_the_end() {
        let mut s = SseSplitter::new();
        assert!(s.push(b"data: {\"partial\"").is_empty());
        assert_eq!(s.pending(), b"data: {\"partial\"");
        let last = s.finish().unwrap();
        assert_eq!(last.data, "{\"partial\"");
        assert_eq!(&last.raw[..], b"data: {\"partial\"");
        assert!(s.finish().is_none());
    }

    #[test]
    fn splits_the_provider_fixtures() {
        for (file, expected_done) in [
            ("openai/chat-stream.sse", true),
            ("openai/chat-tools-stream.sse", true),
            ("anthropic/messages-stream.sse", false),
            ("gemini/generate-stream.sse", false),
        ] {
            let path = format!(
                "{}/../fixtures/providers/{file}",
                env!("CARGO_MANIFEST_DIR")
            );
            let bytes = std::fs::read(&path).unwrap();
            let events = split_all(&bytes, 7);
            assert!(events.len() >= 2, "{file}: {} events", events.len());
            assert_eq!(
                events.last().unwrap().data == "[DONE]",
                expected_done,
                "{file}"
            );
            for e in &events {
                if e.data != "[DONE]" && !e.data.is_empty() {
                    serde_json::from_str::<serde_json::Value>(&e.data)
                        .unwrap_or_else(|err| panic!("{file}: {err}: {}", e.data));
                }
            }
        }
    }
}
