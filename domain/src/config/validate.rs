//! Turns the raw file into a [`Config`], refusing anything inconsistent.
//!
//! Errors are `(key path, message)`; the caller adds the file name.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::{RawConfig, RawModel, RawOidc, RawProvider, RawRedis, RawStripe};
use super::*;
use crate::money::NanoUsd;

type Invalid = (String, String);

const DEFAULT_PROXY_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_CONTROL_PLANE_LISTEN: &str = "127.0.0.1:8081";
const DEFAULT_STORE_URL: &str = "sqlite://data/tokenroute.db";
const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com/v1";
const GEMINI_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta";

pub(super) fn validate(
    raw: RawConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Invalid> {
    let store_url_for_defaults = raw
        .store
        .url
        .clone()
        .unwrap_or_else(|| DEFAULT_STORE_URL.to_string());
    let proxy = ProxyConfig {
        max_json_depth: positive("proxy.max-json-depth", raw.proxy.max_json_depth, 64)?,
        max_messages: positive("proxy.max-messages", raw.proxy.max_messages, 4096)?,
        max_header_bytes: positive(
            "proxy.max-header-bytes",
            raw.proxy.max_header_bytes,
            64 * 1024,
        )?,
        max_headers: positive("proxy.max-headers", raw.proxy.max_headers, 100)?,
        client_body_timeout: millis(
            "proxy.client-body-timeout-ms",
            raw.proxy.client_body_timeout_ms,
            30_000,
        )?,
        client_header_timeout: millis(
            "proxy.client-header-timeout-ms",
            raw.proxy.client_header_timeout_ms,
            10_000,
        )?,
        max_concurrent_per_client: positive(
            "proxy.max-concurrent-requests-per-client",
            raw.proxy.max_concurrent_requests_per_client,
            1024,
        )?,
        max_connections_per_client: positive(
            "proxy.max-connections-per-client",
            raw.proxy.max_connections_per_client,
            256,
        )?,
        failed_auth_per_client_per_minute: positive(
            "proxy.failed-auth-per-client-per-minute",
            raw.proxy.failed_auth_per_client_per_minute,
            30,
        )?,
        http2: raw.proxy.http2.unwrap_or(true),
        tls: tls_files("proxy", raw.proxy.tls_cert, raw.proxy.tls_key)?,
        upstream_ca_file: raw.proxy.upstream_ca_file.map(PathBuf::from),
        upgrade_socket: raw.proxy.upgrade_socket.map_or_else(
            || default_data_dir(&store_url_for_defaults).join("upgrade.sock"),
            PathBuf::from,
        ),
        listen: socket_addr("proxy.listen", raw.proxy.listen, DEFAULT_PROXY_LISTEN)?,
        threads: positive("proxy.threads", raw.proxy.threads, default_threads())?,
        max_body_bytes: positive(
            "proxy.max-body-bytes",
            raw.proxy.max_body_bytes,
            DEFAULT_MAX_BODY_BYTES,
        )?,
        upstream_connect_timeout: millis(
            "proxy.upstream-connect-timeout-ms",
            raw.proxy.upstream_connect_timeout_ms,
            10_000,
        )?,
        upstream_read_timeout: millis(
            "proxy.upstream-read-timeout-ms",
            raw.proxy.upstream_read_timeout_ms,
            300_000,
        )?,
        key_cache_ttl: millis("proxy.key-cache-ttl-ms", raw.proxy.key_cache_ttl_ms, 60_000)?,
        change_poll: millis("proxy.change-poll-ms", raw.proxy.change_poll_ms, 250)?,
        balance_refresh: millis(
            "proxy.balance-refresh-ms",
            raw.proxy.balance_refresh_ms,
            1_000,
        )?,
        grace_period: Duration::from_secs(raw.proxy.grace_period_secs.unwrap_or(5)),
        max_concurrent_per_account: positive(
            "proxy.max-concurrent-requests-per-account",
            raw.proxy.max_concurrent_requests_per_account,
            256,
        )?,
    };
    let control_plane_listen = socket_addr(
        "control-plane.listen",
        raw.control_plane.listen,
        DEFAULT_CONTROL_PLANE_LISTEN,
    )?;
    let control_plane = ControlPlaneConfig {
        public_url: public_url(
            raw.control_plane
                .public_url
                .unwrap_or_else(|| format!("http://{control_plane_listen}")),
        )?,
        listen: control_plane_listen,
        admin_emails: raw
            .control_plane
            .admin_emails
            .unwrap_or_default()
            .iter()
            .map(|e| e.trim().to_lowercase())
            .collect(),
        tls: tls_files(
            "control-plane",
            raw.control_plane.tls_cert,
            raw.control_plane.tls_key,
        )?,
    };
    if control_plane.tls.is_some() && !control_plane.public_url.starts_with("https://") {
        return Err((
            "control-plane.public-url".into(),
            "must be an https:// URL when the dashboard serves TLS (tls-cert)".into(),
        ));
    }
    let oidc = raw.oidc.map(|o| oidc(o, env)).transpose()?;
    let stripe = raw.stripe.map(|s| stripe(s, env)).transpose()?;
    let email = raw
        .email
        .map(|e| -> Result<EmailConfig, Invalid> {
            let url = url::Url::parse(&e.smtp_url)
                .ok()
                .filter(|u| matches!(u.scheme(), "smtp" | "smtps") && u.host().is_some());
            if url.is_none() {
                return Err((
                    "email.smtp-url".into(),
                    format!("`{}` is not an smtp:// or smtps:// URL", e.smtp_url),
                ));
            }
            if !e.from.contains('@') {
                return Err((
                    "email.from".into(),
                    format!("`{}` is not an address", e.from),
                ));
            }
            Ok(EmailConfig {
                smtp_url: e.smtp_url,
                password: e
                    .password_env
                    .map(|var| {
                        secret_from_env("email.password-env", &var, "the SMTP password", env)
                    })
                    .transpose()?,
                from: e.from,
            })
        })
        .transpose()?;
    let store_url = raw
        .store
        .url
        .unwrap_or_else(|| DEFAULT_STORE_URL.to_string());
    if !(store_url.starts_with("sqlite:")
        || store_url.starts_with("postgres://")
        || store_url.starts_with("postgresql://"))
    {
        return Err((
            "store.url".into(),
            format!("`{store_url}` is neither a sqlite: nor a postgres:// URL"),
        ));
    }
    let store_url_for_spool = store_url.clone();
    let store = StoreConfig {
        url: store_url,
        max_connections: positive("store.max-connections", raw.store.max_connections, 16)?,
    };
    let redis = raw.redis.map(redis).transpose()?;
    let usage = UsageConfig {
        channel_capacity: positive("usage.channel-capacity", raw.usage.channel_capacity, 65_536)?,
        batch_size: positive("usage.batch-size", raw.usage.batch_size, 4096)?,
        commit_interval: Duration::from_millis(raw.usage.commit_interval_ms.unwrap_or(50)),
        writer_nice: writer_nice(raw.usage.writer_nice)?,
        spool_dir: raw
            .usage
            .spool_dir
            .map_or_else(|| default_spool_dir(&store_url_for_spool), PathBuf::from),
        spool_max_bytes: positive(
            "usage.spool-max-bytes",
            raw.usage.spool_max_bytes,
            1024 * 1024 * 1024,
        )?,
        spool_segment_bytes: positive(
            "usage.spool-segment-bytes",
            raw.usage.spool_segment_bytes,
            16 * 1024 * 1024,
        )?,
        fsync: spool_fsync(raw.usage.fsync.as_deref(), raw.usage.fsync_period_ms)?,
    };
    let mut trusted_proxies = Vec::new();
    for (i, text) in raw
        .log
        .trusted_proxies
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let net = text
            .parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| {
                (
                    format!("log.trusted-proxies[{i}]"),
                    format!("`{text}` is not an IP address or CIDR range"),
                )
            })?;
        trusted_proxies.push(net);
    }
    let json = match raw.log.format.as_deref().unwrap_or("text") {
        "text" => false,
        "json" => true,
        other => {
            return Err((
                "log.format".into(),
                format!("`{other}` is not `text` or `json`"),
            ))
        }
    };
    let log = LogConfig {
        level: raw.log.level.unwrap_or_else(|| "info".to_string()),
        json,
        access_log_dir: raw.log.access_log_dir.map_or_else(
            || default_data_dir(&store_url_for_spool).join("access-logs"),
            PathBuf::from,
        ),
        trusted_proxies,
    };

    let metrics = MetricsConfig {
        enabled: raw.metrics.enabled.unwrap_or(true),
        listen: socket_addr("metrics.listen", raw.metrics.listen, "127.0.0.1:9090")?,
    };
    let backup = BackupConfig {
        dir: raw.backup.dir.map_or_else(
            || default_data_dir(&store_url_for_spool).join("backups"),
            PathBuf::from,
        ),
        keep: positive("backup.keep", raw.backup.keep, 14)?,
        nightly: raw.backup.nightly.unwrap_or(true),
    };

    let mut providers = Vec::with_capacity(raw.providers.len());
    let mut providers_by_id = HashMap::new();
    for (i, p) in raw.providers.into_iter().enumerate() {
        let provider = provider(i, p, env)?;
        if providers_by_id
            .insert(provider.id.clone(), providers.len())
            .is_some()
        {
            return Err((
                format!("providers[{i}].id"),
                format!("provider `{}` is defined twice", provider.id),
            ));
        }
        providers.push(provider);
    }

    let mut models = Vec::with_capacity(raw.models.len());
    let mut models_by_id = HashMap::new();
    for (i, m) in raw.models.into_iter().enumerate() {
        let model = model(i, m, &providers_by_id)?;
        if models_by_id
            .insert(model.id.clone(), models.len())
            .is_some()
        {
            return Err((
                format!("models[{i}].id"),
                format!("model `{}` is defined twice", model.id),
            ));
        }
        models.push(model);
    }

    let routing = routing::validate(
        raw.routing,
        raw.routes,
        raw.aliases,
        raw.rules,
        &providers,
        &models_by_id,
    )?;
    let routing_version = routing::version(&providers, &models, &routing);
    let routes_by_id = routing
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.clone(), i))
        .collect();

    Ok(Config {
        proxy,
        control_plane,
        store,
        redis,
        oidc,
        stripe,
        email,
        usage,
        log,
        backup,
        metrics,
        providers,
        models,
        routing: routing.settings,
        routes: routing.routes,
        aliases: routing.aliases,
        rules: routing.rules,
        routing_version,
        models_by_id,
        providers_by_id,
        routes_by_id,
    })
}

