//! Self-signed certificates at init and certificate signing requests.

use std::io::Write;
use std::path::Path;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

use crate::TlsError;

/// A certificate and its key, both PEM.
pub struct GeneratedCert {
    /// The certificate, PEM (`-----BEGIN CERTIFICATE-----`).
    pub cert_pem: String,
    /// Its private key, PKCS#8 PEM.
    pub key_pem: String,
}

impl std::fmt::Debug for GeneratedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("GeneratedCert").finish_non_exhaustive()
    }
}

fn params_for(hostname: &str) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(vec![hostname.to_string()])
        .map_err(|e| TlsError::Generate(format!("{hostname:?}: {e}")))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, hostname);
    params.distinguished_name = dn;
    Ok(params)
}

/// A self-signed ECDSA P-256 certificate for `hostname`, valid from now for
/// `validity_days` days. Clients will not trust it; it exists so that TLS — and with
/// it every password — is protected from the first start, until a CA-issued chain is
/// imported.
pub fn generate_self_signed(hostname: &str, validity_days: u32) -> Result<GeneratedCert, TlsError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let mut params = params_for(hostname)?;
    params.subject_alt_names =
        vec![SanType::DnsName(hostname.try_into().map_err(|e| {
            TlsError::Generate(format!("{hostname:?}: {e}"))
        })?)];
    let now = time::OffsetDateTime::now_utc();
    // Backdate a little so clients with a slightly slow clock accept it.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(validity_days));
    let cert = params
        .self_signed(&key)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok(GeneratedCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A PKCS#10 certificate signing request for `hostname`, signed with the key in
/// `key_pem`, to send to a CA.
pub fn generate_csr(hostname: &str, key_pem: &str) -> Result<String, TlsError> {
    let key = KeyPair::from_pem(key_pem).map_err(|e| TlsError::BadKey {
        path: "key".into(),
        detail: e.to_string(),
    })?;
    let params = params_for(hostname)?;
    let csr = params
        .serialize_request(&key)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    csr.pem().map_err(|e| TlsError::Generate(e.to_string()))
}

/// Writes the key (mode 0600, fsynced) and the certificate chain (0644) atomically:
/// each goes to a temporary file in the same directory first and is renamed into
/// place, so a reload never sees half a file.
pub fn write_key_and_cert(
    key_path: &Path,
    key_pem: &str,
    cert_path: &Path,
    cert_pem: &str,
) -> Result<(), TlsError> {
    write_atomic(key_path, key_pem.as_bytes(), 0o600)?;
    write_atomic(cert_path, cert_pem.as_bytes(), 0o644)?;
    Ok(())
}

fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| TlsError::Write {
        path: path.display().to_string(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("tls")
    ));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CertInfo;

    #[test]
    fn self_signed_has_name_and_validity() {
        let g = generate_self_signed("mail.example.test", 30).unwrap();
        let info = CertInfo::from_pem(g.cert_pem.as_bytes()).unwrap();
        assert!(info.self_signed);
        assert!(info.dns_names.contains(&"mail.example.test".to_string()));
        assert!(info.matches_name("mail.example.test"));
        assert!(!info.matches_name("other.example.test"));
        let days = (info.not_after - info.not_before) / 86400;
        assert!((29..=31).contains(&days), "{days}");
    }

    #[test]
    fn csr_is_pem() {
        let g = generate_self_signed("mail.example.test", 30).unwrap();
        let csr = generate_csr("mail.example.test", &g.key_pem).unwrap();
        assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
    }

    #[test]
    fn key_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let g = generate_self_signed("mail.example.test", 30).unwrap();
        let (k, c) = (
            dir.path().join("tls/key.pem"),
            dir.path().join("tls/cert.pem"),
        );
        write_key_and_cert(&k, &g.key_pem, &c, &g.cert_pem).unwrap();
        assert_eq!(
            std::fs::metadata(&k).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read_to_string(&c).unwrap(), g.cert_pem);
    }
}
