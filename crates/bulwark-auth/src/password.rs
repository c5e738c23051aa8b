//! Argon2id password hashes (PHC strings).

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

/// Shortest password `user add` / `user passwd` accept.
pub const MIN_PASSWORD_LEN: usize = 8;

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Shorter than `MIN_PASSWORD_LEN` characters.
    #[error("password is shorter than {MIN_PASSWORD_LEN} characters")]
    TooShort,
    /// Argon2 failed; the text is its error.
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Hashes with Argon2id and the crate's defaults (m = 19 MiB, t = 2, p = 1: the OWASP
/// recommendation), a random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Constant-time verification against a PHC string; false for malformed hashes.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_salted() {
        let h1 = hash_password("s3cret pass").unwrap();
        let h2 = hash_password("s3cret pass").unwrap();
        assert!(h1.starts_with("$argon2id$"));
        assert_ne!(h1, h2, "salted");
        assert!(!h1.contains("s3cret"));
        assert!(verify_password(&h1, "s3cret pass"));
        assert!(!verify_password(&h1, "s3cret pasS"));
        assert!(!verify_password("garbage", "x"));
    }
}
