#![allow(clippy::unwrap_used, clippy::panic)]
use super::*;
use crate::money::NanoUsd;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, "test.toml", &no_env)
}

fn error_of(text: &str) -> (String, String) {
    match parse(text) {
        Err(ConfigError::Invalid { path, message, .. }) => (path, message),
        other => panic!("expected an invalid config, got {other:?}"),
    }
}

#[test]
fn the_built_in_default_is_valid_and_embedded() {
    let config = Config::load(None).unwrap();
    assert_eq!(config.proxy.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.control_plane.listen.to_string(), "127.0.0.1:8081");
    assert_eq!(config.sqlite_path(), Some("data/tokenroute.db"));
    assert_eq!(config.proxy.max_body_bytes, 16 * 1024 * 1024);
    let echo = config.model("mock/echo").unwrap();
    assert_eq!(echo.provider, "mock");
    assert_eq!(echo.price.input_per_mtok, NanoUsd(150_000_000));
}

#[test]
fn an_empty_file_gets_the_documented_defaults() {
    let config = parse("").unwrap();
    assert_eq!(config.proxy.key_cache_ttl, Duration::from_secs(60));
    assert_eq!(config.proxy.change_poll, Duration::from_millis(250));
    assert_eq!(config.store.url, "sqlite://data/tokenroute.db");
    assert!(config.models.is_empty());
}

#[test]
fn unknown_keys_are_refused_with_their_path() {
    let (path, message) = error_of("[proxy]\nlisten = \"127.0.0.1:1\"\nlisn = 1\n");
    assert_eq!(path, "proxy.lisn");
    assert!(message.contains("unknown field"), "{message}");
}

#[test]
fn bad_prices_name_the_model_and_key() {
    let (path, message) = error_of(
        r#"
[[providers]]
id = "mock"
kind = "mock"
[[models]]
id = "mock/a"
input-usd-per-mtok = "0.1"
output-usd-per-mtok = "0.1"
context-window = 10
[[models]]
id = "mock/b"
input-usd-per-mtok = "cheap"
output-usd-per-mtok = "0.1"
context-window = 10
"#,
    );
    assert_eq!(path, "models[1].input-usd-per-mtok");
    assert!(message.contains("cheap"), "{message}");
}

#[test]
fn models_must_name_a_configured_provider() {
    let (path, message) = error_of(
        r#"
[[models]]
id = "openai/gpt-4o"
input-usd-per-mtok = "1"
output-usd-per-mtok = "1"
context-window = 10
"#,
    );
    assert_eq!(path, "models[0].id");
    assert!(message.contains("openai"), "{message}");
}

#[test]
fn missing_provider_key_variable_is_named() {
    let (path, message) = error_of(
        r#"
[[providers]]
id = "openai"
kind = "openai"
api-key-env = "TR_TEST_NOT_SET"
"#,
    );
    assert_eq!(path, "providers[0].api-key-env");
    assert!(message.contains("TR_TEST_NOT_SET"), "{message}");
}

#[test]
fn provider_endpoints_and_keys_resolve() {
    let config = Config::from_toml(
        r#"
[[providers]]
id = "local"
kind = "openai"
base-url = "http://127.0.0.1:9999/v1/"
api-key-env = "K"
"#,
        "t",
        &|k| (k == "K").then(|| "sk-123".to_string()),
    )
    .unwrap();
    let p = config.provider("local").unwrap();
    assert_eq!(
        p.endpoints[0].url,
        Some(Endpoint {
            tls: false,
            host: "127.0.0.1".into(),
            port: 9999,
            base_path: "/v1".into()
        })
    );
    assert_eq!(p.endpoints[0].api_key.as_ref().unwrap().expose(), "sk-123");
    let openai = Config::from_toml(
        "[[providers]]\nid = \"o\"\nkind = \"openai\"\n",
        "t",
        &no_env,
    )
    .unwrap();
    let e = openai.provider("o").unwrap().endpoints[0]
        .url
        .clone()
        .unwrap();
    assert!(e.tls);
    assert_eq!((e.host.as_str(), e.port), ("api.openai.com", 443));
}