fn provider(
    i: usize,
    raw: RawProvider,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Provider, Invalid> {
    let at = |key: &str| format!("providers[{i}].{key}");
    if raw.id.is_empty() || raw.id.contains('/') {
        return Err((
            at("id"),
            format!("`{}` must be non-empty and contain no `/`", raw.id),
        ));
    }
    let kind = match raw.kind.as_str() {
        "openai" => ProviderKind::OpenAi,
        "anthropic" => ProviderKind::Anthropic,
        "gemini" => ProviderKind::Gemini,
        "mock" => ProviderKind::Mock,
        other => {
            return Err((
                at("kind"),
                format!(
                    "unknown provider kind `{other}` (expected `openai`, `anthropic`, `gemini` or `mock`)"
                ),
            ))
        }
    };
    let default_url = match kind {
        ProviderKind::Anthropic => ANTHROPIC_BASE_URL,
        ProviderKind::Gemini => GEMINI_BASE_URL,
        _ => OPENAI_BASE_URL,
    };
    let url = |key: &str, text: Option<&str>| -> Result<Option<Endpoint>, Invalid> {
        match kind {
            ProviderKind::Mock if text.is_some() => Err((
                at(key),
                "the mock provider runs in-process and takes no base-url".into(),
            )),
            ProviderKind::Mock => Ok(None),
            _ => endpoint(text.unwrap_or(default_url))
                .map(Some)
                .map_err(|m| (at(key), m)),
        }
    };
    let key = |key: &str, var: Option<&str>| -> Result<Option<Secret<String>>, Invalid> {
        match var {
            None => Ok(None),
            Some(var) => match env(var) {
                Some(value) if !value.is_empty() => Ok(Some(Secret::new(value))),
                _ => Err((
                    at(key),
                    format!("environment variable `{var}` is not set (it should hold this provider's API key)"),
                )),
            },
        }
    };
    let base_url = raw.base_url.as_deref();
    let mut endpoints = vec![ProviderEndpoint {
        key: format!("{}/default", raw.id),
        id: "default".into(),
        url: url("base-url", base_url)?,
        api_key: key("api-key-env", raw.api_key_env.as_deref())?,
        region: raw.region,
        weight: raw.weight.unwrap_or(1),
    }];
    if kind == ProviderKind::Mock && !raw.endpoints.is_empty() {
        return Err((at("endpoints"), "the mock provider has no endpoints".into()));
    }
    for (j, e) in raw.endpoints.into_iter().enumerate() {
        let here = format!("endpoints[{j}]");
        if e.id.is_empty() || e.id.contains('/') || endpoints.iter().any(|x| x.id == e.id) {
            return Err((
                at(&format!("{here}.id")),
                format!("`{}` must be non-empty, contain no `/` and be unique (`default` is the base-url)", e.id),
            ));
        }
        endpoints.push(ProviderEndpoint {
            key: format!("{}/{}", raw.id, e.id),
            url: url(
                &format!("{here}.base-url"),
                e.base_url.as_deref().or(base_url),
            )?,
            api_key: key(
                &format!("{here}.api-key-env"),
                e.api_key_env.as_deref().or(raw.api_key_env.as_deref()),
            )?,
            id: e.id,
            region: e.region,
            weight: e.weight.unwrap_or(1),
        });
    }
    if !endpoints.iter().any(|e| e.weight > 0) {
        return Err((
            at("weight"),
            "at least one endpoint needs a weight above 0".into(),
        ));
    }
    Ok(Provider {
        id: raw.id,
        kind,
        endpoints,
        headers: raw.headers.into_iter().collect(),
    })
}

fn endpoint(text: &str) -> Result<Endpoint, String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    let tls = match url.scheme() {
        "https" => true,
        "http" => false,
        other => return Err(format!("scheme `{other}` is not http or https")),
    };
    let host = url
        .host_str()
        .ok_or_else(|| format!("`{text}` has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| format!("`{text}` has no port"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{text}` must not have a query or fragment"));
    }
    Ok(Endpoint {
        tls,
        host,
        port,
        base_path: url.path().trim_end_matches('/').to_string(),
    })
}

