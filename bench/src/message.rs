//! Test messages: deterministic, RFC 5322 with CRLF line ends, of a chosen size, with
//! body lines that start with "." (so dot-stuffing is exercised) and a vocabulary in
//! which the SEARCH scenario's word occurs in a known share of messages.

/// The word the SEARCH TEXT scenario looks for: in the body of every message whose
/// index is a multiple of `SEARCH_EVERY`.
pub const SEARCH_WORD: &str = "zanzibarquux";
pub const SEARCH_EVERY: usize = 100;

const WORDS: &[&str] = &[
    "mail",
    "server",
    "rust",
    "queue",
    "mailbox",
    "message",
    "delivery",
    "secure",
    "transport",
    "layer",
    "benchmark",
    "reference",
    "postfix",
    "dovecot",
    "bulwark",
    "envelope",
    "header",
    "body",
    "latency",
    "throughput",
    "idle",
    "connection",
    "storage",
    "durable",
    "fsync",
];

/// How many of `count` messages (indices 0..count) contain `SEARCH_WORD`.
pub fn search_hits(count: usize) -> usize {
    count.div_ceil(SEARCH_EVERY)
}

/// A message index or count as usize; beyond usize (32-bit targets only) it saturates.
pub fn saturating_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// A small xorshift so messages differ without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Message number `index` from `from` to `to`, about `size` octets long (never less
/// than its headers). The Date is fixed so runs are repeatable.
pub fn build(index: usize, size: usize, from: &str, to: &str) -> Vec<u8> {
    let mut m = format!(
        "From: Bench Sender <{from}>\r\n\
         To: <{to}>\r\n\
         Subject: Benchmark message {index} about {}\r\n\
         Date: Mon, 2 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <bench.{index}.{size}@bench.example.test>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n",
        WORDS[index % WORDS.len()]
    )
    .into_bytes();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1));
    let mut line = 0usize;
    if index.is_multiple_of(SEARCH_EVERY) {
        m.extend_from_slice(format!("The secret word is {SEARCH_WORD}.\r\n").as_bytes());
    }
    while m.len() + 2 < size {
        let mut l = String::new();
        // Every 7th line starts with a dot: SMTP must stuff it, POP3 too.
        if line % 7 == 3 {
            l.push('.');
        }
        while l.len() < 70 {
            // The remainder is below WORDS.len(), a usize.
            #[allow(clippy::cast_possible_truncation)]
            let w = WORDS[(rng.next() % WORDS.len() as u64) as usize];
            if !l.is_empty() && !l.ends_with('.') {
                l.push(' ');
            }
            l.push_str(w);
        }
        let room = size.saturating_sub(m.len() + 2);
        l.truncate(room.max(1));
        m.extend_from_slice(l.as_bytes());
        m.extend_from_slice(b"\r\n");
        line += 1;
    }
    m
}

/// SMTP DATA transparency (RFC 5321 §4.5.2): a line starting with "." gets another
/// one; the result ends with the CRLF "." CRLF terminator. `msg` must end with CRLF.
pub fn dot_stuff(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + msg.len() / 50 + 5);
    let mut at_line_start = true;
    for &b in msg {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturating_usize_keeps_what_fits() {
        assert_eq!(saturating_usize(0), 0);
        assert_eq!(saturating_usize(100_000), 100_000);
        assert_eq!(saturating_usize(u64::MAX), usize::MAX);
    }

    #[test]
    fn messages_have_the_requested_size_and_crlf_lines() {
        for size in [4096, 100 * 1024] {
            let m = build(5, size, "a@x.test", "b@y.test");
            assert!(
                m.len() <= size && m.len() + 80 >= size,
                "{} vs {size}",
                m.len()
            );
            assert!(m.ends_with(b"\r\n"));
            // No bare LF anywhere.
            for (i, &b) in m.iter().enumerate() {
                if b == b'\n' {
                    assert_eq!(m[i - 1], b'\r');
                }
            }
            assert!(m
                .windows(3)
                .any(|w| w == b"\n.m" || w == b"\n.s" || w == b"\n.r" || w.starts_with(b"\n.")));
        }
        assert_ne!(build(1, 4096, "a@x", "b@y"), build(2, 4096, "a@x", "b@y"));
        assert_eq!(build(1, 4096, "a@x", "b@y"), build(1, 4096, "a@x", "b@y"));
    }

    #[test]
    fn search_word_in_every_hundredth_message() {
        let n = (0..1000)
            .filter(|&i| {
                build(i, 2000, "a@x", "b@y")
                    .windows(SEARCH_WORD.len())
                    .any(|w| w == SEARCH_WORD.as_bytes())
            })
            .count();
        assert_eq!(n, search_hits(1000));
        assert_eq!(search_hits(10_000), 100);
        assert_eq!(search_hits(101), 2);
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b"a\r\n.b\r\n..\r\n"), b"a\r\n..b\r\n...\r\n.\r\n");
        assert_eq!(dot_stuff(b".\r\n"), b"..\r\n.\r\n");
        assert_eq!(dot_stuff(b"x.y\r\n"), b"x.y\r\n.\r\n");
    }
}