#[test]
fn bad_addresses_and_store_urls_are_refused() {
    assert_eq!(
        error_of("[proxy]\nlisten = \"localhost\"\n").0,
        "proxy.listen"
    );
    assert_eq!(error_of("[store]\nurl = \"mysql://x\"\n").0, "store.url");
    assert_eq!(error_of("[proxy]\nthreads = 0\n").0, "proxy.threads");
}

#[test]
fn sqlite_paths_come_from_urls() {
    assert_eq!(
        sqlite_path("sqlite://data/x.db?mode=rwc"),
        Some("data/x.db")
    );
    assert_eq!(sqlite_path("sqlite:/tmp/x.db"), Some("/tmp/x.db"));
    assert_eq!(sqlite_path("postgres://h/db"), None);
}

#[test]
fn the_dashboard_url_decides_secure_cookies() {
    let config = parse("").unwrap();
    assert_eq!(config.control_plane.public_url, "http://127.0.0.1:8081");
    assert!(!config.control_plane.secure_cookies());
    let config = parse("[control-plane]\npublic-url = \"https://dash.example.com/\"\n").unwrap();
    assert_eq!(config.control_plane.public_url, "https://dash.example.com");
    assert!(config.control_plane.secure_cookies());
    let config = parse("[control-plane]\npublic-url = \"http://localhost:9000\"\n").unwrap();
    assert!(!config.control_plane.secure_cookies());
    // Plain http anywhere but localhost would send the session cookie in the clear.
    let (path, message) = error_of("[control-plane]\npublic-url = \"http://dash.example.com\"\n");
    assert_eq!(path, "control-plane.public-url");
    assert!(message.contains("localhost only"), "{message}");
    let config = parse("[control-plane]\nadmin-emails = [\" Ops@Example.com \"]\n").unwrap();
    assert_eq!(config.control_plane.admin_emails, ["ops@example.com"]);
}

#[test]
fn sign_in_and_top_ups_read_their_secrets_from_the_environment() {
    let text = r#"
[oidc]
issuer = "https://tenant.logto.app/oidc/"
client-id = "dash"
client-secret-env = "OIDC_SECRET"

[stripe]
secret-key-env = "STRIPE_KEY"
webhook-secret-env = "STRIPE_WHSEC"
min-topup-usd = "10"
max-topup-usd = "250.50"
"#;
    let env = |var: &str| match var {
        "OIDC_SECRET" => Some("s3cret".to_string()),
        "STRIPE_KEY" => Some("sk_test_1".to_string()),
        "STRIPE_WHSEC" => Some("whsec_1".to_string()),
        _ => None,
    };
    let config = Config::from_toml(text, "t.toml", &env).unwrap();
    let oidc = config.oidc.unwrap();
    assert_eq!(oidc.issuer, "https://tenant.logto.app/oidc");
    assert_eq!(oidc.client_secret.expose(), "s3cret");
    assert_eq!(oidc.scopes, ["openid", "profile", "email", "roles"]);
    assert_eq!(oidc.admin_role, None);
    let stripe = config.stripe.unwrap();
    assert_eq!(stripe.api_base, "https://api.stripe.com");
    assert_eq!(stripe.min_topup, NanoUsd::parse_usd("10").unwrap());
    assert_eq!(stripe.max_topup, NanoUsd::parse_usd("250.5").unwrap());

    // A missing variable is named, with the key that names it.
    let (path, message) = match Config::from_toml(text, "t.toml", &no_env) {
        Err(ConfigError::Invalid { path, message, .. }) => (path, message),
        other => panic!("{other:?}"),
    };
    assert_eq!(path, "oidc.client-secret-env");
    assert!(message.contains("OIDC_SECRET"), "{message}");
}

