//! Message pages (sign-in failures, billing returns, errors): plain, with no session
//! context, so they render even when the store is down. The dashboard is [`crate::web`].

use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

/// A small page with a title and a sentence, and a way back.
pub fn message(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} — TokenRoute</title><link rel=\"stylesheet\" href=\"/static/app.css\"></head>\
         <body><main id=\"main\"><h1>{title}</h1><p>{text}</p><p><a href=\"/\">Back to TokenRoute</a></p></main></body></html>\n",
        title = escape(title),
        text = escape(text),
    );
    (status, [(header::CACHE_CONTROL, "no-store")], Html(body)).into_response()
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<script>\"x\" & 'y'</script>"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }
}
