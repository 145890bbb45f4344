//! TLS for the data plane: rustls through Pingora, ALPN offering HTTP/2 and HTTP/1.1,
//! with the certificate chain and key re-read when their files change (checked every
//! 5 s) — a renewed certificate is served without a restart. A file that does not
//! load (a half-written renewal) is refused and the current certificate kept.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{load_certs_and_key_files, ClientHello, CryptoProvider, ResolvesServerCert};
use tokio::sync::watch;

/// How often the files are checked for a change.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// The server certificate, swapped when its files change.
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<CertifiedKey>,
    /// Modification times of the files the current certificate came from.
    loaded: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The certificate chain and private key in these PEM files, ready to serve.
pub fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let (chain, key_der) =
        load_certs_and_key_files(&cert.display().to_string(), &key.display().to_string())
            .map_err(|e| format!("cannot read {} / {}: {e}", cert.display(), key.display()))?
            .ok_or_else(|| {
                format!(
                    "no certificate in {} or no key in {}",
                    cert.display(),
                    key.display()
                )
            })?;
    pingora::tls::install_default_crypto_provider();
    let provider = CryptoProvider::get_default()
        .ok_or_else(|| "no TLS crypto provider installed".to_string())?;
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| format!("the key in {} is not usable: {e}", key.display()))?;
    Ok(CertifiedKey::new(chain, signing))
}

impl ReloadingCert {
    pub fn open(cert: &Path, key: &Path) -> Result<Arc<ReloadingCert>, String> {
        let loaded = (modified(cert), modified(key));
        Ok(Arc::new(ReloadingCert {
            current: ArcSwap::from_pointee(load(cert, key)?),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            loaded: Mutex::new(loaded),
        }))
    }

    /// Loads the files again if either changed; true when a new certificate is served.
    pub fn reload_if_changed(&self) -> bool {
        let now = (modified(&self.cert), modified(&self.key));
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if *loaded == now {
            return false;
        }
        match load(&self.cert, &self.key) {
            Ok(certified) => {
                self.current.store(Arc::new(certified));
                *loaded = now;
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                // Kept as seen: a half-written pair is tried again when it changes.
                tracing::error!(error = %e, "TLS certificate reload refused; the current one keeps serving");
                *loaded = now;
                false
            }
        }
    }
}

/// Installs rustls's process-wide crypto provider (ring, as Pingora's) if none is yet:
/// certificates cannot be loaded before.
pub fn install_crypto() {
    pingora::tls::install_default_crypto_provider();
}

/// A rustls configuration serving `cert` (as it reloads), offering HTTP/2 and HTTP/1.1
/// by ALPN: the control plane's, which axum serves rather than Pingora.
pub fn server_config(cert: Arc<ReloadingCert>) -> Arc<pingora::tls::ServerConfig> {
    let mut config = pingora::tls::ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Reloads the certificate when its files change, until shutdown.
pub async fn watch(cert: Arc<ReloadingCert>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => { cert.reload_if_changed(); }
            _ = shutdown.changed() => return,
        }
    }
}