#[test]
fn bad_sign_in_and_top_up_settings_are_refused() {
    let env = |_: &str| Some("x".to_string());
    let error = |text: &str| match Config::from_toml(text, "t.toml", &env) {
        Err(ConfigError::Invalid { path, .. }) => path,
        other => panic!("{other:?}"),
    };
    let oidc = |extra: &str| {
        format!("[oidc]\nissuer = \"https://a.example/oidc\"\nclient-id = \"c\"\nclient-secret-env = \"S\"\n{extra}")
    };
    assert_eq!(error(&oidc("scopes = [\"openid\"]\n")), "oidc.scopes");
    assert_eq!(
        error("[oidc]\nissuer = \"not a url\"\nclient-id = \"c\"\nclient-secret-env = \"S\"\n"),
        "oidc.issuer"
    );
    let stripe = |extra: &str| {
        format!("[stripe]\nsecret-key-env = \"K\"\nwebhook-secret-env = \"W\"\n{extra}")
    };
    assert_eq!(
        error(&stripe("min-topup-usd = \"0.001\"\n")),
        "stripe.min-topup-usd"
    );
    assert_eq!(
        error(&stripe("min-topup-usd = \"-5\"\n")),
        "stripe.min-topup-usd"
    );
    assert_eq!(
        error(&stripe("min-topup-usd = \"50\"\nmax-topup-usd = \"10\"\n")),
        "stripe.max-topup-usd"
    );
    assert_eq!(
        error(&stripe("api-base = \"ftp://x\"\n")),
        "stripe.api-base"
    );
}

#[test]
fn access_logs_and_trusted_proxies() {
    let config = parse("").unwrap();
    assert_eq!(config.log.access_log_dir, PathBuf::from("data/access-logs"));
    assert!(config.log.trusted_proxies.is_empty());
    let config = parse(
        "[log]\naccess-log-dir = \"/var/log/tr\"\ntrusted-proxies = [\"10.0.0.0/8\", \"192.0.2.1\"]\n",
    )
    .unwrap();
    assert_eq!(config.log.access_log_dir, PathBuf::from("/var/log/tr"));
    assert_eq!(config.log.trusted_proxies.len(), 2);
    let (path, message) = error_of("[log]\ntrusted-proxies = [\"10.0.0.0/8\", \"nope\"]\n");
    assert_eq!(path, "log.trusted-proxies[1]");
    assert!(message.contains("`nope`"), "{message}");
}

