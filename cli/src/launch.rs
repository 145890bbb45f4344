//! [`launch`]: both planes (or one) up and listening; [`Running::stop`]: down, drained.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use tokenroute_domain::config::Config;
use tokenroute_proxy::{BackgroundTasks, ProxyState};
use tokenroute_store::access_log::AccessLog;
use tokenroute_store::{Store, StoreError};
use tokio::sync::watch;

/// Which planes this process runs.
#[derive(Debug, Clone, Copy)]
pub struct Planes {
    pub proxy: bool,
    pub control_plane: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("redis: {0}")]
    Redis(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    ProxyStart(#[from] tokenroute_proxy::state::StartError),
    #[error("the data plane did not start listening on {0} (is the address in use?)")]
    ProxyNotListening(SocketAddr),
    #[error("cannot start the control plane: {0}")]
    ControlPlane(String),
    #[error("cannot serve TLS: {0}")]
    Tls(String),
    #[error("cannot write access logs to {dir}: {source}")]
    AccessLog { dir: String, source: std::io::Error },
}

/// How the data plane should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Let in-flight requests and streams finish (up to `grace-period-secs`).
    Graceful,
    /// Stop now (tests).
    Fast,
    /// Hand the listening sockets to a new process started with `--upgrade`, keep
    /// serving a few seconds while it takes over, then stop as `Graceful` does.
    Upgrade,
}

