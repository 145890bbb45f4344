//! The Pingora `ProxyHttp` implementation: thin, each phase hands off to a module.
//!
//! `request_filter` owns the whole exchange and returns `Ok(true)` ("response
//! written"), so Pingora's own upstream phases never run; `logging` records the
//! request (usage row, access log) whatever happened.

use std::sync::Arc;
use std::time::Instant;
use tokenroute_store::access_log;

use async_trait::async_trait;
use pingora::proxy::{ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};
use tokenroute_domain::clock::now_ms;

use crate::ctx::RequestCtx;
use crate::error::ApiError;
use crate::state::ProxyState;
use crate::{client_api, exchange, explain, models, respond};

pub struct TokenRoute {
    pub state: Arc<ProxyState>,
}

#[async_trait]
impl ProxyHttp for TokenRoute {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        crate::connections::request_started(session);
        ctx.request_id = uuid::Uuid::now_v7().to_string();
        ctx.started = Some(Instant::now());
        ctx.received_at_ms = now_ms();
        let method = session.req_header().method.as_str().to_string();
        let path = session.req_header().uri.path().to_string();
        let client = self.client_of(session);
        let now = Instant::now();
        let result = match self.admit_client(session, ctx, &client, &path, now) {
            Err(e) => Err(e),
            Ok(()) => self.dispatch(session, ctx, method, path).await,
        };
        if matches!(
            result,
            Err(ApiError::MissingKey | ApiError::InvalidKey | ApiError::RevokedKey)
        ) {
            self.state.clients.auth_failed(&client, now);
        }
        // Kept for the access log (the logging phase).
        ctx.client = client;
        if let Err(e) = result {
            if matches!(e, ApiError::Internal(_)) {
                tracing::error!(request_id = %ctx.request_id, error = ?e, "internal error");
            }
            respond::error(session, ctx, &e).await?;
            if matches!(e, ApiError::BodyTooLarge { .. }) {
                crate::body::linger(session).await;
            }
        }
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        // Never reached: request_filter answers every request itself.
        Err(Error::explain(
            ErrorType::InternalError,
            "no upstream phase in TokenRoute",
        ))
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        crate::connections::request_ended(session);
        let duration_ms = ctx.started.map_or(0, |s| s.elapsed().as_millis());
        let req = session.req_header();
        self.state
            .metrics
            .observe(&self.state.router.live().config, req.uri.path(), ctx);
        self.state.access_log.write(access_log::AccessEntry {
            plane: "api",
            time_ms: ctx.received_at_ms,
            request_id: ctx.request_id.clone(),
            client_request_id: access_log::client_request_id(
                req.headers
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok()),
            ),
            client_ip: std::mem::take(&mut ctx.client),
            method: req.method.to_string(),
            url: access_log::redact(
                req.uri
                    .path_and_query()
                    .map_or_else(|| req.uri.path(), |p| p.as_str()),
            ),
            status: ctx.status,
            user_agent: req
                .headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            duration_ms: u64::try_from(duration_ms).unwrap_or(u64::MAX),
        });
        // The access log proper is the file written below; this line is for debugging
        // (off at the default level, so it costs nothing per request).
        tracing::debug!(
            target: "tokenroute::access",
            request_id = %ctx.request_id,
            client = %session.client_addr().map(|a| a.to_string()).unwrap_or_default(),
            method = %req.method,
            path = %req.uri.path(),
            status = ctx.status,
            duration_ms,
            model = ctx.model.as_deref().unwrap_or(""),
            provider = ctx.provider.as_deref().unwrap_or(""),
            input_tokens = ctx.tokens.input,
            output_tokens = ctx.tokens.output,
            cost_nanos = ctx.cost.nanos(),
            user_agent = req.headers.get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or(""),
        );
        // Every attributable API call is recorded ([P3]); answers were recorded durably
        // before their last byte, refusals (at no cost) are recorded here.
        if !ctx.recorded {
            if let Some(event) = ctx.usage_event() {
                ctx.recorded = true;
                self.state.usage.record_later(event).await;
            }
        }
        if let (Some(capture), Some(key)) = (ctx.debug.take(), ctx.key.as_ref()) {
            self.state.debug.submit(capture.into_log(
                ctx.request_id.clone(),
                key.account_id.clone(),
                key.id.clone(),
                ctx.received_at_ms,
                ctx.status,
                ctx.model.clone().unwrap_or_default(),
            ));
        }
    }
}

impl TokenRoute {
    /// The client's address: the peer, or `X-Forwarded-For` from a trusted proxy.
    fn client_of(&self, session: &Session) -> String {
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let forwarded_for = session
            .req_header()
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        access_log::client_ip(peer, forwarded_for, &self.state.config.log.trusted_proxies)
    }

    /// Per-client limits, before any work: header size and count, requests in flight,
    /// and — for a client that failed authentication too often — keys not in memory.
    fn admit_client(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        client: &str,
        path: &str,
        now: Instant,
    ) -> Result<(), ApiError> {
        let clients = &self.state.clients;
        clients.check_headers(session.req_header())?;
        ctx.in_flight = Some(clients.enter(client)?);
        if path.starts_with("/v1/")
            && clients.auth_blocked(client, now)
            && !self.state.keys.knows(session.req_header())
        {
            return Err(ApiError::AuthBlocked);
        }
        Ok(())
    }

    async fn dispatch(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        method: String,
        path: String,
    ) -> Result<(), ApiError> {
        match (method.as_str(), path.as_str()) {
            ("POST", "/v1/chat/completions") => {
                exchange::chat_completions(&self.state, session, ctx).await
            }
            ("POST", "/v1/messages") => exchange::messages(&self.state, session, ctx).await,
            ("POST", "/v1/embeddings") => exchange::embeddings(&self.state, session, ctx).await,
            ("GET", "/v1/models") => self.list_models(session, ctx).await,
            ("POST", "/v1/route/explain") => explain::explain(&self.state, session, ctx).await,
            ("GET", "/v1/generation") => client_api::generation(&self.state, session, ctx).await,
            ("GET", "/v1/credits") => client_api::credits(&self.state, session, ctx).await,
            ("GET", "/v1/key") => client_api::key(&self.state, session, ctx).await,
            ("GET", "/healthz") => respond::whole(session, ctx, 200, "text/plain", "ok\n".into())
                .await
                .map_err(|e| ApiError::Internal(e.to_string())),
            ("GET", "/readyz") => self.readyz(session, ctx).await,
            _ => Err(ApiError::NotFound { method, path }),
        }
    }

    /// Ready when the store answers within 2 s (the config is loaded: it was validated at
    /// start). Not ready means: take this node out of the load balancer; it still serves
    /// known keys from memory and spools usage, but new keys cannot be checked.
    async fn readyz(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<(), ApiError> {
        let store = self.state.keys.store();
        let ready = matches!(
            tokio::time::timeout(std::time::Duration::from_secs(2), store.ping()).await,
            Ok(Ok(()))
        );
        let (status, body) = if ready {
            (200, "ready\n")
        } else {
            (503, "store unreachable\n")
        };
        respond::whole(session, ctx, status, "text/plain", body.into())
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))
    }

    async fn list_models(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<(), ApiError> {
        self.state.keys.authenticate(session.req_header()).await?;
        respond::json(
            session,
            ctx,
            200,
            models::list(&self.state.router.live().config),
        )
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))
    }
}
