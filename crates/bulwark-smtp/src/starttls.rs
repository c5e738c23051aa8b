//! STARTTLS (RFC 3207).
//!
//! After the handshake the session is reset to its initial state (§4.2: the client
//! must EHLO again; nothing learned before TLS is kept). Whatever the client sent
//! after STARTTLS in the clear is discarded by `Connection::start_tls` before the
//! handshake, so it can never be read as a command inside TLS (CVE-2011-0411).

use bulwark_net::TlsInfo;

use crate::reply::{Enhanced, Reply, SmtpError};
use crate::session::{Session, State};

impl Session {
    pub(crate) fn starttls(&mut self) {
        if self.tls.is_some() {
            return self.fail(SmtpError::bad_sequence("TLS already active"));
        }
        self.reply(Reply::new(
            220,
            Enhanced::new(2, 0, 0),
            "Ready to start TLS",
        ));
        self.state = State::StartTls;
    }

    /// TLS is up: forget everything said in the clear.
    pub fn tls_started(&mut self, info: TlsInfo) {
        self.tls = Some(info);
        self.helo = None;
        self.txn = None;
        self.user = None;
        self.state = State::Command;
    }
}
