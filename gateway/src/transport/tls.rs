//! TLS for WSS and QUIC (rustls with the ring provider).
//!
//! One [`CertStore`] serves both: it is the rustls certificate resolver,
//! so replacing its certificate (reload) changes what new handshakes see
//! while existing connections keep theirs. Without a configured
//! certificate the gateway makes a self-signed development one (rcgen)
//! once and keeps it in its data directory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

/// TLS setup failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Config: a certificate or key file cannot be read or parsed.
    #[error("cannot read {what} from {path}: {reason}")]
    Read {
        /// "certificate" or "private key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Config: the certificate file holds no certificate.
    #[error("{0} holds no PEM certificate")]
    NoCertificate(PathBuf),
    /// Config: the key does not fit a supported signature scheme.
    #[error("unsupported private key in {path}: {reason}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Config: the private key is not the key of the certificate, so every
    /// handshake would fail.
    #[error("the private key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// Us: the development certificate could not be made or stored.
    #[error("cannot create the development certificate in {dir}: {reason}")]
    DevCert {
        /// The data directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// Us: rustls refused the configuration.
    #[error("TLS configuration rejected: {0}")]
    Config(String),
}

impl TlsError {
    /// The configuration field the problem is about (`tls.cert` or
    /// `tls.key`), for reports that name the field.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Read {
                what: "private key",
                ..
            }
            | Self::BadKey { .. }
            | Self::KeyMismatch { .. } => "tls.key",
            Self::Read { .. } | Self::NoCertificate(_) => "tls.cert",
            Self::DevCert { .. } => "server.data_dir",
            Self::Config(_) => "tls",
        }
    }
}

/// Where the certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Loads a certificate chain and key, and checks that the key is the
/// certificate's (else every handshake would fail).
pub fn load_certified_key(paths: &CertPaths) -> Result<CertifiedKey, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&paths.cert)
        .map_err(|e| TlsError::Read {
            what: "certificate",
            path: paths.cert.clone(),
            reason: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Read {
            what: "certificate",
            path: paths.cert.clone(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(paths.cert.clone()));
    }
    let key = PrivateKeyDer::from_pem_file(&paths.key).map_err(|e| TlsError::Read {
        what: "private key",
        path: paths.key.clone(),
        reason: e.to_string(),
    })?;
    let signing_key =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| TlsError::BadKey {
            path: paths.key.clone(),
            reason: e.to_string(),
        })?;
    let certified = CertifiedKey::new(certs, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        // The key cannot tell its public half: nothing to compare.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            cert: paths.cert.clone(),
            key: paths.key.clone(),
        }),
        Err(e) => Err(TlsError::Read {
            what: "certificate",
            path: paths.cert.clone(),
            reason: format!("not a usable X.509 certificate: {e}"),
        }),
    }
}

/// The development certificate's paths in `data_dir`, created on first
/// use (valid for `localhost`, `127.0.0.1` and `::1`).
pub fn ensure_dev_cert(data_dir: &Path) -> Result<CertPaths, TlsError> {
    let paths = CertPaths {
        cert: data_dir.join("dev-cert.pem"),
        key: data_dir.join("dev-key.pem"),
    };
    if paths.cert.exists() && paths.key.exists() {
        return Ok(paths);
    }
    let fail = |reason: String| TlsError::DevCert {
        dir: data_dir.to_path_buf(),
        reason,
    };
    std::fs::create_dir_all(data_dir).map_err(|e| fail(e.to_string()))?;
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let generated = rcgen::generate_simple_self_signed(names).map_err(|e| fail(e.to_string()))?;
    std::fs::write(&paths.cert, generated.cert.pem()).map_err(|e| fail(e.to_string()))?;
    write_private(&paths.key, generated.signing_key.serialize_pem().as_bytes())
        .map_err(|e| fail(e.to_string()))?;
    Ok(paths)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

/// The certificate every new TLS handshake gets; replaceable at run time.
#[derive(Debug)]
pub struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    /// A store holding `key`.
    pub fn new(key: CertifiedKey) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(Arc::new(key)),
        })
    }

    /// Replaces the certificate for new handshakes.
    pub fn replace(&self, key: CertifiedKey) {
        if let Ok(mut current) = self.current.write() {
            *current = Arc::new(key);
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|k| k.clone())
    }
}

/// A rustls server configuration over `store` for the given ALPN list and
/// protocol versions. Session resumption is on (stateful cache and TLS 1.3
/// tickets); 0-RTT stays off: early data can be replayed by an attacker.
pub fn server_config(
    store: Arc<CertStore>,
    alpn: &[&[u8]],
    tls13_only: bool,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls13_only {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.session_storage = ServerSessionMemoryCache::new(16 * 1024);
    config.ticketer =
        rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError::Config(e.to_string()))?;
    config.max_early_data_size = 0;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_cert_is_created_once_and_loads() {
        let dir = std::env::temp_dir().join(format!("ferry-tls-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let paths = ensure_dev_cert(&dir).unwrap();
        let first = std::fs::read(&paths.cert).unwrap();
        let again = ensure_dev_cert(&dir).unwrap();
        assert_eq!(std::fs::read(&again.cert).unwrap(), first, "must be reused");
        let key = load_certified_key(&paths).unwrap();
        assert_eq!(key.cert.len(), 1);
        let store = CertStore::new(key);
        assert!(server_config(store, &[b"ferry/1"], true).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_and_garbage_files_are_reported_with_their_path() {
        let dir = std::env::temp_dir().join(format!("ferry-tls-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let missing = CertPaths {
            cert: dir.join("nope.pem"),
            key: dir.join("nope.key"),
        };
        let err = load_certified_key(&missing).unwrap_err().to_string();
        assert!(err.contains("nope.pem"), "{err}");
        let bad = CertPaths {
            cert: garbage.clone(),
            key: garbage,
        };
        assert!(matches!(
            load_certified_key(&bad),
            Err(TlsError::NoCertificate(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = std::env::temp_dir().join(format!("ferry-tls-mismatch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let one = ensure_dev_cert(&dir.join("one")).unwrap();
        let two = ensure_dev_cert(&dir.join("two")).unwrap();
        let mixed = CertPaths {
            cert: one.cert,
            key: two.key,
        };
        let err = load_certified_key(&mixed).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        assert_eq!(err.field(), "tls.key");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
