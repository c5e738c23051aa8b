//! Judging the other side of a TLS session we open (outbound delivery, probes) and
//! describing any session, server or client side, the same way everywhere.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CommonState, DigitallySignedStruct, SignatureScheme};

use crate::CertInfo;

/// The negotiated version ("TLSv1.3", "TLSv1.2") and cipher suite
/// ("TLS13_AES_256_GCM_SHA384") of a session, for Received headers, logs, metrics,
/// `queue show` and reports.
pub fn session_parameters(state: &CommonState) -> (String, String) {
    let version = match state.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(v) => format!("{v:?}"),
        None => "unknown".to_string(),
    };
    let cipher = state
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_else(|| "unknown".into());
    (version, cipher)
}

/// "TLSv1.3 TLS13_AES_256_GCM_SHA384".
pub fn describe_session(state: &CommonState) -> String {
    let (v, c) = session_parameters(state);
    format!("{v} {c}")
}

fn tls12(
    p: &CryptoProvider,
    m: &[u8],
    c: &CertificateDer<'_>,
    d: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    verify_tls12_signature(m, c, d, &p.signature_verification_algorithms)
}

fn tls13(
    p: &CryptoProvider,
    m: &[u8],
    c: &CertificateDer<'_>,
    d: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    verify_tls13_signature(m, c, d, &p.signature_verification_algorithms)
}

/// Accepts whatever certificate the server presents — for encryption without peer
/// authentication (opportunistic/required delivery, RFC 7435) and for probes that
/// record the certificate for the audit to judge. The handshake signature is still
/// verified against the presented certificate, so the session is a real one with the
/// holder of that key.
#[derive(Debug)]
pub struct AnyServerCert {
    provider: Arc<CryptoProvider>,
}

impl AnyServerCert {
    /// A verifier that checks handshake signatures with `provider`'s algorithms.
    pub fn new(provider: Arc<CryptoProvider>) -> AnyServerCert {
        AnyServerCert { provider }
    }
}

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12(&self.provider, m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls13(&self.provider, m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Direct trust: the leaf certificate's SHA-256, or its public key's, must be one of
/// the pins (lowercase hex). No CA and no name are involved, but the handshake
/// signature must verify with the pinned key, so only its holder completes the
/// handshake.
#[derive(Debug)]
pub struct PinnedServerCert {
    pins: Vec<String>,
    provider: Arc<CryptoProvider>,
}

impl PinnedServerCert {
    /// A verifier accepting only certificates whose fingerprint is one of `pins`,
    /// checking handshake signatures with `provider`'s algorithms.
    pub fn new(pins: Vec<String>, provider: Arc<CryptoProvider>) -> PinnedServerCert {
        PinnedServerCert { pins, provider }
    }
}

impl ServerCertVerifier for PinnedServerCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let info = CertInfo::from_der(end_entity.as_ref()).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        if self
            .pins
            .iter()
            .any(|p| *p == info.sha256 || *p == info.spki_sha256)
        {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(PinMismatch(
                    info.sha256,
                )))),
            ))
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12(&self.provider, m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls13(&self.provider, m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Why a pinned peer was refused. Debug prints the sentence too: rustls shows the
/// inner error with `{:?}` in the message that reaches logs and `queue show`.
struct PinMismatch(String);

impl std::fmt::Debug for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the certificate (SHA-256 {}) matches no configured pin",
            self.0
        )
    }
}

impl std::error::Error for PinMismatch {}
