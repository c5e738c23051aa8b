//! Loading a PEM chain and key, and checking that they are usable.

use std::path::Path;
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::{CertInfo, TlsError};

/// Reads every certificate of a PEM file, leaf first.
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let p = path.display().to_string();
    let data = std::fs::read(path).map_err(|source| TlsError::Read {
        path: p.clone(),
        source,
    })?;
    let mut rd = data.as_slice();
    let certs: Vec<_> = rustls_pemfile::certs(&mut rd)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: p.clone(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: p });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let p = path.display().to_string();
    let data = std::fs::read(path).map_err(|source| TlsError::Read {
        path: p.clone(),
        source,
    })?;
    let mut rd = data.as_slice();
    rustls_pemfile::private_key(&mut rd)
        .map_err(|e| TlsError::BadKey {
            path: p.clone(),
            detail: e.to_string(),
        })?
        .ok_or(TlsError::NoKey { path: p })
}

/// Loads chain and key into a rustls `CertifiedKey`, refusing a key that does not
/// belong to the leaf certificate.
pub fn load_certified_key(
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = read_chain(cert_path)?;
    CertInfo::from_der(chain[0].as_ref()).map_err(|e| match e {
        TlsError::BadCertificate { detail, .. } => TlsError::BadCertificate {
            path: cert_path.display().to_string(),
            detail,
        },
        other => other,
    })?;
    let key = read_key(key_path)?;
    let signing_key = crate::provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::BadKey {
            path: key_path.display().to_string(),
            detail: e.to_string(),
        })?;
    let ck = CertifiedKey::new(chain, signing_key);
    match ck.keys_match() {
        Ok(()) => Ok(Arc::new(ck)),
        // A key type whose public half the provider cannot derive cannot be checked
        // here; the first handshake would show it. Every key we generate or the CLI
        // imports (ECDSA, Ed25519, RSA) can be checked.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(Arc::new(ck)),
        Err(_) => Err(TlsError::KeyMismatch {
            cert: cert_path.display().to_string(),
            key: key_path.display().to_string(),
        }),
    }
}

/// How bad a certificate problem is for `config check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing; the server works.
    Warning,
    /// The server cannot (or must not) start with this.
    Error,
}

/// One finding about the certificate files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertProblem {
    /// Whether the server can start with it.
    pub severity: Severity,
    /// What is wrong, naming the file.
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

/// Everything `config check` verifies about the certificate and key files: readable,
/// parseable, matching, within validity, naming the host, key not readable by others.
pub fn check_files(
    cert_path: &Path,
    key_path: &Path,
    hostname: &str,
    now_unix: i64,
) -> Vec<CertProblem> {
    let mut problems = Vec::new();
    let err = |message: String, fix: &str| CertProblem {
        severity: Severity::Error,
        message,
        fix: fix.to_string(),
    };
    let import_fix = "import a valid chain with `bulwark cert import --cert FILE --key FILE`, or regenerate a self-signed one with `bulwark cert selfsigned --force`";
    match load_certified_key(cert_path, key_path) {
        Err(e) => {
            problems.push(err(e.to_string(), import_fix));
            return problems;
        }
        Ok(ck) => {
            let leaf = match ck.cert.first().map(|c| CertInfo::from_der(c.as_ref())) {
                Some(Ok(info)) => info,
                _ => {
                    problems.push(err(
                        format!("{}: leaf certificate unreadable", cert_path.display()),
                        import_fix,
                    ));
                    return problems;
                }
            };
            if leaf.not_after <= now_unix {
                problems.push(err(
                    format!(
                        "{}: the certificate expired {} day(s) ago",
                        cert_path.display(),
                        (now_unix - leaf.not_after) / 86400
                    ),
                    "renew it (import the renewed chain, or `bulwark cert selfsigned --force`), then `kill -HUP` the server",
                ));
            } else if leaf.not_before > now_unix {
                problems.push(err(
                    format!("{}: the certificate is not valid yet", cert_path.display()),
                    "check the system clock, or use a certificate whose validity has begun",
                ));
            } else if leaf.not_after - now_unix < 30 * 86400 {
                problems.push(CertProblem {
                    severity: Severity::Warning,
                    message: format!(
                        "{}: the certificate expires in {} day(s)",
                        cert_path.display(),
                        (leaf.not_after - now_unix) / 86400
                    ),
                    fix: "renew it now; clients refuse expired certificates".into(),
                });
            }
            if !leaf.matches_name(hostname) {
                problems.push(CertProblem {
                    severity: Severity::Warning,
                    message: format!(
                        "{}: the certificate names {:?}, not the server host name {hostname}",
                        cert_path.display(),
                        leaf.dns_names
                    ),
                    fix: "use a certificate for the host name (or change server.hostname)".into(),
                });
            }
        }
    }
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(key_path) {
            if meta.permissions().mode() & 0o077 != 0 {
                problems.push(err(
                    format!(
                        "{}: the private key is readable by other users (mode {:o})",
                        key_path.display(),
                        meta.permissions().mode() & 0o777
                    ),
                    "chmod 600 the key file",
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{generate_self_signed, write_key_and_cert};

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn pair(dir: &Path, name: &str, days: u32) -> (std::path::PathBuf, std::path::PathBuf) {
        let g = generate_self_signed(name, days).unwrap();
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        write_key_and_cert(&k, &g.key_pem, &c, &g.cert_pem).unwrap();
        (c, k)
    }

    #[test]
    fn good_pair_loads_and_checks_clean() {
        let d = tempfile::tempdir().unwrap();
        let (c, k) = pair(d.path(), "mail.example.test", 365);
        load_certified_key(&c, &k).unwrap();
        assert_eq!(check_files(&c, &k, "mail.example.test", now()), vec![]);
    }

    #[test]
    fn mismatched_key_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let (c, _) = pair(d.path(), "a.example.test", 365);
        let (_, k2) = pair(d.path(), "b.example.test", 365);
        let e = load_certified_key(&c, &k2).unwrap_err();
        assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e}");
        let p = check_files(&c, &k2, "a.example.test", now());
        assert!(p[0].message.contains("does not belong"), "{p:?}");
    }

    #[test]
    fn missing_garbage_expired_and_wrong_name() {
        let d = tempfile::tempdir().unwrap();
        let (c, k) = pair(d.path(), "mail.example.test", 10);
        // Missing file.
        let p = check_files(&d.path().join("nope.pem"), &k, "mail.example.test", now());
        assert!(p[0].message.contains("cannot read"), "{p:?}");
        // Garbage.
        let junk = d.path().join("junk.pem");
        std::fs::write(&junk, "hello").unwrap();
        let p = check_files(&junk, &k, "mail.example.test", now());
        assert!(p[0].message.contains("no PEM certificate"), "{p:?}");
        // Expired: check as of 20 days from now.
        let p = check_files(&c, &k, "mail.example.test", now() + 20 * 86400);
        assert!(
            p.iter()
                .any(|x| x.severity == Severity::Error && x.message.contains("expired")),
            "{p:?}"
        );
        // Expiring soon + wrong name are warnings.
        let p = check_files(&c, &k, "other.example.test", now());
        assert!(p.iter().all(|x| x.severity == Severity::Warning), "{p:?}");
        assert_eq!(p.len(), 2, "{p:?}");
    }

    #[test]
    fn world_readable_key_is_an_error() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let (c, k) = pair(d.path(), "mail.example.test", 365);
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o644)).unwrap();
        let p = check_files(&c, &k, "mail.example.test", now());
        assert!(
            p.iter()
                .any(|x| x.message.contains("readable by other users")),
            "{p:?}"
        );
    }
}
