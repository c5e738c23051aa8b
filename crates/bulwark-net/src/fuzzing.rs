//! Support for the fuzz targets (`fuzz/`) and the seeded property tests that run the
//! same harnesses in the normal test suite. Not part of the server: nothing here is
//! called outside tests and fuzzing.
//!
//! - [`Input`] splits a byte string into what [`Connection::read_line`],
//!   `read_exact_into` and `skip_exact` would hand a protocol, so a sans-I/O session
//!   sees exactly the lines the real connection would produce from the same octets.
//! - [`Rng`] is a tiny deterministic generator (SplitMix64), and [`session_bytes`]
//!   builds a session's worth of client input from a protocol's dictionary of valid
//!   command prefixes, mutated with the things attackers send: NUL octets, bare CR
//!   and LF, overlong lines, huge numbers, truncation, random octets.
//! - [`seed`] and [`cases`] read `BULWARK_FUZZ_SEED` / `BULWARK_FUZZ_CASES`, so a
//!   failing property test can be replayed with the seed it printed.
//!
//! [`Connection::read_line`]: crate::Connection::read_line
//! [`Input`]: crate::fuzzing::Input
//! [`Rng`]: crate::fuzzing::Rng
//! [`session_bytes`]: crate::fuzzing::session_bytes
//! [`seed`]: crate::fuzzing::seed
//! [`cases`]: crate::fuzzing::cases

use crate::connection::{Line, LineEnding};

/// Why [`Input::read_line`] produced no line (the pure twin of `ReadError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoLine {
    /// The line was longer than allowed and was discarded up to its LF; `crlf` tells
    /// whether a CR preceded that LF.
    TooLong { crlf: bool },
    /// The input ended (a partial last line is lost, as when a client disconnects).
    Eof,
}

/// The client's octets, consumed the way a `Connection` consumes them.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    /// Like `Connection::read_line(max)`: a line of at most `max` octets including its
    /// ending; a longer one is discarded through its LF and reported as too long; an
    /// unterminated tail is end of input.
    pub fn read_line(&mut self, max: usize) -> Result<Line, NoLine> {
        let rest = &self.data[self.pos.min(self.data.len())..];
        let Some(lf) = rest.iter().position(|b| *b == b'\n') else {
            self.pos = self.data.len();
            return Err(NoLine::Eof);
        };
        self.pos += lf + 1;
        if lf + 1 > max {
            return Err(NoLine::TooLong {
                crlf: lf > 0 && rest[lf - 1] == b'\r',
            });
        }
        let mut bytes = rest[..lf].to_vec();
        let ending = if bytes.last() == Some(&b'\r') {
            bytes.pop();
            LineEnding::CrLf
        } else {
            LineEnding::Lf
        };
        Ok(Line { bytes, ending })
    }

    /// Like `read_exact_into` / `skip_exact`: exactly `n` octets, or `None` when the
    /// input ends first (the client disconnected mid-literal / mid-chunk).
    pub fn read_exact(&mut self, n: u64) -> Option<&'a [u8]> {
        let rest = &self.data[self.pos.min(self.data.len())..];
        let n = usize::try_from(n).ok().filter(|n| *n <= rest.len())?;
        self.pos += n;
        Some(&rest[..n])
    }
}

/// SplitMix64: deterministic, seedable, good enough to pick mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            // The remainder is below `n`, a usize: it cannot truncate.
            #[allow(clippy::cast_possible_truncation)]
            let r = (self.next_u64() % n as u64) as usize;
            r
        }
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u32, den: u32) -> bool {
        self.below(den as usize) < num as usize
    }

    pub fn pick<'t, T>(&mut self, items: &'t [T]) -> &'t T {
        &items[self.below(items.len())]
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64().to_le_bytes()[0]).collect()
    }
}

/// The seed for a property test: `BULWARK_FUZZ_SEED` (decimal or 0x-hex) or `default`.
/// Printed by the caller so a failure can be replayed.
pub fn seed(default: u64) -> u64 {
    std::env::var("BULWARK_FUZZ_SEED")
        .ok()
        .and_then(|s| {
            let s = s.trim();
            match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => s.parse().ok(),
            }
        })
        .unwrap_or(default)
}

/// How many cases a property test runs: `BULWARK_FUZZ_CASES` or `default`.
pub fn cases(default: usize) -> usize {
    std::env::var("BULWARK_FUZZ_CASES")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

/// Runs `check` on `cases(default_cases)` generated inputs, case `i` from seed
/// `seed + i`; on a panic, says which seed reproduces it.
pub fn run_cases(name: &str, default_seed: u64, default_cases: usize, check: impl Fn(u64)) {
    let base = seed(default_seed);
    let n = cases(default_cases);
    eprintln!(
        "{name}: {n} cases from seed {base:#x} (BULWARK_FUZZ_SEED / BULWARK_FUZZ_CASES to change)"
    );
    for i in 0..n as u64 {
        let s = base.wrapping_add(i);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(s)));
        if let Err(e) = r {
            eprintln!(
                "{name}: case failed; reproduce with BULWARK_FUZZ_SEED={s:#x} BULWARK_FUZZ_CASES=1"
            );
            std::panic::resume_unwind(e);
        }
    }
}