fn model(i: usize, raw: RawModel, providers: &HashMap<String, usize>) -> Result<Model, Invalid> {
    let at = |key: &str| format!("models[{i}].{key}");
    let Some((provider, name)) = raw.id.split_once('/') else {
        return Err((at("id"), format!("`{}` must be `provider/model`", raw.id)));
    };
    if name.is_empty() {
        return Err((at("id"), format!("`{}` has an empty model name", raw.id)));
    }
    if !providers.contains_key(provider) {
        return Err((
            at("id"),
            format!(
                "`{}` names provider `{provider}`, which is not configured",
                raw.id
            ),
        ));
    }
    let price = |key: &str, text: &str| -> Result<NanoUsd, Invalid> {
        let value = NanoUsd::parse_usd(text).map_err(|e| (at(key), e.to_string()))?;
        if value.nanos() < 0 {
            return Err((at(key), format!("`{text}` is negative")));
        }
        Ok(value)
    };
    let price = Price {
        input_per_mtok: price("input-usd-per-mtok", &raw.input_usd_per_mtok)?,
        output_per_mtok: price("output-usd-per-mtok", &raw.output_usd_per_mtok)?,
        cached_input_per_mtok: raw
            .cached_input_usd_per_mtok
            .as_deref()
            .map(|text| price("cached-input-usd-per-mtok", text))
            .transpose()?,
    };
    let capabilities = match raw.capabilities {
        None => Capability::ALL.to_vec(),
        Some(names) => names
            .iter()
            .map(|name| {
                Capability::parse(name).ok_or_else(|| {
                    (
                        at("capabilities"),
                        format!("unknown capability `{name}` (expected tools, vision, json, streaming or embeddings)"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    if raw.context_window == 0 {
        return Err((at("context-window"), "must be greater than 0".into()));
    }
    let max_output_tokens = raw.max_output_tokens.unwrap_or(raw.context_window);
    if max_output_tokens == 0 || max_output_tokens > raw.context_window {
        return Err((
            at("max-output-tokens"),
            "must be greater than 0 and at most context-window".into(),
        ));
    }
    Ok(Model {
        provider: provider.to_string(),
        upstream: raw.upstream.unwrap_or_else(|| name.to_string()),
        id: raw.id,
        price,
        context_window: raw.context_window,
        max_output_tokens,
        capabilities,
    })
}

/// `https://...`, or `http://` on a loopback host (the only place a cookie may go
/// without `Secure`); no trailing slash.
fn public_url(text: String) -> Result<String, Invalid> {
    let key = || "control-plane.public-url".to_string();
    let url = url::Url::parse(&text).map_err(|e| (key(), format!("`{text}` is not a URL: {e}")))?;
    let loopback = matches!(
        url.host(),
        Some(url::Host::Domain("localhost"))
            | Some(url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST))
            | Some(url::Host::Ipv6(std::net::Ipv6Addr::LOCALHOST))
    );
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err((
                key(),
                format!("`{text}`: plain http is allowed for localhost only (session cookies must be Secure)"),
            ))
        }
        other => return Err((key(), format!("scheme `{other}` is not http or https"))),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err((key(), format!("`{text}` must not have a query or fragment")));
    }
    Ok(text.trim_end_matches('/').to_string())
}

/// The value of the environment variable a `*-env` key names; it must be set.
fn secret_from_env(
    key: &str,
    var: &str,
    what: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Secret<String>, Invalid> {
    match env(var) {
        Some(value) if !value.is_empty() => Ok(Secret::new(value)),
        _ => Err((
            key.to_string(),
            format!("environment variable `{var}` is not set (it should hold {what})"),
        )),
    }
}

fn oidc(raw: RawOidc, env: &dyn Fn(&str) -> Option<String>) -> Result<OidcConfig, Invalid> {
    let issuer = url::Url::parse(&raw.issuer)
        .ok()
        .filter(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some())
        .ok_or_else(|| {
            (
                "oidc.issuer".to_string(),
                format!("`{}` is not an http(s) URL", raw.issuer),
            )
        })?;
    if raw.client_id.is_empty() {
        return Err(("oidc.client-id".into(), "must not be empty".into()));
    }
    let scopes = raw.scopes.unwrap_or_else(|| {
        ["openid", "profile", "email", "roles"]
            .map(String::from)
            .to_vec()
    });
    if !scopes.iter().any(|s| s == "openid") || !scopes.iter().any(|s| s == "email") {
        return Err((
            "oidc.scopes".into(),
            "must include `openid` and `email` (accounts are keyed by email)".into(),
        ));
    }
    Ok(OidcConfig {
        issuer: issuer.as_str().trim_end_matches('/').to_string(),
        client_id: raw.client_id,
        client_secret: secret_from_env(
            "oidc.client-secret-env",
            &raw.client_secret_env,
            "the OIDC client secret",
            env,
        )?,
        scopes,
        admin_role: raw.admin_role.filter(|r| !r.is_empty()),
        management: raw
            .management
            .map(|m| -> Result<LogtoManagement, Invalid> {
                endpoint(&m.endpoint).map_err(|e| ("oidc.management.endpoint".to_string(), e))?;
                Ok(LogtoManagement {
                    endpoint: m.endpoint.trim_end_matches('/').to_string(),
                    resource: m
                        .resource
                        .unwrap_or_else(|| "https://default.logto.app/api".to_string()),
                    client_id: m.client_id,
                    client_secret: secret_from_env(
                        "oidc.management.client-secret-env",
                        &m.client_secret_env,
                        "the Logto machine-to-machine app's secret",
                        env,
                    )?,
                })
            })
            .transpose()?,
    })
}

fn stripe(raw: RawStripe, env: &dyn Fn(&str) -> Option<String>) -> Result<StripeConfig, Invalid> {
    let usd = |key: &str, value: Option<String>, default: &str| {
        let text = value.unwrap_or_else(|| default.to_string());
        NanoUsd::parse_usd(&text)
            .ok()
            // Stripe charges whole cents: 1 cent = 10^7 nano-USD.
            .filter(|n| n.is_positive() && n.nanos() % 10_000_000 == 0)
            .ok_or_else(|| {
                (
                    key.to_string(),
                    format!("`{text}` is not a positive USD amount in whole cents"),
                )
            })
    };
    let min_topup = usd("stripe.min-topup-usd", raw.min_topup_usd, "5")?;
    let max_topup = usd("stripe.max-topup-usd", raw.max_topup_usd, "1000")?;
    if max_topup.nanos() < min_topup.nanos() {
        return Err((
            "stripe.max-topup-usd".into(),
            "must be at least min-topup-usd".into(),
        ));
    }
    let api_base = raw
        .api_base
        .unwrap_or_else(|| "https://api.stripe.com".to_string());
    endpoint(&api_base).map_err(|m| ("stripe.api-base".to_string(), m))?;
    Ok(StripeConfig {
        secret_key: secret_from_env(
            "stripe.secret-key-env",
            &raw.secret_key_env,
            "the Stripe secret key",
            env,
        )?,
        webhook_secret: secret_from_env(
            "stripe.webhook-secret-env",
            &raw.webhook_secret_env,
            "the webhook signing secret",
            env,
        )?,
        api_base: api_base.trim_end_matches('/').to_string(),
        min_topup,
        max_topup,
    })
}

fn socket_addr(key: &str, value: Option<String>, default: &str) -> Result<SocketAddr, Invalid> {
    let text = value.unwrap_or_else(|| default.to_string());
    text.parse().map_err(|_| {
        (
            key.to_string(),
            format!("`{text}` is not an IP:port address (e.g. `127.0.0.1:8080`)"),
        )
    })
}

fn positive<T: PartialOrd + Default + Copy>(
    key: &str,
    value: Option<T>,
    default: T,
) -> Result<T, Invalid> {
    let v = value.unwrap_or(default);
    if v <= T::default() {
        return Err((key.to_string(), "must be greater than 0".into()));
    }
    Ok(v)
}

/// A certificate and key given together (`SECTION.tls-cert`, `SECTION.tls-key`), or neither.
fn tls_files(
    section: &str,
    cert: Option<String>,
    key: Option<String>,
) -> Result<Option<TlsFiles>, Invalid> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert: PathBuf::from(cert),
            key: PathBuf::from(key),
        })),
        (None, None) => Ok(None),
        (Some(_), None) => Err((
            format!("{section}.tls-key"),
            "is required with tls-cert".into(),
        )),
        (None, Some(_)) => Err((
            format!("{section}.tls-cert"),
            "is required with tls-key".into(),
        )),
    }
}

