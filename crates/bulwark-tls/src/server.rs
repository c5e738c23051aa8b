//! The rustls server configuration shared by every listener.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bulwark_config::TlsVersion;
use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::{load_certified_key, CertInfo, TlsError};

/// The one crypto provider (ring). Its default cipher suites are AEAD-only (AES-GCM,
/// ChaCha20-Poly1305) with ECDHE: no export, RC4, 3DES, CBC or anonymous suites
/// (DATA-PATHS rule 2) — there is nothing to switch off.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate presented by every listener, replaceable at runtime. Sessions that
/// already finished their handshake keep the key they negotiated with; new handshakes
/// get the new one.
#[derive(Debug)]
pub struct ReloadableCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    info: RwLock<CertInfo>,
}

impl ReloadableCert {
    /// Loads the chain and key (checking they match) and remembers the paths for
    /// [`ReloadableCert::reload`].
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<ReloadableCert, TlsError> {
        let ck = load_certified_key(cert_path, key_path)?;
        let info = leaf_info(&ck)?;
        Ok(ReloadableCert {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: RwLock::new(ck),
            info: RwLock::new(info),
        })
    }

    /// Re-reads the files. On any error the old certificate stays in use.
    pub fn reload(&self) -> Result<CertInfo, TlsError> {
        let ck = load_certified_key(&self.cert_path, &self.key_path)?;
        let info = leaf_info(&ck)?;
        *self.current.write() = ck;
        *self.info.write() = info.clone();
        Ok(info)
    }

    /// The leaf certificate currently presented.
    pub fn info(&self) -> CertInfo {
        self.info.read().clone()
    }
}

fn leaf_info(ck: &CertifiedKey) -> Result<CertInfo, TlsError> {
    let leaf = ck
        .cert
        .first()
        .ok_or(TlsError::Config("empty chain".into()))?;
    CertInfo::from_der(leaf.as_ref())
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

/// A rustls server configuration with the TLS floor from config.
pub fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
    min_version: TlsVersion,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // rustls' default key_log discards secrets: no SSLKEYLOGFILE in production.
    Ok(Arc::new(cfg))
}

/// Everything a listener needs for TLS: the shared, reloadable certificate and the
/// acceptor built on it.
#[derive(Clone)]
pub struct TlsServer {
    cert: Arc<ReloadableCert>,
    acceptor: TlsAcceptor,
    https_acceptor: TlsAcceptor,
    min_version: TlsVersion,
}

impl TlsServer {
    /// Loads certificate and key and builds both acceptors with `min_version` as
    /// the lowest TLS version offered.
    pub fn new(
        cert_path: &Path,
        key_path: &Path,
        min_version: TlsVersion,
    ) -> Result<TlsServer, TlsError> {
        let cert = Arc::new(ReloadableCert::load(cert_path, key_path)?);
        let acceptor = TlsAcceptor::from(server_config(cert.clone(), min_version, &[])?);
        let https_acceptor = TlsAcceptor::from(server_config(
            cert.clone(),
            min_version,
            &[b"h2", b"http/1.1"],
        )?);
        Ok(TlsServer {
            cert,
            acceptor,
            https_acceptor,
            min_version,
        })
    }

    /// The acceptor for mail protocols (no ALPN).
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// The acceptor for HTTPS listeners (ALPN h2, http/1.1).
    pub fn https_acceptor(&self) -> &TlsAcceptor {
        &self.https_acceptor
    }

    /// The lowest TLS version the acceptors negotiate (`[tls] min_version`).
    pub fn min_version(&self) -> TlsVersion {
        self.min_version
    }

    /// Re-reads certificate and key (SIGHUP). Established sessions are untouched.
    pub fn reload(&self) -> Result<CertInfo, TlsError> {
        self.cert.reload()
    }

    /// What the certificate currently served says (changes after a reload).
    pub fn cert_info(&self) -> CertInfo {
        self.cert.info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{generate_self_signed, write_key_and_cert};

    #[test]
    fn reload_swaps_and_keeps_old_on_error() {
        let d = tempfile::tempdir().unwrap();
        let (c, k) = (d.path().join("c.pem"), d.path().join("k.pem"));
        let g = generate_self_signed("one.example.test", 30).unwrap();
        write_key_and_cert(&k, &g.key_pem, &c, &g.cert_pem).unwrap();
        let server = TlsServer::new(&c, &k, TlsVersion::V1_2).unwrap();
        let first = server.cert_info();
        assert!(first.matches_name("one.example.test"));

        let g2 = generate_self_signed("two.example.test", 30).unwrap();
        write_key_and_cert(&k, &g2.key_pem, &c, &g2.cert_pem).unwrap();
        let second = server.reload().unwrap();
        assert!(second.matches_name("two.example.test"));
        assert_eq!(server.cert_info(), second);

        // A broken file: reload fails, the second certificate stays.
        std::fs::write(&c, "garbage").unwrap();
        assert!(server.reload().is_err());
        assert_eq!(server.cert_info(), second);
    }
}
