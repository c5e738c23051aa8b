//! The rustls client configuration of each outbound TLS level.
//!
//! Every level uses the ring provider with TLS 1.3 and 1.2 only (DATA-PATHS rule 2)
//! and its AEAD-only suites. The levels differ in who the peer must be:
//! - `opportunistic` / `required`: anyone (RFC 7435 — encryption against passive
//!   eavesdroppers; certificates of MX hosts are routinely self-signed or for another
//!   name, and refusing them would only push delivery back to cleartext). The
//!   handshake signature is still verified against the presented certificate.
//! - `verify`: the chain must lead to a trust anchor and the certificate must name the
//!   host we connected to (the MX host or smart host). Trust anchors are the
//!   connector's `trust_anchors` file, else the operating system's store, read with
//!   `rustls-native-certs`: administrators and distributions maintain that store
//!   (CA removals arrive with ca-certificates updates, private CAs are added there),
//!   whereas a compiled-in list (webpki-roots) would only change with a new Bulwark.
//! - `pinned`: the leaf certificate's or its public key's SHA-256 must be one of the
//!   configured pins (direct trust); no CA and no name are involved, but the handshake
//!   signature must verify with the pinned certificate's key, so only its holder can
//!   complete the handshake.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use bulwark_config::TlsLevel;
use rustls::client::WebPkiServerVerifier;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;

/// Why a connector's TLS client configuration cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The `trust_anchors` file cannot be read or holds no certificate.
    #[error("{path}: cannot read the trust anchors: {detail}")]
    TrustAnchors {
        /// The file.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The system trust store, read once.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(target: "bulwark::queue", error = %e, "problem reading the system trust store");
            }
            let mut roots = RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::error!(target: "bulwark::queue", "the system trust store has no usable certificate: connectors with tls = \"verify\" will defer everything (install ca-certificates or set trust_anchors)");
            } else {
                tracing::debug!(target: "bulwark::queue", added, ignored, "system trust anchors loaded");
            }
            Arc::new(roots)
        })
        .clone()
}

fn roots_from_file(path: &Path) -> Result<Arc<RootCertStore>, TlsSetupError> {
    let err = |detail: String| TlsSetupError::TrustAnchors {
        path: path.display().to_string(),
        detail,
    };
    let certs = bulwark_tls::read_chain(path).map_err(|e| err(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots.add(c).map_err(|e| err(e.to_string()))?;
    }
    Ok(Arc::new(roots))
}

/// The client configuration for a level. `trust_anchors` only matters for `verify`,
/// `pins` (normalised lowercase hex) only for `pinned`.
pub fn client_config(
    level: TlsLevel,
    trust_anchors: Option<&Path>,
    pins: &[String],
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let provider = bulwark_tls::provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsSetupError::Config(e.to_string()))?;
    let config = match level {
        TlsLevel::Opportunistic | TlsLevel::Required => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(bulwark_tls::AnyServerCert::new(provider)))
            .with_no_client_auth(),
        TlsLevel::Verify => {
            let roots = match trust_anchors {
                Some(p) => roots_from_file(p)?,
                None => system_roots(),
            };
            let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| TlsSetupError::Config(e.to_string()))?;
            builder.with_webpki_verifier(verifier).with_no_client_auth()
        }
        TlsLevel::Pinned => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(bulwark_tls::PinnedServerCert::new(
                pins.to_vec(),
                provider,
            )))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The name to present in SNI and to verify: the host we connect to.
pub fn server_name(host: &str) -> Option<ServerName<'static>> {
    ServerName::try_from(host.trim_end_matches('.').to_string()).ok()
}

/// "TLSv1.3 TLS13_AES_256_GCM_SHA384", as the listeners describe sessions too.
pub fn describe(conn: &rustls::ClientConnection) -> String {
    bulwark_tls::describe_session(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Runs one TLS handshake between a server with `cert` and a client with
    /// `config`, connecting to `name`.
    async fn handshake(
        cert: &bulwark_tls::GeneratedCert,
        config: Arc<ClientConfig>,
        name: &str,
    ) -> Result<String, String> {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        bulwark_tls::write_key_and_cert(&k, &cert.key_pem, &c, &cert.cert_pem).unwrap();
        let server = bulwark_tls::TlsServer::new(&c, &k, bulwark_config::TlsVersion::V1_2).unwrap();
        let acceptor = server.acceptor().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let srv = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            if let Ok(mut t) = acceptor.accept(s).await {
                let _ = t.write_all(b"hi").await;
                let _ = t.flush().await;
            }
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let r = tokio_rustls::TlsConnector::from(config)
            .connect(server_name(name).unwrap(), tcp)
            .await;
        let out = match r {
            Ok(mut t) => {
                let mut b = [0u8; 2];
                t.read_exact(&mut b).await.map_err(|e| e.to_string())?;
                Ok(describe(t.get_ref().1))
            }
            Err(e) => Err(e.to_string()),
        };
        let _ = srv.await;
        out
    }

    fn cert(name: &str) -> bulwark_tls::GeneratedCert {
        bulwark_tls::generate_self_signed(name, 30).unwrap()
    }

    #[tokio::test]
    async fn levels_accept_and_refuse_the_right_peers() {
        let good = cert("mx.partner.test");
        let other = cert("mx.partner.test");
        let info = bulwark_tls::CertInfo::from_pem(good.cert_pem.as_bytes()).unwrap();

        let any = client_config(TlsLevel::Opportunistic, None, &[]).unwrap();
        let d = handshake(&other, any, "mx.partner.test").await.unwrap();
        assert!(d.starts_with("TLSv1.3 TLS13_"), "{d}");

        for pin in [&info.sha256, &info.spki_sha256] {
            let pinned = client_config(TlsLevel::Pinned, None, std::slice::from_ref(pin)).unwrap();
            assert!(handshake(&good, pinned.clone(), "anything.test")
                .await
                .is_ok());
            let e = handshake(&other, pinned, "mx.partner.test")
                .await
                .unwrap_err();
            assert!(e.contains("matches no configured pin"), "{e}");
        }

        // verify: a self-signed certificate is no trust anchor unless configured…
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &good.cert_pem).unwrap();
        let verify = client_config(TlsLevel::Verify, Some(&ca), &[]).unwrap();
        assert!(handshake(&good, verify.clone(), "mx.partner.test")
            .await
            .is_ok());
        // …the name must match…
        let e = handshake(&good, verify.clone(), "other.partner.test")
            .await
            .unwrap_err();
        assert!(e.to_lowercase().contains("not valid for name"), "{e}");
        // …and another certificate for the right name is refused.
        assert!(handshake(&other, verify, "mx.partner.test").await.is_err());
    }

    #[test]
    fn missing_trust_anchor_file_is_an_error() {
        let e = client_config(
            TlsLevel::Verify,
            Some(Path::new("/nonexistent/ca.pem")),
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