fn redis(raw: RawRedis) -> Result<RedisConfig, Invalid> {
    let (nodes, cluster) = match (raw.url, raw.cluster_nodes) {
        (Some(url), None) => (vec![url], false),
        (None, Some(nodes)) if !nodes.is_empty() => (nodes, true),
        (None, Some(_)) => {
            return Err(("redis.cluster-nodes".into(), "names no node".into()));
        }
        (Some(_), Some(_)) => {
            return Err((
                "redis".into(),
                "set `url` (one server) or `cluster-nodes` (a Redis Cluster), not both".into(),
            ));
        }
        (None, None) => {
            return Err((
                "redis".into(),
                "set `url` (one server) or `cluster-nodes` (a Redis Cluster)".into(),
            ));
        }
    };
    for (i, node) in nodes.iter().enumerate() {
        if !node.starts_with("redis://") {
            let key = if cluster {
                format!("redis.cluster-nodes[{i}]")
            } else {
                "redis.url".into()
            };
            let why = if node.starts_with("rediss://") {
                "TLS to Redis (rediss://) is not built in: keep Redis on a private network, \
                 or reach it through a TLS tunnel (stunnel, spiped) at a redis:// address"
            } else {
                "must start with redis://"
            };
            return Err((key, why.into()));
        }
    }
    let on_outage = match raw.on_outage.as_deref() {
        None | Some("local") => RedisOutage::Local,
        Some("refuse") => RedisOutage::Refuse,
        Some(other) => {
            return Err((
                "redis.on-outage".into(),
                format!("`{other}` is not one of: local, refuse"),
            ));
        }
    };
    let key_prefix = raw.key_prefix.unwrap_or_else(|| "tokenroute".into());
    if key_prefix.is_empty() || key_prefix.contains(['{', '}', ' ']) {
        return Err((
            "redis.key-prefix".into(),
            "must be non-empty, without spaces or braces".into(),
        ));
    }
    Ok(RedisConfig {
        nodes: nodes.into_iter().map(Secret::new).collect(),
        cluster,
        on_outage,
        timeout: millis("redis.timeout-ms", raw.timeout_ms, 250)?,
        hold_lease: millis("redis.hold-lease-ms", raw.hold_lease_ms, 30_000)?,
        settled_lease: millis("redis.settled-lease-ms", raw.settled_lease_ms, 3_600_000)?,
        key_prefix,
    })
}

