//! What a certificate says: names, validity, issuer, fingerprints.

use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::TlsError;

/// The facts about one certificate that `config check`, `report` and `audit` need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject distinguished name as text (e.g. `CN=mail.example.org`).
    pub subject: String,
    /// The issuer distinguished name as text (e.g. `CN=mail.example.org`).
    pub issuer: String,
    /// DNS names from subjectAltName, or the CN when there is no SAN.
    pub dns_names: Vec<String>,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// Issuer equals subject (and so no CA vouches for it).
    pub self_signed: bool,
    /// SHA-256 of the whole DER certificate, lowercase hex (what `pinned` connectors
    /// and direct-trust peers are configured with).
    pub sha256: String,
    /// SHA-256 of the SubjectPublicKeyInfo, lowercase hex (survives re-issuing with the
    /// same key).
    pub spki_sha256: String,
}

/// SHA-256 of some bytes as lowercase hex.
pub fn sha256_fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

impl CertInfo {
    /// Parses one DER certificate; a parse failure is `BadCertificate` with path
    /// "certificate".
    pub fn from_der(der: &[u8]) -> Result<CertInfo, TlsError> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| TlsError::BadCertificate {
            path: "certificate".into(),
            detail: e.to_string(),
        })?;
        let mut dns_names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::DNSName(n) = name {
                    dns_names.push(n.to_ascii_lowercase());
                }
            }
        }
        if dns_names.is_empty() {
            for cn in cert.subject().iter_common_name() {
                if let Ok(s) = cn.as_str() {
                    dns_names.push(s.to_ascii_lowercase());
                }
            }
        }
        Ok(CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            dns_names,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
            sha256: sha256_fingerprint(der),
            spki_sha256: sha256_fingerprint(cert.public_key().raw),
        })
    }

    /// The first certificate of a PEM file.
    pub fn from_pem(pem: &[u8]) -> Result<CertInfo, TlsError> {
        let mut rd = pem;
        let first = rustls_pemfile::certs(&mut rd)
            .next()
            .ok_or(TlsError::NoCertificate { path: "PEM".into() })?
            .map_err(|e| TlsError::BadCertificate {
                path: "PEM".into(),
                detail: e.to_string(),
            })?;
        CertInfo::from_der(first.as_ref())
    }

    /// RFC 6125 matching of a host name, with a wildcard only as the whole leftmost label.
    pub fn matches_name(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.dns_names.iter().any(|n| {
            if let Some(rest) = n.strip_prefix("*.") {
                host.split_once('.')
                    .is_some_and(|(first, tail)| !first.is_empty() && tail == rest)
            } else {
                *n == host
            }
        })
    }

    /// Seconds until expiry (negative once expired).
    pub fn seconds_to_expiry(&self, now_unix: i64) -> i64 {
        self.not_after - now_unix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(names: &[&str]) -> CertInfo {
        CertInfo {
            subject: String::new(),
            issuer: String::new(),
            dns_names: names.iter().map(|s| s.to_string()).collect(),
            not_before: 0,
            not_after: 0,
            self_signed: false,
            sha256: String::new(),
            spki_sha256: String::new(),
        }
    }

    #[test]
    fn wildcard_matches_one_label_only() {
        let i = info(&["*.example.test"]);
        assert!(i.matches_name("mail.example.test"));
        assert!(i.matches_name("MAIL.example.test."));
        assert!(!i.matches_name("example.test"));
        assert!(!i.matches_name("a.mail.example.test"));
    }
}
