//! `GET /metrics`: both planes' Prometheus metrics in the text exposition format, on
//! their own listener (`metrics.listen`, 127.0.0.1:9090 by default) so that the API
//! and dashboard ports need not expose them.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, Registry, TextEncoder};

/// Serves until aborted. `refresh` sets read-at-scrape gauges (the usage spool's).
pub async fn serve<F>(listener: tokio::net::TcpListener, registry: Registry, refresh: Option<F>)
where
    F: Fn() + Send + Sync + 'static,
{
    let refresh = std::sync::Arc::new(refresh);
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            let refresh = refresh.clone();
            async move {
                if let Some(refresh) = refresh.as_ref() {
                    refresh();
                }
                let mut body = Vec::new();
                let encoder = TextEncoder::new();
                if let Err(e) = encoder.encode(&registry.gather(), &mut body) {
                    tracing::error!(error = %e, "encoding metrics failed");
                }
                (
                    [(header::CONTENT_TYPE, encoder.format_type().to_string())],
                    body,
                )
                    .into_response()
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the metrics server stopped");
    }
}
