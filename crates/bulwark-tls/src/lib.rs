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
    /// A certificate or key file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file, as configured.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A generated certificate or key could not be written.
    #[error("{path}: cannot write: {source}")]
    Write {
        /// The file being written.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate found\n  fix: the file must contain -----BEGIN CERTIFICATE----- blocks, leaf first")]
    /// The certificate file holds no PEM `CERTIFICATE` block.
    NoCertificate {
        /// The certificate file.
        path: String,
    },
    #[error("{path}: no PEM private key found\n  fix: the file must contain a PKCS#8, SEC1 (EC) or PKCS#1 (RSA) private key")]
    /// The key file holds no PEM private key.
    NoKey {
        /// The key file.
        path: String,
    },
    #[error("{path}: unsupported or invalid private key: {detail}")]
    /// The private key is of a type rustls cannot use, or malformed.
    BadKey {
        /// The key file.
        path: String,
        /// What rustls said.
        detail: String,
    },
    #[error("{path}: certificate cannot be parsed: {detail}")]
    /// A certificate is not valid X.509 DER.
    BadCertificate {
        /// The certificate file (or "certificate" when parsed from memory).
        path: String,
        /// What the X.509 parser said.
        detail: String,
    },
    #[error("the private key {key} does not belong to the certificate {cert}\n  fix: use the key the certificate was issued for (or re-issue the certificate for this key)")]
    /// The key's public half is not the leaf certificate's.
    KeyMismatch {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
    },
    /// rcgen could not generate a key, certificate or CSR.
    #[error("certificate generation failed: {0}")]
    Generate(String),
    /// rustls refused the server configuration (protocol versions, provider).
    #[error("TLS configuration: {0}")]
    Config(String),
}
