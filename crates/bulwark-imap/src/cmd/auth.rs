//! LOGIN, AUTHENTICATE PLAIN and its continuation (RFC 9051 §6.2.2-§6.2.3, RFC 4959).

use crate::code::ResponseCode;
use crate::resp::{self, Sink};
use crate::session::{bad, no, ok, Done, Next, Session, MAX_PASSWORD, MAX_USERNAME};
use bulwark_auth::{AuthError, Secret};

impl Session {
    pub(crate) async fn login(&mut self, user: &str, pass: Secret, mech: &'static str) -> Done {
        match self
            .auth
            .authenticate(user, &pass, self.cfg.peer, self.cfg.listener, mech)
            .await
        {
            Ok(account) => {
                self.account = Some(account);
                ok(ResponseCode::Capability(self.capabilities()).text("Logged in"))
            }
            // Attempts are counted by the authenticator (bulwark_auth_*).
            Err(e) => {
                match e {
                    // Same answer whether the user exists or not (DATA-PATHS rule 4).
                    AuthError::Failed => {
                        no(ResponseCode::AuthenticationFailed.text("Authentication failed"))
                    }
                    AuthError::Throttled => {
                        no(ResponseCode::Unavailable
                            .text("Too many failed attempts, try again later"))
                    }
                    AuthError::Unavailable => no(
                        ResponseCode::Unavailable.text("Authentication temporarily unavailable")
                    ),
                }
            }
        }
    }

    pub(crate) async fn auth_plain(&mut self, message: &[u8]) -> Done {
        match bulwark_auth::sasl::parse_plain(message) {
            Ok(c)
                if c.password.expose().len() > MAX_PASSWORD || c.username.len() > MAX_USERNAME =>
            {
                bad(format!(
                    "User names are limited to {MAX_USERNAME} octets, passwords to {MAX_PASSWORD}"
                ))
            }
            Ok(c) => self.login(&c.username, c.password, "PLAIN").await,
            Err(_) => {
                metrics::counter!("bulwark_imap_bad_input_total", "listener" => self.cfg.listener, "reason" => "sasl").increment(1);
                no(ResponseCode::AuthenticationFailed.text("Authentication failed"))
            }
        }
    }

    /// The client's answer to the "+ " of AUTHENTICATE PLAIN (RFC 9051 §6.2.2):
    /// base64, or "*" to cancel. The line is a secret; the shell logs it as `***`.
    pub async fn auth_response(
        &mut self,
        tag: &str,
        line: &[u8],
        sink: &mut dyn Sink,
    ) -> std::io::Result<Next> {
        let text = String::from_utf8_lossy(line);
        let done = match bulwark_auth::sasl::decode_response(&text) {
            Ok(msg) => self.auth_plain(&msg).await,
            Err(bulwark_auth::SaslError::Cancelled) => bad("Authentication cancelled"),
            Err(_) => bad("Invalid base64 in authentication response"),
        };
        resp::line(sink, &done.tagged(tag)).await?;
        Ok(Next::Continue)
    }
}
