//! SASL credentials of a connector, read from a file only the server may read.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use base64::Engine;

/// A user name and password for AUTH PLAIN / LOGIN. Debug never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    /// The authentication identity (RFC 4616 authcid), shown in logs.
    pub user: String,
    password: String,
}

impl std::fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslCredentials")
            .field("user", &self.user)
            .field("password", &"***")
            .finish()
    }
}

/// Why a connector's credentials file was refused.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file could not be read (or its metadata).
    #[error("{path}: cannot read the credentials: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// Group or others may read or write it.
    #[error("{path}: the credentials file is readable by others (mode {mode:o})\n  fix: chmod 600 {path}")]
    Permissions {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// It is a directory, device or the like.
    #[error("{path}: not a regular file")]
    NotAFile {
        /// The path given.
        path: String,
    },
    /// It lacks the user name line or the password line.
    #[error("{path}: expected the user name on the first line and the password on the second")]
    Format {
        /// The file.
        path: String,
    },
}

impl SaslCredentials {
    /// Credentials from a user name and password (tests and configuration).
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> SaslCredentials {
        SaslCredentials {
            user: user.into(),
            password: password.into(),
        }
    }

    /// Reads `path`, refusing a file that group or others may read or write (the
    /// password would not be secret any more; DATA-PATHS "Administrator → CLI / store").
    pub fn load(path: &Path) -> Result<SaslCredentials, CredentialsError> {
        let p = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| CredentialsError::Read {
            path: p.clone(),
            source,
        })?;
        if !meta.is_file() {
            return Err(CredentialsError::NotAFile { path: p });
        }
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CredentialsError::Permissions { path: p, mode });
        }
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
            path: p.clone(),
            source,
        })?;
        let mut lines = text.lines();
        let user = lines.next().unwrap_or_default().trim_end_matches('\r');
        let password = lines.next().unwrap_or_default().trim_end_matches('\r');
        if user.is_empty() || password.is_empty() {
            return Err(CredentialsError::Format { path: p });
        }
        Ok(SaslCredentials::new(user, password))
    }

    /// RFC 4616 PLAIN initial response: base64(authzid NUL authcid NUL passwd), with
    /// an empty authzid.
    pub fn plain_response(&self) -> String {
        let mut raw = Vec::with_capacity(self.user.len() + self.password.len() + 2);
        raw.push(0);
        raw.extend_from_slice(self.user.as_bytes());
        raw.push(0);
        raw.extend_from_slice(self.password.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(raw)
    }

    /// The two LOGIN answers (user name, then password), base64.
    pub fn login_responses(&self) -> (String, String) {
        let b = base64::engine::general_purpose::STANDARD;
        (b.encode(&self.user), b.encode(&self.password))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn loads_only_private_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("cred");
        std::fs::write(&f, "relay-user\r\ns3cret pass\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = SaslCredentials::load(&f).unwrap_err().to_string();
        assert!(
            e.contains("readable by others (mode 644)") && e.contains("chmod 600"),
            "{e}"
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = SaslCredentials::load(&f).unwrap();
        assert_eq!(c.user, "relay-user");
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(c.plain_response(), "AHJlbGF5LXVzZXIAczNjcmV0IHBhc3M=");
        assert_eq!(
            c.login_responses(),
            (
                "cmVsYXktdXNlcg==".to_string(),
                "czNjcmV0IHBhc3M=".to_string()
            )
        );
        std::fs::write(&f, "only-user\n").unwrap();
        assert!(matches!(
            SaslCredentials::load(&f),
            Err(CredentialsError::Format { .. })
        ));
        assert!(SaslCredentials::load(&dir.path().join("missing")).is_err());
    }
}
