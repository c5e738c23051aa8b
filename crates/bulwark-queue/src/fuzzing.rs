//! Harnesses for the fuzz target `fuzz/fuzz_targets/queue_replies.rs` and the seeded
//! property test below (run on every `cargo test`). Not delivery code.
//!
//! [`replies`](crate::fuzzing::replies) is what a hostile or broken remote SMTP server
//! can make us parse: the reply framing of `smtp::reply::ReplyBuffer` (bounded,
//! RFC 5321 §4.2), the EHLO keywords, and the client transaction state machine fed
//! those replies. It checks that every recipient ends with exactly one outcome
//! whatever the server says.
//!
//! [`downgrade`](crate::fuzzing::downgrade) is what a client's message can make the
//! 8-bit to 7-bit conversion do (`downgrade::to_seven_bit`, RFC 6152 §3): whatever the
//! MIME structure, it returns 7-bit octets or refuses, and never panics.

use crate::message::MessageInfo;
use crate::params::DeliveryParams;
use crate::smtp::reply::{Capabilities, ReplyBuffer, MAX_REPLY};
use crate::smtp::transaction::{plan, Step, Transaction};

/// Server replies for the generators.
pub const DICTIONARY: &[&[u8]] = &[
    b"220 mx.example ESMTP",
    b"250-mx.example",
    b"250-PIPELINING",
    b"250-SIZE 1000",
    b"250-8BITMIME",
    b"250-SMTPUTF8",
    b"250-DSN",
    b"250-AUTH PLAIN LOGIN",
    b"250 STARTTLS",
    b"250 2.1.0 OK",
    b"250 2.1.5 OK",
    b"354 go ahead",
    b"250 2.0.0 queued",
    b"452 4.5.3 too many recipients",
    b"550 5.1.1 no such user",
    b"421 4.3.2 bye",
    b"999 x",
    b"2500",
];

/// MIME lines for the downgrade generator (8-bit text, boundaries, nested messages).
pub const MIME_DICTIONARY: &[&[u8]] = &[
    b"From: a@example.test",
    b"MIME-Version: 1.0",
    b"Content-Type: multipart/mixed; boundary=\"b\"",
    b"Content-Type: multipart/alternative; boundary=b2",
    b"Content-Type: text/plain; charset=utf-8",
    b"Content-Type: message/rfc822",
    b"Content-Type: application/octet-stream",
    b"Content-Transfer-Encoding: 8bit",
    b"Content-Transfer-Encoding: base64",
    b"Content-Transfer-Encoding: quoted-printable",
    b"--b",
    b"--b--",
    b"--b2",
    b"--b2--",
    b"",
    b"Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln",
    b"\xff\xfe binary",
    b"plain ascii = text ",
    b".leading dot",
];

/// Converts `data` as a message for a next hop without 8BITMIME.
pub fn downgrade(data: &[u8]) {
    match crate::downgrade::to_seven_bit(data) {
        Ok(out) => {
            assert!(out.is_ascii(), "8-bit octets left after conversion");
            if data.is_ascii() {
                assert_eq!(out, data, "a 7-bit message is sent unchanged");
            }
        }
        Err(_) => assert!(!data.is_ascii(), "a 7-bit message is never refused"),
    }
}

/// Feeds `data` (first octet: where to cut it into two reads) as a server's replies.
pub fn replies(data: &[u8]) {
    let (&cut, stream) = data.split_first().unwrap_or((&0, &[]));
    let cut = (cut as usize).min(stream.len());
    let mut buf = ReplyBuffer::default();
    buf.push(&stream[..cut]);
    let mut got = Vec::new();
    let mut fed = false;
    loop {
        match buf.next_raw() {
            Ok(Some((reply, raw))) => {
                assert!(raw.len() <= MAX_REPLY);
                assert!(
                    (200..600).contains(&reply.code.get()),
                    "code {}",
                    reply.code
                );
                let _ = reply.status();
                let _ = Capabilities::from_ehlo(&raw);
                got.push(reply);
            }
            Ok(None) if !fed => {
                buf.push(&stream[cut..]);
                fed = true;
            }
            Ok(None) | Err(_) => break,
        }
    }
    // The transaction fed these replies: each recipient gets one outcome.
    let caps = Capabilities {
        pipelining: cut % 2 == 0,
        ..Capabilities::default()
    };
    let rcpts = vec!["a@remote.test".to_string(), "b@remote.test".to_string()];
    let info = MessageInfo {
        size: 10,
        eight_bit: false,
        utf8_headers: false,
    };
    let Ok(p) = plan(
        &caps,
        "s@example.test",
        &rcpts,
        &info,
        &DeliveryParams::default(),
    ) else {
        return;
    };
    let mut t = Transaction::new(p, caps.pipelining);
    let _ = t.start();
    for r in got {
        match t.on_reply(r) {
            Step::Done => break,
            Step::SendMessage => t.mark_message_sent(),
            Step::Send(_) | Step::Read => {}
        }
    }
    assert_eq!(t.outcomes().len(), rcpts.len());
    assert_eq!(t.abort("fuzz").len(), rcpts.len());
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_net::fuzzing::{run_cases, session_bytes, Rng};

    #[test]
    fn property_replies() {
        run_cases("queue replies", 0x9e0e_0001, 3000, |seed| {
            let mut rng = Rng::new(seed);
            let mut data = vec![rng.next_u64().to_le_bytes()[0]];
            data.extend(session_bytes(&mut rng, DICTIONARY, 20));
            replies(&data);
        });
    }

    #[test]
    fn property_downgrade() {
        run_cases("queue downgrade", 0x9e0e_0002, 3000, |seed| {
            let mut rng = Rng::new(seed);
            downgrade(&session_bytes(&mut rng, MIME_DICTIONARY, 30));
        });
    }
}