/// A running TokenRoute.
pub struct Running {
    pub proxy_addr: Option<SocketAddr>,
    pub control_plane_addr: Option<SocketAddr>,
    runtime: tokio::runtime::Runtime,
    stop_tx: watch::Sender<Option<Stop>>,
    pingora: Option<JoinHandle<()>>,
    background: Option<BackgroundTasks>,
    control_plane_stop: watch::Sender<bool>,
    control_plane: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    store: Store,
    /// Where `/metrics` is served, when enabled.
    pub metrics_addr: Option<SocketAddr>,
    metrics: Option<tokio::task::JoinHandle<()>>,
    proxy_state: Option<Arc<ProxyState>>,
    config_watch: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Opens the store (migrating it), then starts the requested planes. Returns once
/// they accept connections. Must not be called from inside a tokio runtime.
pub fn launch(config: Config, planes: Planes) -> Result<Running, LaunchError> {
    launch_inner(config, planes, None, false)
}

/// As [`launch`], as the successor of a running TokenRoute in a zero-downtime
/// restart: the data plane takes the old process's listening sockets through
/// `proxy.upgrade-socket` (the old one sends them when it gets SIGQUIT; this waits up
/// to 5 s for them); the dashboard and metrics listeners are bound as soon as the old
/// process releases them.
pub fn launch_upgrading(config: Config, planes: Planes) -> Result<Running, LaunchError> {
    launch_inner(config, planes, None, true)
}

/// As [`launch`], the control plane serving on `control_plane_listener` when given (a
/// socket the caller bound already, e.g. to know its port before start-up) instead of
/// binding `control-plane.listen`.
pub fn launch_with_listener(
    config: Config,
    planes: Planes,
    control_plane_listener: Option<std::net::TcpListener>,
) -> Result<Running, LaunchError> {
    launch_inner(config, planes, control_plane_listener, false)
}

fn launch_inner(
    config: Config,
    planes: Planes,
    control_plane_listener: Option<std::net::TcpListener>,
    upgrade: bool,
) -> Result<Running, LaunchError> {
    let config = Arc::new(config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tokenroute-app")
        .enable_all()
        .build()
        .map_err(LaunchError::Runtime)?;
    let store = runtime.block_on(Store::open(&config.store.url, config.store.max_connections))?;
    // Both planes' metrics, served together at `metrics.listen`.
    let registry = prometheus::Registry::new();
    let (store, shared) = tokenroute_proxy::shared::attach(&config, store, &registry)
        .map_err(|e| LaunchError::Redis(e.to_string()))?;
    // One writer for both planes' access logs ([P5]).
    let access_log =
        AccessLog::open(&config.log.access_log_dir).map_err(|source| LaunchError::AccessLog {
            dir: config.log.access_log_dir.display().to_string(),
            source,
        })?;

    let (control_plane_stop, control_plane_stop_rx) = watch::channel(false);
    let mut control_plane_addr = None;
    let mut control_plane = None;
    if planes.control_plane {
        let addr = config.control_plane.listen;
        let listener = match control_plane_listener {
            Some(bound) => {
                let _guard = runtime.enter();
                bound
                    .set_nonblocking(true)
                    .and_then(|()| tokio::net::TcpListener::from_std(bound))
                    .map(Some)
            }
            None => runtime.block_on(bind(addr, upgrade)),
        }
        .map_err(|source| LaunchError::Listen { addr, source })?;
        control_plane_addr = listener
            .as_ref()
            .map_or(Some(addr), |l| l.local_addr().ok());
        let state = tokenroute_control_plane::AppState::new(
            store.clone(),
            config.clone(),
            access_log.clone(),
            &registry,
        )
        .map_err(LaunchError::ControlPlane)?;
        let tls = match &config.control_plane.tls {
            Some(files) => {
                let _guard = runtime.enter();
                tokenroute_proxy::tls::install_crypto();
                let cert = tokenroute_proxy::tls::ReloadingCert::open(&files.cert, &files.key)
                    .map_err(LaunchError::Tls)?;
                runtime.spawn(tokenroute_proxy::tls::watch(
                    cert.clone(),
                    control_plane_stop_rx.clone(),
                ));
                Some(tokenroute_proxy::tls::server_config(cert))
            }
            None => None,
        };
        control_plane = Some(runtime.spawn(async move {
            let listener = match listener {
                Some(listener) => listener,
                None => bind_when_free(addr).await?,
            };
            tokenroute_control_plane::serve(listener, state, control_plane_stop_rx, tls).await
        }));
        tracing::info!(
            "dashboard listening on http://{}",
            control_plane_addr.unwrap_or(addr)
        );
    }

    let (stop_tx, stop_rx) = watch::channel(None);
    let mut running = Running {
        proxy_addr: None,
        control_plane_addr,
        runtime,
        stop_tx,
        pingora: None,
        background: None,
        control_plane_stop,
        control_plane,
        store: store.clone(),
        metrics_addr: None,
        metrics: None,
        proxy_state: None,
        config_watch: std::sync::Mutex::new(None),
    };
    let mut proxy_state = None;
    if planes.proxy {
        let (state, background) = ProxyState::start(
            config.clone(),
            store,
            access_log,
            &registry,
            running.runtime.handle(),
            shared,
        )?;
        proxy_state = Some(state.clone());
        running.proxy_state = Some(state.clone());
        running.background = Some(background);
        let addr = config.proxy.listen;
        running.pingora = Some(start_pingora(&config, state, stop_rx, upgrade)?);
        wait_until_listening(addr)?;
        running.proxy_addr = Some(addr);
        tracing::info!("API listening on http://{addr}/v1");
    }
    if config.metrics.enabled {
        let addr = config.metrics.listen;
        let listener = running
            .runtime
            .block_on(bind(addr, upgrade))
            .map_err(|source| LaunchError::Listen { addr, source })?;
        running.metrics_addr = listener
            .as_ref()
            .map_or(Some(addr), |l| l.local_addr().ok());
        let refresh = proxy_state.map(|s| move || s.refresh_metrics());
        running.metrics = Some(running.runtime.spawn(async move {
            let listener = match listener {
                Some(listener) => listener,
                None => match bind_when_free(addr).await {
                    Ok(listener) => listener,
                    Err(e) => {
                        tracing::error!(%addr, error = %e, "cannot serve metrics");
                        return;
                    }
                },
            };
            crate::metrics::serve(listener, registry, refresh).await
        }));
        tracing::info!(
            "metrics on http://{}/metrics",
            running.metrics_addr.unwrap_or(addr)
        );
    }
    Ok(running)
}

/// Binds `addr` now; or, when taking over from a running process (`upgrade`) whose
/// listener still holds it, `None`: the caller binds it once that process lets go
/// ([`bind_when_free`]). (The data plane's socket is handed over instead: Pingora's
/// upgrade. The dashboard and metrics move by rebinding, a gap of ~50 ms.)
async fn bind(addr: SocketAddr, upgrade: bool) -> std::io::Result<Option<tokio::net::TcpListener>> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => Ok(Some(listener)),
        Err(e) if upgrade && e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::info!(%addr, "in use by the process being replaced; bound when it lets go");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Binds `addr` as soon as the process being replaced releases it (within 10 min).
async fn bind_when_free(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

fn start_pingora(
    config: &Config,
    state: Arc<ProxyState>,
    stop_rx: watch::Receiver<Option<Stop>>,
    upgrade: bool,
) -> Result<JoinHandle<()>, LaunchError> {
    let conf = ServerConf {
        threads: config.proxy.threads,
        grace_period_seconds: Some(config.proxy.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(config.proxy.grace_period.as_secs().max(1)),
        upgrade_sock: config.proxy.upgrade_socket.display().to_string(),
        ..ServerConf::default()
    };
    let opt = pingora::server::configuration::Opt {
        upgrade,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    if let Some(dir) = config.proxy.upgrade_socket.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(LaunchError::Runtime)?;
        }
    }
    // With `upgrade`, this waits for the old process's listening sockets.
    server.bootstrap();
    let service = tokenroute_proxy::proxy_service(&server.configuration, state)
        .map_err(|e| LaunchError::Tls(e.to_string()))?;
    server.add_service(service);
    std::thread::Builder::new()
        .name("tokenroute-proxy".into())
        .spawn(move || {
            server.run(RunArgs {
                shutdown_signal: Box::new(StopWatch(stop_rx)),
            })
        })
        .map_err(LaunchError::Runtime)
}

/// Pingora binds inside its own thread; wait until the port answers.
fn wait_until_listening(addr: SocketAddr) -> Result<(), LaunchError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(LaunchError::ProxyNotListening(addr))
}

struct StopWatch(watch::Receiver<Option<Stop>>);

#[async_trait]
impl ShutdownSignalWatch for StopWatch {
    async fn recv(&self) -> ShutdownSignal {
        let mut rx = self.0.clone();
        match rx.wait_for(Option::is_some).await.map(|s| *s) {
            Ok(Some(Stop::Graceful)) => ShutdownSignal::GracefulTerminate,
            Ok(Some(Stop::Upgrade)) => ShutdownSignal::GracefulUpgrade,
            _ => ShutdownSignal::FastShutdown,
        }
    }
}

impl Running {
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Reloads the data plane's routing (providers, models, routes, aliases, rules)
    /// from `file` on SIGHUP and whenever its content changes (checked every second —
    /// polling rather than inotify, so editors that save by renaming and files on
    /// network or container mounts are seen the same). An invalid file is refused with
    /// its error logged, and the running config keeps serving. `store_url` is the
    /// command line's override, applied to every reload as at start.
    pub fn watch_config(&self, file: Option<PathBuf>, store_url: Option<String>) {
        let Some(state) = self.proxy_state.clone() else {
            return;
        };
        let task = self.runtime.spawn(async move {
            #[cfg(unix)]
            let mut hangup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            #[cfg(not(unix))]
            let mut hangup: Option<tokio::sync::mpsc::Receiver<()>> = None;
            let mut seen = file.as_ref().and_then(|f| std::fs::read(f).ok());
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                let signalled = tokio::select! {
                    Some(()) = async {
                        match hangup.as_mut() {
                            Some(h) => h.recv().await,
                            None => std::future::pending().await,
                        }
                    } => true,
                    _ = tick.tick() => false,
                };
                let Some(path) = file.as_deref() else {
                    if signalled {
                        tracing::warn!("SIGHUP: running on the built-in config, nothing to reload");
                    }
                    continue;
                };
                let text = match std::fs::read(path) {
                    Ok(text) => text,
                    Err(e) => {
                        if signalled {
                            tracing::error!(file = %path.display(), error = %e, "config reload refused: cannot read the file");
                        }
                        continue;
                    }
                };
                if !signalled && seen.as_ref() == Some(&text) {
                    continue;
                }
                seen = Some(text);
                match Config::load(Some(path)) {
                    Ok(mut config) => {
                        if let Some(url) = &store_url {
                            config.store.url = url.clone();
                        }
                        state.reload(config);
                    }
                    Err(e) => {
                        state
                            .metrics
                            .config_reloads
                            .with_label_values(&["refused"])
                            .inc();
                        tracing::error!(
                            error = %e,
                            version = %state.router.live().config.routing_version,
                            "config reload refused; the running config keeps serving"
                        );
                    }
                }
            }
        });
        if let Some(old) = self
            .config_watch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .replace(task)
        {
            old.abort();
        }
    }

    /// Blocks until SIGINT or SIGTERM (then stops gracefully) or SIGQUIT (then hands
    /// the listening sockets to the process started with `--upgrade`, and stops
    /// gracefully).
    pub fn wait_for_signal_then_stop(self) {
        let (signal, how) = self.runtime.block_on(async {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{signal, SignalKind};
                match (signal(SignalKind::terminate()), signal(SignalKind::quit())) {
                    (Ok(mut term), Ok(mut quit)) => tokio::select! {
                        _ = tokio::signal::ctrl_c() => ("SIGINT", Stop::Graceful),
                        _ = term.recv() => ("SIGTERM", Stop::Graceful),
                        _ = quit.recv() => ("SIGQUIT", Stop::Upgrade),
                    },
                    _ => {
                        let _ = tokio::signal::ctrl_c().await;
                        ("SIGINT", Stop::Graceful)
                    }
                }
            }
            #[cfg(not(unix))]
            {
                let _ = tokio::signal::ctrl_c().await;
                ("ctrl-c", Stop::Graceful)
            }
        });
        if how == Stop::Upgrade {
            tracing::info!("{signal} received: handing the listening sockets to the new process, then finishing in-flight requests and stopping");
        } else {
            tracing::info!("{signal} received: finishing in-flight requests, then stopping");
        }
        self.stop(how);
    }

    /// Stops the data plane, writes every metered event still queued, stops the
    /// control plane and closes the store.
    pub fn stop(mut self, how: Stop) {
        let _ = self.stop_tx.send(Some(how));
        if let Some(thread) = self.pingora.take() {
            if thread.join().is_err() {
                tracing::error!("the data plane thread panicked");
            }
        }
        if let Some(metrics) = self.metrics.take() {
            metrics.abort();
        }
        if let Some(watch) = self
            .config_watch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            watch.abort();
        }
        // The data plane's state holds the usage channel: dropped before the writer drains.
        self.proxy_state = None;
        let background = self.background.take();
        let control_plane = self.control_plane.take();
        let _ = self.control_plane_stop.send(true);
        let store = self.store.clone();
        self.runtime.block_on(async move {
            if let Some(background) = background {
                background.shutdown().await;
            }
            if let Some(cp) = control_plane {
                match cp.await {
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "control plane stopped with an error")
                    }
                    Err(e) => tracing::error!(error = %e, "control plane task failed"),
                    Ok(Ok(())) => {}
                }
            }
            store.close().await;
        });
        tracing::info!("stopped");
    }
}