/// `usage.writer-nice`: 0 (the data plane's own priority) to 19 steps below it.
fn writer_nice(value: Option<i32>) -> Result<i32, Invalid> {
    match value.unwrap_or(10) {
        nice @ 0..=19 => Ok(nice),
        other => Err((
            "usage.writer-nice".into(),
            format!("{other} is not a number of nice steps from 0 to 19"),
        )),
    }
}

fn spool_fsync(mode: Option<&str>, period_ms: Option<u64>) -> Result<SpoolFsync, Invalid> {
    match mode {
        None | Some("per-answer") if period_ms.is_some() => Err((
            "usage.fsync-period-ms".into(),
            "applies only with usage.fsync = \"periodic\"".into(),
        )),
        None | Some("per-answer") => Ok(SpoolFsync::PerAnswer),
        Some("periodic") => Ok(SpoolFsync::Periodic(millis(
            "usage.fsync-period-ms",
            period_ms,
            10,
        )?)),
        Some(other) => Err((
            "usage.fsync".into(),
            format!("`{other}` is not one of: per-answer, periodic"),
        )),
    }
}

fn millis(key: &str, value: Option<u64>, default: u64) -> Result<Duration, Invalid> {
    Ok(Duration::from_millis(positive(key, value, default)?))
}

/// Next to the SQLite database when there is one (`data/spool`), else `./data/spool`.
fn default_spool_dir(store_url: &str) -> PathBuf {
    default_data_dir(store_url).join("spool")
}

/// The SQLite database's folder when there is one, else `./data`.
fn default_data_dir(store_url: &str) -> PathBuf {
    super::sqlite_path(store_url)
        .and_then(|p| {
            std::path::Path::new(p)
                .parent()
                .map(std::path::Path::to_path_buf)
        })
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("data"))
}

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