/// Octets that break parsers: line-ending confusion, NUL, 8-bit, IMAP/SMTP syntax.
const NASTY: &[&[u8]] = &[
    b"\0",
    b"\r",
    b"\n",
    b"\r\n",
    b"\n.\n",
    b"\r.\r",
    b"\r\n.\r\n",
    b".",
    b"..",
    b" ",
    b"\t",
    b"<",
    b">",
    b"<>",
    b"@",
    b":",
    b"\"",
    b"\\",
    b"(",
    b")",
    b"{",
    b"}",
    b"[",
    b"]",
    b"*",
    b"%",
    b"=",
    b"+",
    b"-",
    b"{4294967295}",
    b"{18446744073709551615+}",
    b"{99999999999999999999}",
    b"{0}",
    b"{5}",
    b"4294967295",
    b"18446744073709551616",
    b"-1",
    b"0",
    b"1:*",
    b"*:1",
    b"\xc3\xa9",
    b"\xff\xfe",
    b"\xf0\x9f\x92\xa9",
    b"=?utf-8?B?w6k=?=",
    b"&AOk-",
    b"&-",
    b"&",
];

/// One mutated line built from `line`.
pub fn mutate(rng: &mut Rng, line: &[u8]) -> Vec<u8> {
    let mut v = line.to_vec();
    for _ in 0..=rng.below(3) {
        let at = rng.below(v.len() + 1);
        match rng.below(10) {
            // Insert something nasty.
            0..=3 => {
                let n = rng.pick(NASTY);
                v.splice(at..at, n.iter().copied());
            }
            // Truncate.
            4 => v.truncate(at),
            // Random octets.
            5 => {
                let n = rng.below(16);
                let b = rng.bytes(n);
                v.splice(at..at, b);
            }
            // Overwrite one octet.
            6 => {
                if at < v.len() {
                    v[at] = rng.next_u64().to_le_bytes()[0];
                }
            }
            // Repeat a piece (long lines, many arguments).
            7 => {
                let end = (at + 1 + rng.below(8)).min(v.len());
                let piece = v[at.min(end)..end].to_vec();
                let times = if rng.chance(1, 8) {
                    500 + rng.below(2000)
                } else {
                    1 + rng.below(8)
                };
                for _ in 0..times {
                    v.splice(at..at, piece.iter().copied());
                }
            }
            // Flip case (keywords are case-insensitive).
            8 => v.iter_mut().for_each(|b| {
                if b.is_ascii_alphabetic() && rng.chance(1, 2) {
                    *b ^= 0x20;
                }
            }),
            // Drop a piece.
            _ => {
                let end = (at + rng.below(6)).min(v.len());
                v.drain(at..end);
            }
        }
    }
    v
}

/// A session's worth of client input: up to `max_lines` lines, each a dictionary entry
/// (often valid, so the session gets deep into its states), sometimes mutated, with
/// CRLF, bare LF or no ending, and now and then an overlong line or raw octets.
pub fn session_bytes(rng: &mut Rng, dict: &[&[u8]], max_lines: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let lines = 1 + rng.below(max_lines.max(1));
    for _ in 0..lines {
        let base: &[u8] = match dict.len() {
            0 => b"",
            n => dict[rng.below(n)],
        };
        match rng.below(20) {
            0 => {
                let n = rng.below(64);
                out.extend(rng.bytes(n));
            }
            1 => out.extend(std::iter::repeat_n(b'A', 900 + rng.below(70_000))),
            2..=7 => out.extend(mutate(rng, base)),
            _ => out.extend_from_slice(base),
        }
        match rng.below(16) {
            0 => out.push(b'\n'),
            1 => {}
            2 => out.push(b'\r'),
            _ => out.extend_from_slice(b"\r\n"),
        }
    }
    out
}

/// The PROXY protocol header parser (v1 text, v2 binary; `ppp` under our framing),
/// which reads octets from a configured load balancer before TLS.
pub fn proxy_header(data: &[u8]) {
    use crate::proxy::{parse, Parsed};
    if let Parsed::Done(_, len) = parse(data) {
        assert!(
            len > 0 && len <= data.len(),
            "header length {len} of {}",
            data.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_proxy_header() {
        let dict: &[&[u8]] = &[
            b"PROXY TCP4 192.0.2.1 192.0.2.2 1234 25",
            b"PROXY TCP6 2001:db8::1 2001:db8::2 1234 25",
            b"PROXY UNKNOWN",
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x01\xc0\x00\x02\x02\x04\xd2\x00\x19",
        ];
        run_cases("proxy header", 0x9e0c_0001, 3000, |seed| {
            let mut rng = Rng::new(seed);
            proxy_header(&session_bytes(&mut rng, dict, 3));
        });
    }

    #[test]
    fn input_splits_like_read_line() {
        let mut i = Input::new(b"a\r\nb\nlong line\r\nc\r\ntail");
        assert_eq!(i.read_line(10).unwrap().bytes, b"a");
        let l = i.read_line(10).unwrap();
        assert_eq!((l.bytes.as_slice(), l.ending), (&b"b"[..], LineEnding::Lf));
        assert_eq!(i.read_line(10), Err(NoLine::TooLong { crlf: true }));
        assert_eq!(i.read_exact(3), Some(&b"c\r\n"[..]));
        assert_eq!(i.read_exact(5), None);
        assert_eq!(i.read_line(10), Err(NoLine::Eof));
        assert!(i.is_empty());
    }

    #[test]
    fn generator_is_deterministic() {
        let a = session_bytes(&mut Rng::new(7), &[b"EHLO x", b"NOOP"], 20);
        let b = session_bytes(&mut Rng::new(7), &[b"EHLO x", b"NOOP"], 20);
        assert_eq!(a, b);
        assert!(!a.is_empty());
    }
}
