//! AUTH (RFC 4954) with PLAIN (RFC 4616) and LOGIN, only under TLS.
//!
//! The SASL payload decoding is `bulwark_auth::sasl`; the password check, its
//! constant-cost answer for unknown users, the growing delay and the blocking are
//! `bulwark_auth::Authenticator`. Continuation lines are secrets: the connection loop
//! logs them as `***`.

use bulwark_auth::sasl::{
    decode_login_field, decode_plain, SaslError, LOGIN_PASSWORD_CHALLENGE, LOGIN_USERNAME_CHALLENGE,
};
use bulwark_auth::{AuthError, Secret};
use bulwark_net::LineEnding;
use bulwark_store::Account;
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN};

use crate::reply::{Enhanced, Reply, SmtpError};
use crate::session::{Effect, Pending, Session, State};

/// Where a multi-line SASL exchange stands.
pub(crate) enum SaslStep {
    /// `334 ` sent for PLAIN; the next line is the whole response.
    Plain,
    /// LOGIN: user name asked for.
    LoginUser,
    /// LOGIN: password asked for.
    LoginPassword(String),
}

impl Session {
    /// AUTH refused before any exchange: the client may already be sending its
    /// response(s); `command_is_secret` keeps them out of the protocol log.
    fn auth_refused(&mut self, e: SmtpError) {
        self.sasl_refused = true;
        self.fail(e);
    }

    pub(crate) fn auth(&mut self, mechanism: u64, initial: &str) {
        if self.user.is_some() {
            // RFC 4954 §4: AUTH is not allowed after a successful one.
            return self.auth_refused(SmtpError::bad_sequence("Already authenticated"));
        }
        if self.tls.is_none() {
            if self.requirement.needs_auth() {
                // DATA-PATHS rule 1: no password without TLS.
                return self.auth_refused(SmtpError::encryption_required());
            }
            return self.auth_refused(SmtpError::new(
                503,
                Enhanced::new(5, 5, 1),
                "auth_unavailable",
                "Authentication not available",
            ));
        }
        if !self.auth_offered() {
            return self.auth_refused(SmtpError::new(
                503,
                Enhanced::new(5, 5, 1),
                "auth_unavailable",
                "Authentication not available",
            ));
        }
        if !self.helo.as_ref().is_some_and(|h| h.esmtp) {
            return self.auth_refused(SmtpError::bad_sequence("Send EHLO first"));
        }
        if self.txn.is_some() {
            // RFC 4954 §4: not during a mail transaction.
            return self.auth_refused(SmtpError::bad_sequence(
                "AUTH not allowed during a transaction",
            ));
        }
        match mechanism {
            AUTH_PLAIN if initial.is_empty() => {
                self.reply(Reply::plain(334, ""));
                self.state = State::Sasl(SaslStep::Plain);
            }
            AUTH_PLAIN => self.plain_response(initial),
            AUTH_LOGIN if initial.is_empty() => {
                self.reply(Reply::plain(334, LOGIN_USERNAME_CHALLENGE));
                self.state = State::Sasl(SaslStep::LoginUser);
            }
            AUTH_LOGIN => self.login_user(initial),
            _ => self.auth_refused(SmtpError::new(
                504,
                Enhanced::new(5, 5, 4),
                "auth_mechanism",
                "Unrecognized authentication type",
            )),
        }
    }

    /// A SASL continuation line.
    pub fn sasl_response(&mut self, line: &[u8], _ending: LineEnding) {
        let State::Sasl(step) = std::mem::replace(&mut self.state, State::Command) else {
            return self.fail(SmtpError::bad_sequence("No authentication in progress"));
        };
        let Ok(text) = std::str::from_utf8(line) else {
            return self.sasl_error("unknown", SaslError::Base64);
        };
        match step {
            SaslStep::Plain => self.plain_response(text),
            SaslStep::LoginUser => self.login_user(text),
            SaslStep::LoginPassword(user) => match decode_login_field(text) {
                Ok(pw) => self.authenticate(user, Secret::new(pw), "LOGIN"),
                Err(e) => self.sasl_error("LOGIN", e),
            },
        }
    }

    /// The SASL response line was too long.
    pub fn sasl_too_long(&mut self) {
        self.state = State::Command;
        self.fail(SmtpError::new(
            500,
            Enhanced::new(5, 5, 6),
            "auth_too_long",
            "Authentication exchange line is too long",
        ));
    }

    fn plain_response(&mut self, b64: &str) {
        match decode_plain(b64) {
            Ok(c) => self.authenticate(c.username, c.password, "PLAIN"),
            Err(e) => self.sasl_error("PLAIN", e),
        }
    }

    fn login_user(&mut self, b64: &str) {
        match decode_login_field(b64) {
            Ok(user) => {
                self.reply(Reply::plain(334, LOGIN_PASSWORD_CHALLENGE));
                self.state = State::Sasl(SaslStep::LoginPassword(user));
            }
            Err(e) => self.sasl_error("LOGIN", e),
        }
    }

    fn sasl_error(&mut self, mechanism: &'static str, e: SaslError) {
        self.auth_trace(mechanism, "malformed");
        self.auth_refused(match e {
            SaslError::Cancelled => SmtpError::new(
                501,
                Enhanced::new(5, 0, 0),
                "auth_cancelled",
                "Authentication cancelled",
            ),
            SaslError::Base64 => SmtpError::new(
                501,
                Enhanced::new(5, 5, 2),
                "auth_syntax",
                "Invalid base64 data",
            ),
            SaslError::Malformed | SaslError::AuthzMismatch => SmtpError::new(
                501,
                Enhanced::new(5, 5, 2),
                "auth_syntax",
                "Malformed authentication data",
            ),
        });
    }

    fn authenticate(&mut self, username: String, password: Secret, mechanism: &'static str) {
        self.request(
            Effect::Authenticate {
                username,
                password,
                mechanism,
            },
            Pending::Auth(mechanism),
        );
    }

    /// Password checks are counted by the authenticator
    /// (`bulwark_auth_attempts_total`); here only what never reached it.
    fn auth_trace(&self, mechanism: &'static str, result: &'static str) {
        tracing::debug!(target: "bulwark::smtp", session = %self.id, mechanism, result, "AUTH");
    }

    pub(crate) fn auth_result(&mut self, mechanism: &'static str, r: Result<Account, AuthError>) {
        match r {
            Ok(account) => {
                self.auth_trace(mechanism, "success");
                self.user = Some(account);
                self.reply(Reply::new(
                    235,
                    Enhanced::new(2, 7, 0),
                    "Authentication successful",
                ));
            }
            // Same answer whether the account exists or not (DATA-PATHS rule 4).
            Err(AuthError::Failed) => {
                self.auth_trace(mechanism, "failure");
                self.fail(SmtpError::new(
                    535,
                    Enhanced::new(5, 7, 8),
                    "auth_failed",
                    "Authentication credentials invalid",
                ));
            }
            Err(AuthError::Throttled) => {
                self.auth_trace(mechanism, "throttled");
                self.fail(SmtpError::new(
                    454,
                    Enhanced::new(4, 7, 0),
                    "auth_throttled",
                    "Too many failed authentication attempts, try again later",
                ));
            }
            Err(AuthError::Unavailable) => {
                self.auth_trace(mechanism, "unavailable");
                self.fail(SmtpError::new(
                    454,
                    Enhanced::new(4, 7, 0),
                    "auth_unavailable",
                    "Temporary authentication failure",
                ));
            }
        }
    }
}
