//! Certificates and TLS configurations for every Bulwark listener and connector.
//!
//! Owns: generating the self-signed certificate at init, loading PEM chains and keys
//! (checking they belong together), inspecting certificates (names, expiry,
//! fingerprints) for `config check`, `report` and `audit`, and the rustls server
//! configuration with its TLS 1.2 floor and a certificate that can be swapped at
//! runtime (SIGHUP) without touching established sessions.
//!
//! Must not: know about protocols. Listeners ask for an acceptor; what they speak over
//! it is theirs.

mod generate;
mod inspect;
mod load;
mod peer;
mod server;

pub use generate::{generate_csr, generate_self_signed, write_key_and_cert, GeneratedCert};
pub use inspect::{sha256_fingerprint, CertInfo};
pub use load::{check_files, load_certified_key, read_chain, CertProblem, Severity};
pub use peer::{describe_session, session_parameters, AnyServerCert, PinnedServerCert};
pub use server::{provider, server_config, ReloadableCert, TlsServer};

pub use rustls;
pub use tokio_rustls;

/// Why a certificate or key could not be used. Messages name the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot write: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate found\n  fix: the file must contain -----BEGIN CERTIFICATE----- blocks, leaf first")]
    NoCertificate { path: String },
    #[error("{path}: no PEM private key found\n  fix: the file must contain a PKCS#8, SEC1 (EC) or PKCS#1 (RSA) private key")]
    NoKey { path: String },
    #[error("{path}: unsupported or invalid private key: {detail}")]
    BadKey { path: String, detail: String },
    #[error("{path}: certificate cannot be parsed: {detail}")]
    BadCertificate { path: String, detail: String },
    #[error("the private key {key} does not belong to the certificate {cert}\n  fix: use the key the certificate was issued for (or re-issue the certificate for this key)")]
    KeyMismatch { cert: String, key: String },
    #[error("certificate generation failed: {0}")]
    Generate(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}