#[test]
fn logto_management_is_optional_and_reads_its_secret_from_the_environment() {
    let text = r#"
[oidc]
issuer = "https://tenant.logto.app/oidc"
client-id = "dash"
client-secret-env = "S"

[oidc.management]
endpoint = "https://tenant.logto.app/"
client-id = "m2m"
client-secret-env = "M2M"
"#;
    let env = |v: &str| (v == "S" || v == "M2M").then(|| format!("{v}-value"));
    let m = Config::from_toml(text, "t", &env)
        .unwrap()
        .oidc
        .unwrap()
        .management
        .unwrap();
    assert_eq!(m.endpoint, "https://tenant.logto.app");
    assert_eq!(m.resource, "https://default.logto.app/api");
    assert_eq!(m.client_secret.expose(), "M2M-value");
    let only_s = |v: &str| (v == "S").then(|| "x".to_string());
    match Config::from_toml(text, "t", &only_s) {
        Err(ConfigError::Invalid { path, .. }) => {
            assert_eq!(path, "oidc.management.client-secret-env")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn email_needs_an_smtp_url_and_a_sender() {
    let env = |v: &str| (v == "P").then(|| "pw".to_string());
    let ok = "[email]\nsmtp-url = \"smtps://me@smtp.example.com:465\"\npassword-env = \"P\"\nfrom = \"T <t@example.com>\"\n";
    let email = Config::from_toml(ok, "t", &env).unwrap().email.unwrap();
    assert_eq!(email.password.unwrap().expose(), "pw");
    for (text, key) in [
        (
            "[email]\nsmtp-url = \"http://x\"\nfrom = \"t@example.com\"\n",
            "email.smtp-url",
        ),
        (
            "[email]\nsmtp-url = \"smtp://x:25\"\nfrom = \"nobody\"\n",
            "email.from",
        ),
        (
            "[email]\nsmtp-url = \"smtp://x:25\"\npassword-env = \"Q\"\nfrom = \"t@example.com\"\n",
            "email.password-env",
        ),
    ] {
        match Config::from_toml(text, "t", &env) {
            Err(ConfigError::Invalid { path, .. }) => assert_eq!(path, key),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn redis_is_one_server_or_a_cluster_with_an_outage_policy() {
    let one = parse("[redis]\nurl = \"redis://10.0.0.9:6379\"").unwrap();
    let redis = one.redis.unwrap();
    assert!(!redis.cluster);
    assert_eq!(redis.on_outage, RedisOutage::Local);
    assert_eq!(redis.hold_lease, Duration::from_secs(30));
    assert_eq!(redis.key_prefix, "tokenroute");
    let cluster = parse(
        "[redis]\ncluster-nodes = [\"redis://a:1\", \"redis://b:2\"]\non-outage = \"refuse\"",
    )
    .unwrap()
    .redis
    .unwrap();
    assert!(cluster.cluster);
    assert_eq!(cluster.nodes.len(), 2);
    assert_eq!(cluster.on_outage, RedisOutage::Refuse);
    assert!(parse("").unwrap().redis.is_none());
    for (text, key) in [
        ("[redis]", "redis"),
        (
            "[redis]\nurl = \"redis://a\"\ncluster-nodes = [\"redis://b\"]",
            "redis",
        ),
        ("[redis]\ncluster-nodes = []", "redis.cluster-nodes"),
        ("[redis]\nurl = \"http://a\"", "redis.url"),
        ("[redis]\nurl = \"rediss://a\"", "redis.url"),
        (
            "[redis]\ncluster-nodes = [\"redis://a\", \"b\"]",
            "redis.cluster-nodes[1]",
        ),
        (
            "[redis]\nurl = \"redis://a\"\non-outage = \"panic\"",
            "redis.on-outage",
        ),
        (
            "[redis]\nurl = \"redis://a\"\nkey-prefix = \"{x}\"",
            "redis.key-prefix",
        ),
        (
            "[redis]\nurl = \"redis://a\"\ntimeout-ms = 0",
            "redis.timeout-ms",
        ),
    ] {
        assert_eq!(error_of(text).0, key, "{text}");
    }
}

#[test]
fn the_dashboard_serves_tls_only_with_both_files_and_an_https_url() {
    let config = parse(
        "[control-plane]\npublic-url = \"https://dash.example.com\"\ntls-cert = \"c.pem\"\ntls-key = \"k.pem\"",
    )
    .unwrap();
    let tls = config.control_plane.tls.unwrap();
    assert_eq!(tls.cert, std::path::PathBuf::from("c.pem"));
    assert!(parse("").unwrap().control_plane.tls.is_none());
    assert_eq!(
        error_of("[control-plane]\ntls-cert = \"c.pem\"").0,
        "control-plane.tls-key"
    );
    assert_eq!(
        error_of("[control-plane]\ntls-cert = \"c.pem\"\ntls-key = \"k.pem\"").0,
        "control-plane.public-url"
    );
}

#[test]
fn the_spool_is_fsynced_per_answer_unless_periodic_is_asked_for() {
    assert_eq!(parse("").unwrap().usage.fsync, SpoolFsync::PerAnswer);
    assert_eq!(
        parse("[usage]\nfsync = \"periodic\"").unwrap().usage.fsync,
        SpoolFsync::Periodic(Duration::from_millis(10))
    );
    assert_eq!(
        parse("[usage]\nfsync = \"periodic\"\nfsync-period-ms = 25")
            .unwrap()
            .usage
            .fsync,
        SpoolFsync::Periodic(Duration::from_millis(25))
    );
    for (text, key) in [
        ("[usage]\nfsync = \"never\"", "usage.fsync"),
        ("[usage]\nfsync-period-ms = 25", "usage.fsync-period-ms"),
        (
            "[usage]\nfsync = \"periodic\"\nfsync-period-ms = 0",
            "usage.fsync-period-ms",
        ),
    ] {
        assert_eq!(error_of(text).0, key, "{text}");
    }
}

#[test]
fn the_usage_writer_runs_at_nice_10_unless_told_otherwise() {
    assert_eq!(parse("").unwrap().usage.writer_nice, 10);
    assert_eq!(
        parse("[usage]\nwriter-nice = 0").unwrap().usage.writer_nice,
        0
    );
    assert_eq!(
        parse("[usage]\nwriter-nice = 19")
            .unwrap()
            .usage
            .writer_nice,
        19
    );
    for text in ["[usage]\nwriter-nice = -1", "[usage]\nwriter-nice = 20"] {
        assert_eq!(error_of(text).0, "usage.writer-nice", "{text}");
    }
}
