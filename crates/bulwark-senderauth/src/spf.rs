//! SPF `check_host()` (RFC 7208 §4) for the MAIL FROM and HELO identities, and the
//! same function for Sender ID's PRA identity (RFC 4406 §3–4), which differs only in
//! how the record is selected (`spf2.0/pra` first, `v=spf1` as fallback).
//!
//! Why our own evaluation loop rather than `mail_auth::MessageAuthenticator::check_host`:
//! mail-auth 0.12 parses records well and we reuse its parser (`Spf::parse`) and its
//! macro expander (`Macro::eval`, RFC 7208 §7) as they are. But its evaluator
//! (a) does not implement the void-lookup limit (RFC 7208 §4.6.4), (b) picks the first
//! `v=spf1` record when a domain publishes several instead of returning permerror
//! (§4.5), (c) can only look up `v=spf1` records, so it cannot evaluate an
//! `spf2.0/pra` record, nor follow `include:`/`redirect=` in the PRA scope (RFC 4406
//! §3.4), and (d) does not say which mechanism matched, which the Received-SPF header
//! (§9.1 `mechanism=`) and `bulwark spf check` report. Feeding records through its
//! resolver-cache hook cannot fix (a)–(c) because that hook is synchronous. So the
//! ~200 lines of the §4.6/§5 loop live here, over mail-auth's parsed `Spf` terms,
//! with DNS through the one shared hickory resolver. The RFC 7208 test suite
//! (tests/fixtures/rfc7208-tests.yml) is the proof.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::spf::{Directive, Macro, Mechanism, Qualifier, Spf, Variables};

use crate::dns::{LookupError, SpfDns};

/// The seven results of RFC 7208 §2.6 (Sender ID uses the same set, RFC 4406 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpfResult {
    /// The client is authorized to use the identity.
    Pass,
    /// The client is explicitly not authorized (`-`).
    Fail,
    /// Probably not authorized; weaker than fail (`~`).
    SoftFail,
    /// The domain owner makes no assertion (`?`, or nothing matched).
    Neutral,
    /// No SPF record, or no valid domain to check.
    None,
    /// The record is broken: the domain owner must fix it.
    PermError,
    /// A transient DNS error: the check may succeed later.
    TempError,
}

impl SpfResult {
    /// The lower-case word of RFC 7208 §2.6 / RFC 8601 §2.7.2.
    pub fn as_str(self) -> &'static str {
        match self {
            SpfResult::Pass => "pass",
            SpfResult::Fail => "fail",
            SpfResult::SoftFail => "softfail",
            SpfResult::Neutral => "neutral",
            SpfResult::None => "none",
            SpfResult::PermError => "permerror",
            SpfResult::TempError => "temperror",
        }
    }

    /// The result named by the word `s` (any case), as `as_str` writes it; None for
    /// any other word.
    pub fn parse(s: &str) -> Option<SpfResult> {
        Some(match s.to_ascii_lowercase().as_str() {
            "pass" => SpfResult::Pass,
            "fail" => SpfResult::Fail,
            "softfail" => SpfResult::SoftFail,
            "neutral" => SpfResult::Neutral,
            "none" => SpfResult::None,
            "permerror" => SpfResult::PermError,
            "temperror" => SpfResult::TempError,
            _ => return None,
        })
    }
}

impl std::fmt::Display for SpfResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which identity is checked; decides record selection and the Received-SPF
/// `identity=` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// RFC 7208 §2.4: the reverse-path of MAIL FROM.
    MailFrom,
    /// RFC 7208 §2.3: the HELO/EHLO name (also used when MAIL FROM is null).
    Helo,
    /// RFC 4406/4407: the Purported Responsible Address from the headers.
    Pra,
}

impl Scope {
    /// The Received-SPF `identity=` value (RFC 7208 §9.1).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::MailFrom => "mailfrom",
            Scope::Helo => "helo",
            Scope::Pra => "pra",
        }
    }
}

/// The outcome of one `check_host()` with everything needed to explain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The SPF result.
    pub result: SpfResult,
    /// The identity that was checked.
    pub scope: Scope,
    /// The domain whose policy was evaluated.
    pub domain: String,
    /// The client's IP address.
    pub ip: IpAddr,
    /// The sender as used for macros (`postmaster@` filled in when needed).
    pub sender: String,
    /// The HELO name given (for `%{h}` and Received-SPF).
    pub helo: String,
    /// The term that decided, as written (with macros expanded), e.g. `ip4:192.0.2.0/24`.
    pub mechanism: Option<String>,
    /// Why, in one line: `192.0.2.4 matched ip4:192.0.2.0/24 of pass.test`.
    pub reason: String,
    /// The domain owner's `exp=` text (RFC 7208 §6.2), only for fail.
    pub explanation: Option<String>,
    /// Every DNS question asked and what came back, in order.
    pub lookups: Vec<String>,
}

impl Evaluation {
    /// `pass (192.0.2.4 matched ip4:192.0.2.0/24 of pass.test)`: the result word first.
    pub fn summary(&self) -> String {
        format!("{} ({})", self.result, self.reason)
    }
}

/// RFC 7208 §4.6.4: at most 10 DNS-querying terms.
const MAX_LOOKUPS: u32 = 10;
/// RFC 7208 §4.6.4: more than 2 void lookups is a permerror.
const MAX_VOID: u32 = 2;
/// RFC 7208 §4.6.4: at most 10 MX / PTR names considered per term.
const MAX_NAMES: usize = 10;
/// RFC 7208 §4.6.4 asks for at least 20 seconds before giving up on the whole check.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// What `check_host` was asked (RFC 7208 §4.1 arguments).
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    /// The client's IP address (`%{i}`).
    pub ip: IpAddr,
    /// The domain to check (MAIL FROM domain, HELO name, or PRA domain).
    pub domain: &'a str,
    /// The full address (`local@domain`); empty or domain-only for HELO.
    pub sender: &'a str,
    /// The HELO/EHLO name (`%{h}`).
    pub helo: &'a str,
    /// Our host name, for the `%{r}` macro.
    pub receiver: &'a str,
    /// Which identity is checked: decides record selection.
    pub scope: Scope,
}

/// Runs `check_host()` with the RFC's limits and overall time budget.
pub async fn check_host(dns: &SpfDns, q: Query<'_>) -> Evaluation {
    // An IPv4-mapped IPv6 client is an IPv4 client for ip4/a (RFC 7208 §5 treats the
    // address family of the connection; mapped addresses come from dual-stack sockets).
    let ip = match q.ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(q.ip),
        v4 => v4,
    };
    let domain = q.domain.trim_end_matches('.').to_ascii_lowercase();
    // RFC 7208 §4.3: a sender without a local part gets "postmaster".
    let sender = match q.sender.rsplit_once('@') {
        Some(("", d)) => format!("postmaster@{d}"),
        Some(_) => q.sender.to_string(),
        None => format!("postmaster@{domain}"),
    };
    let mut ctx = Ctx {
        dns,
        ip,
        scope: q.scope,
        vars: base_vars(ip, &sender, q.helo, q.receiver),
        lookups: 0,
        voids: 0,
        trace: Vec::new(),
        validated: None,
    };
    let out = tokio::time::timeout(CHECK_TIMEOUT, ctx.check(domain.clone())).await;
    let (result, mechanism, reason, explanation) = match out {
        Ok(Ok(step)) => (step.result, step.mechanism, step.reason, step.explanation),
        Ok(Err(abort)) => (abort.result, None, abort.reason, None),
        Err(_) => (
            SpfResult::TempError,
            None,
            format!(
                "the check took longer than {} seconds",
                CHECK_TIMEOUT.as_secs()
            ),
            None,
        ),
    };
    Evaluation {
        result,
        scope: q.scope,
        domain,
        ip,
        sender,
        helo: q.helo.to_string(),
        mechanism,
        reason,
        explanation,
        lookups: ctx.trace,
    }
}

fn base_vars(ip: IpAddr, sender: &str, helo: &str, receiver: &str) -> Variables<'static> {
    let mut v = Variables::new();
    v.set_ip(&ip);
    v.set_sender(sender.as_bytes().to_vec());
    v.set_helo_domain(helo.as_bytes().to_vec());
    v.set_host_domain(receiver.as_bytes().to_vec());
    // RFC 7208 §7.3: %{p} is "unknown" until (and unless) validated.
    v.set_validated_domain(b"unknown".to_vec());
    v
}

/// RFC 7208 §4.3: the domain must be a syntactically valid, multi-label FQDN, else
/// the result is "none" without any DNS query.
pub fn is_valid_spf_domain(d: &str) -> bool {
    let d = d.trim_end_matches('.');
    if d.is_empty() || d.len() > 253 || !d.contains('.') {
        return false;
    }
    d.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

struct Step {
    result: SpfResult,
    mechanism: Option<String>,
    reason: String,
    explanation: Option<String>,
}

struct Abort {
    result: SpfResult,
    reason: String,
}

fn perm(reason: impl Into<String>) -> Abort {
    Abort {
        result: SpfResult::PermError,
        reason: reason.into(),
    }
}

fn temp(what: &str, e: &str) -> Abort {
    Abort {
        result: SpfResult::TempError,
        reason: format!("DNS error looking up {what}: {e}"),
    }
}

struct Ctx<'d> {
    dns: &'d SpfDns,
    ip: IpAddr,
    scope: Scope,
    vars: Variables<'static>,
    lookups: u32,
    voids: u32,
    trace: Vec<String>,
    /// %{p}: computed once, when first needed.
    validated: Option<Option<String>>,
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

fn qualifier_result(q: &Qualifier) -> SpfResult {
    match q {
        Qualifier::Pass => SpfResult::Pass,
        Qualifier::Fail => SpfResult::Fail,
        Qualifier::SoftFail => SpfResult::SoftFail,
        Qualifier::Neutral => SpfResult::Neutral,
    }
}

fn qualifier_prefix(q: &Qualifier) -> &'static str {
    match q {
        Qualifier::Pass => "",
        Qualifier::Fail => "-",
        Qualifier::SoftFail => "~",
        Qualifier::Neutral => "?",
    }
}

fn cidr4(mask: u32) -> String {
    if mask == u32::MAX {
        String::new()
    } else {
        format!("/{}", mask.count_ones())
    }
}

fn cidr6(mask: u128) -> String {
    if mask == u128::MAX {
        String::new()
    } else {
        format!("//{}", mask.count_ones())
    }
}

fn in_net(ip: IpAddr, addr: IpAddr, m4: u32, m6: u128) -> bool {
    match (ip, addr) {
        (IpAddr::V4(a), IpAddr::V4(b)) => u32::from(a) & m4 == u32::from(b) & m4,
        (IpAddr::V6(a), IpAddr::V6(b)) => u128::from(a) & m6 == u128::from(b) & m6,
        _ => false,
    }
}

/// RFC 7208 §4.8: an expanded name longer than 253 octets loses labels on the left.
fn truncate_domain(mut s: String) -> String {
    while s.len() > 253 {
        match s.find('.') {
            Some(i) => {
                s.drain(..=i);
            }
            None => break,
        }
    }
    s
}

/// Selects the record for a scope from a domain's TXT records.
/// RFC 7208 §4.5 for `v=spf1`; RFC 4406 §3.4 for `spf2.0/<scopes>` (PRA scope only).
/// Returns the record text in `v=spf1` syntax (an `spf2.0/pra` record has the same
/// term syntax, RFC 4406 §3.3), plus its original version tag for the trace.
pub fn select_record(
    records: &[Vec<u8>],
    scope: Scope,
) -> Result<Option<(String, &'static str)>, String> {
    if scope == Scope::Pra {
        let v2: Vec<&Vec<u8>> = records
            .iter()
            .filter(|r| {
                let s = String::from_utf8_lossy(r).to_ascii_lowercase();
                s.strip_prefix("spf2.0/").is_some_and(|rest| {
                    rest.split(' ')
                        .next()
                        .unwrap_or("")
                        .split(',')
                        .any(|sc| sc == "pra")
                })
            })
            .collect();
        match v2.len() {
            0 => {}
            1 => {
                let text = String::from_utf8_lossy(v2[0]).into_owned();
                if !text.is_ascii() || text.bytes().any(|b| b.is_ascii_control()) {
                    return Err(
                        "the spf2.0/pra record contains non-ASCII or control characters".into(),
                    );
                }
                let rest = text.split_once(' ').map_or("", |(_, r)| r);
                return Ok(Some((format!("v=spf1 {rest}"), "spf2.0/pra")));
            }
            n => return Err(format!("{n} spf2.0/pra records (RFC 4406 §3.4 allows one)")),
        }
    }
    let v1: Vec<&Vec<u8>> = records
        .iter()
        .filter(|r| {
            r.len() >= 6 && r[..6].eq_ignore_ascii_case(b"v=spf1") && (r.len() == 6 || r[6] == b' ')
        })
        .collect();
    match v1.len() {
        0 => Ok(None),
        1 => {
            if !v1[0].is_ascii() {
                return Err("the SPF record contains non-ASCII characters (RFC 7208 §3.1)".into());
            }
            if v1[0].iter().any(|b| b.is_ascii_control()) {
                return Err("the SPF record contains control characters (RFC 7208 §4.6.1)".into());
            }
            Ok(Some((
                String::from_utf8_lossy(v1[0]).into_owned(),
                "v=spf1",
            )))
        }
        n => Err(format!("{n} SPF records (RFC 7208 §4.5 allows one)")),
    }
}

/// Parses a selected record (in `v=spf1` syntax) into mail-auth's `Spf`.
///
/// Before handing the text to `Spf::parse` we check what that parser is lenient or
/// unsafe about, by looking at each term's name and CIDR suffix only (hand-written,
/// because `Spf` does not expose term names): unknown mechanisms and malformed
/// modifier names are a permerror (RFC 7208 §4.6.1, §12); CIDR lengths must be
/// 0–32 / 0–128 (§5.6). A zero length ("/0") is valid but mail-auth computes the mask
/// as `MAX << (32 - len)`, which overflows, so we parse it as /1 and set the mask to
/// 0 afterwards. The parse itself runs under `catch_unwind`: a record from the
/// Internet must never take the server down.
pub fn parse_record(record: &str) -> Result<Spf, String> {
    let prepared = prepare_record(record)?;
    let parsed = std::panic::catch_unwind(|| Spf::parse(prepared.text.as_bytes()))
        .map_err(|_| "the SPF record could not be parsed".to_string())?
        .map_err(|e| format!("syntax error: {e}"))?;
    let mut spf = parsed;
    let mut directives = spf.directives.into_vec();
    restore_zero_masks(&mut directives, &prepared.zero_masks);
    restore_own_specs(&mut directives, prepared.own_specs);
    spf.directives = directives.into_boxed_slice();
    Ok(spf)
}

/// A record checked term by term and rewritten for mail-auth's parser, with what to
/// put back into its result (see `parse_record`).
struct PreparedRecord {
    /// The record without unknown modifiers, with placeholder domain-specs and each
    /// "/0" read as "/1".
    text: String,
    /// By mechanism index: whether its IPv4 and its IPv6 CIDR length was 0.
    zero_masks: Vec<(usize, bool, bool)>,
    /// By mechanism index: the domain-spec mail-auth's parser refuses (see
    /// `PLACEHOLDER_SPEC`), as our own macro.
    own_specs: Vec<(usize, Macro)>,
}

/// Checks each term of `record` and rewrites the record for `Spf::parse`.
fn prepare_record(record: &str) -> Result<PreparedRecord, String> {
    let mut prepared = PreparedRecord {
        text: String::with_capacity(record.len()),
        zero_masks: Vec::new(),
        own_specs: Vec::new(),
    };
    let mut mech_index = 0;
    for (i, term) in record.split(' ').enumerate() {
        if i == 0 {
            prepared.text.push_str(term);
            continue;
        }
        if term.is_empty() {
            continue;
        }
        let t = term.strip_prefix(['+', '-', '~', '?']).unwrap_or(term);
        let name_end = t.find([':', '/', '=']).unwrap_or(t.len());
        let name = t[..name_end].to_ascii_lowercase();
        let out = if t[name_end..].starts_with('=') {
            if !keep_modifier(term, t, &name, name_end)? {
                continue;
            }
            term.to_string()
        } else {
            let out = prepare_mechanism(term, t, &name, name_end, mech_index, &mut prepared)?;
            mech_index += 1;
            out
        };
        prepared.text.push(' ');
        prepared.text.push_str(&out);
    }
    Ok(prepared)
}

/// Checks the modifier `term` (`t` without a qualifier, `name` lower-cased, ending at
/// `name_end`): true to keep it (`redirect=`, `exp=`), false to drop it (an unknown
/// modifier), an error when it is malformed.
fn keep_modifier(term: &str, t: &str, name: &str, name_end: usize) -> Result<bool, String> {
    // modifier name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ), no qualifier
    let ok = t.len() == term.len()
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !ok {
        return Err(format!("invalid modifier `{term}`"));
    }
    let value = &t[name_end + 1..];
    if name == "redirect" || name == "exp" {
        if !valid_domain_spec(value) {
            return Err(format!("invalid domain in `{term}` (RFC 7208 §7.1)"));
        }
        Ok(true)
    } else if !value.is_empty() && Macro::parse(value.as_bytes()).is_err() {
        // RFC 7208 §6 / Appendix A: unknown-modifier = name "=" macro-string
        Err(format!("invalid macro in `{term}` (RFC 7208 §7.1)"))
    } else {
        // RFC 7208 §6: unknown modifiers MUST be ignored. We drop them before
        // parsing (mail-auth rejects some valid values, e.g. "x=man:dog/cat";
        // it would also act on RFC 6652 ra/rp/rr, which we do not use).
        Ok(false)
    }
}

/// Checks the mechanism `term` (the `mech_index`th; `t`, `name`, `name_end` as in
/// `keep_modifier`) and returns it as mail-auth's parser is to read it, noting in
/// `prepared` what to put back afterwards.
fn prepare_mechanism(
    term: &str,
    t: &str,
    name: &str,
    name_end: usize,
    mech_index: usize,
    prepared: &mut PreparedRecord,
) -> Result<String, String> {
    const MECHS: [&str; 8] = ["all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"];
    if !MECHS.contains(&name) {
        return Err(format!("unknown mechanism `{term}`"));
    }
    let mut out = term.to_string();
    let rest = &t[name_end..];
    let cidr_at = cidr_suffix_start(rest, name);
    if let Some(spec) = rest.strip_prefix(':') {
        let spec = &spec[..cidr_at.map_or(spec.len(), |c| c - 1)];
        let takes_domain = ["a", "mx", "ptr", "include", "exists"].contains(&name);
        if takes_domain && !valid_domain_spec(spec) {
            return Err(format!("invalid domain in `{term}` (RFC 7208 §7.1)"));
        }
        if takes_domain && spec.contains([':', '/']) {
            prepared
                .own_specs
                .push((mech_index, domain_spec_macro(spec, term)?));
            let at = term.len() - rest.len() + 1;
            out = format!(
                "{}{PLACEHOLDER_SPEC}{}",
                &term[..at],
                &term[at + spec.len()..]
            );
        }
    } else if ["include", "exists"].contains(&name) {
        return Err(format!("`{term}` needs a domain (RFC 7208 §5.2, §5.7)"));
    }
    if let Some(slash) = cidr_at.map(|c| name_end + c) {
        let cidr = &t[slash + 1..];
        let (v4, v6) = split_cidr(cidr, name, term)?;
        let z4 = match v4 {
            Some(s) => cidr_length(s, 32, term)? == 0,
            None => false,
        };
        let z6 = match v6 {
            Some(s) => cidr_length(s, 128, term)? == 0,
            None => false,
        };
        if z4 || z6 {
            prepared.zero_masks.push((mech_index, z4, z6));
            let head = &term[..term.len() - cidr.len()];
            fn fix(s: &str) -> &str {
                if s == "0" {
                    "1"
                } else {
                    s
                }
            }
            out = match (v4, v6) {
                (Some(a), Some(b)) => format!("{head}{}//{}", fix(a), fix(b)),
                (Some(a), None) => format!("{head}{}", fix(a)),
                (None, Some(b)) if name == "ip6" => format!("{head}{}", fix(b)),
                (None, Some(b)) => format!("{head}/{}", fix(b)),
                (None, None) => out,
            };
        }
    }
    Ok(out)
}

/// The IPv4 and IPv6 CIDR lengths of the suffix `cidr` (after its first '/') of the
/// mechanism `name` in `term` (RFC 7208 §5.6: `a` and `mx` take "/4", "//6" or "/4//6").
fn split_cidr<'a>(
    cidr: &'a str,
    name: &str,
    term: &str,
) -> Result<(Option<&'a str>, Option<&'a str>), String> {
    Ok(match name {
        "ip4" => (Some(cidr), None),
        "ip6" => (None, Some(cidr)),
        "a" | "mx" => match cidr.split_once("//") {
            Some((a, b)) if cidr.starts_with('/') => {
                // "a//64": the split found the leading "//"
                let _ = a;
                (None, Some(b))
            }
            Some((a, b)) => (Some(a), Some(b)),
            None if cidr.starts_with('/') => (None, Some(&cidr[1..])),
            None => (Some(cidr), None),
        },
        _ => return Err(format!("a CIDR length is not allowed in `{term}`")),
    })
}

/// A CIDR length of `term` (RFC 7208 §5.6): decimal digits without a leading zero, at
/// most `max`.
fn cidr_length(s: &str, max: u32, term: &str) -> Result<u32, String> {
    let ok = !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_digit())
        && !(s.len() > 1 && s.starts_with('0'));
    let n = if ok { s.parse::<u32>().ok() } else { None };
    match n {
        Some(n) if n <= max => Ok(n),
        _ => Err(format!("invalid CIDR length in `{term}` (RFC 7208 §5.6)")),
    }
}

/// Sets to 0 the masks `prepare_record` parsed as /1 (see `parse_record`).
fn restore_zero_masks(directives: &mut [Directive], zero_masks: &[(usize, bool, bool)]) {
    for &(i, z4, z6) in zero_masks {
        if let Some(d) = directives.get_mut(i) {
            match &mut d.mechanism {
                Mechanism::Ip4 { mask, .. } if z4 => *mask = 0,
                Mechanism::Ip6 { mask, .. } if z6 => *mask = 0,
                Mechanism::A {
                    ip4_mask, ip6_mask, ..
                }
                | Mechanism::Mx {
                    ip4_mask, ip6_mask, ..
                } => {
                    if z4 {
                        *ip4_mask = 0;
                    }
                    if z6 {
                        *ip6_mask = 0;
                    }
                }
                _ => {}
            }
        }
    }
}

/// Puts our own macros in place of the placeholder domain-specs.
fn restore_own_specs(directives: &mut [Directive], own_specs: Vec<(usize, Macro)>) {
    for (i, m) in own_specs {
        if let Some(d) = directives.get_mut(i) {
            match &mut d.mechanism {
                Mechanism::A { macro_string, .. }
                | Mechanism::Mx { macro_string, .. }
                | Mechanism::Ptr { macro_string }
                | Mechanism::Include { macro_string }
                | Mechanism::Exists { macro_string } => *macro_string = m,
                _ => {}
            }
        }
    }
}

/// What mail-auth parses in place of a domain-spec containing ':' or '/'. RFC 7208
/// §7.1's macro-literal allows both (%x21-24 / %x26-7E), and the suite's
/// `a:foo:bar/baz.example.com` is valid, but mail-auth ends a domain-spec at ':' or
/// '/' and refuses the record. The term's name and CIDR suffix are still checked by
/// that parser; the domain-spec itself is parsed by `domain_spec_macro`.
const PLACEHOLDER_SPEC: &str = "spec.invalid";

/// A domain-spec (RFC 7208 §7.1) as a macro. mail-auth's macro-string parser in
/// explanation mode reads ':' and '/' as literal text; the explanation-only macro
/// letters (c, r, t: §7.3) are refused here, as in any domain-spec.
fn domain_spec_macro(spec: &str, term: &str) -> Result<Macro, String> {
    let bad = || format!("invalid domain in `{term}` (RFC 7208 §7.1)");
    let lower = spec.to_ascii_lowercase();
    if ["%{c", "%{r", "%{t"].iter().any(|x| lower.contains(x)) {
        return Err(bad());
    }
    Macro::parse(spec.as_bytes()).map_err(|_| bad())
}

/// Where a term's CIDR suffix starts (index of its first '/' within `rest`, the term
/// after its name), if it has one. ip4/ip6 addresses contain no '/', so the first '/'
/// starts it; a domain-spec may itself contain '/' (RFC 7208 §7.1 macro-literal), so
/// for a/mx only a trailing `/N`, `//M` or `/N//M` counts.
fn cidr_suffix_start(rest: &str, name: &str) -> Option<usize> {
    match name {
        "ip4" | "ip6" => rest.find('/'),
        "a" | "mx" if rest.starts_with('/') => Some(0),
        "a" | "mx" => {
            let digits_end =
                |s: &str| s.len() - s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
            let mut end = rest.len();
            let mut start = None;
            // optional trailing "//M"
            let d = digits_end(&rest[..end]);
            if d > 0 && rest[..end - d].ends_with("//") {
                end -= d + 2;
                start = Some(end);
            }
            // optional "/N" before it
            let d = digits_end(&rest[..end]);
            if d > 0 && rest[..end - d].ends_with('/') && !rest[..end - d].ends_with("//") {
                end -= d + 1;
                start = Some(end);
            }
            start
        }
        _ => rest.find('/'),
    }
}

/// RFC 7208 §7.1: `domain-spec = macro-string domain-end`, where `domain-end` is
/// `"." toplabel ["."]` or a macro-expand. A literal that ends in a numeric or
/// missing top label ("a:museum", "a:abc.123", "example.com:8080") is a permerror.
fn valid_domain_spec(spec: &str) -> bool {
    if spec.is_empty() {
        return false;
    }
    if spec.ends_with('}') && spec.contains("%{")
        || spec.ends_with("%%")
        || spec.ends_with("%_")
        || spec.ends_with("%-")
    {
        return true;
    }
    let s = spec.strip_suffix('.').unwrap_or(spec);
    let Some((_, top)) = s.rsplit_once('.') else {
        return false;
    };
    let alnum = |c: char| c.is_ascii_alphanumeric();
    !top.is_empty()
        && top.chars().all(|c| alnum(c) || c == '-')
        && !top.starts_with('-')
        && !top.ends_with('-')
        && (top.chars().any(|c| c.is_ascii_alphabetic()) || top.contains('-'))
}

impl Ctx<'_> {
    fn count_lookup(&mut self, term: &str) -> Result<(), Abort> {
        self.lookups += 1;
        if self.lookups > MAX_LOOKUPS {
            return Err(perm(format!(
                "more than {MAX_LOOKUPS} DNS-querying terms (at {term}; RFC 7208 §4.6.4)"
            )));
        }
        Ok(())
    }

    fn count_void(&mut self, what: &str) -> Result<(), Abort> {
        self.voids += 1;
        if self.voids > MAX_VOID {
            return Err(perm(format!(
                "more than {MAX_VOID} void DNS lookups (at {what}; RFC 7208 §4.6.4)"
            )));
        }
        Ok(())
    }

    fn expand(&mut self, m: &Macro, domain: &str) -> String {
        if matches!(m, Macro::None) {
            return domain.to_string();
        }
        self.vars.set_domain(domain.as_bytes().to_vec());
        let s = m.eval(&self.vars, domain, false).into_owned();
        truncate_domain(s.trim_end_matches('.').to_ascii_lowercase())
    }

    /// %{p} (RFC 7208 §7.3): the first PTR name that resolves back to the client.
    async fn ensure_validated(&mut self) {
        if self.validated.is_some() {
            return;
        }
        let names = self.validated_names().await;
        let v = names.into_iter().next();
        if let Some(n) = &v {
            self.vars.set_validated_domain(n.as_bytes().to_vec());
        }
        self.validated = Some(v);
    }

    /// RFC 7208 §5.5: PTR names (at most 10) whose A/AAAA include the client IP.
    async fn validated_names(&mut self) -> Vec<String> {
        let names = match self.dns.ptr(self.ip).await {
            Ok(n) => n,
            Err(e) => {
                self.trace
                    .push(format!("PTR {}: {}", self.ip, describe_err(&e)));
                return Vec::new();
            }
        };
        self.trace
            .push(format!("PTR {}: {}", self.ip, names.join(", ")));
        let mut out = Vec::new();
        for n in names.into_iter().take(MAX_NAMES) {
            if let Ok(addrs) = self.dns.addrs_like(&n, self.ip).await {
                if addrs.contains(&self.ip) {
                    out.push(n);
                }
            }
        }
        out
    }

    fn check(&mut self, domain: String) -> BoxFut<'_, Result<Step, Abort>> {
        Box::pin(async move { self.check_inner(domain).await })
    }

    async fn check_inner(&mut self, domain: String) -> Result<Step, Abort> {
        if !is_valid_spf_domain(&domain) {
            return Ok(Step {
                result: SpfResult::None,
                mechanism: None,
                reason: format!("{domain:?} is not a valid domain name (RFC 7208 §4.3)"),
                explanation: None,
            });
        }
        let txts = match self.dns.txt(&domain).await {
            Ok(t) => t,
            Err(LookupError::Void) => {
                self.trace
                    .push(format!("TXT {domain}: no records (NXDOMAIN/NODATA)"));
                return Ok(none_step(&domain, self.scope));
            }
            Err(LookupError::Temporary(e)) => {
                self.trace.push(format!("TXT {domain}: error {e}"));
                return Err(temp(&format!("TXT {domain}"), &e));
            }
        };
        let (text, kind) = match select_record(&txts, self.scope) {
            Ok(Some(r)) => r,
            Ok(None) => {
                self.trace.push(format!(
                    "TXT {domain}: {} record(s), none is SPF",
                    txts.len()
                ));
                return Ok(none_step(&domain, self.scope));
            }
            Err(e) => {
                self.trace.push(format!("TXT {domain}: {e}"));
                return Err(perm(format!("{e} at {domain}")));
            }
        };
        self.trace
            .push(format!("TXT {domain}: \"{text}\" ({kind})"));
        let spf =
            parse_record(&text).map_err(|e| perm(format!("{e} in the SPF record of {domain}")))?;
        self.evaluate(&spf, &domain).await
    }

    /// RFC 7208 §4.6: the directives of `domain`'s record in order; the first that
    /// matches decides, else `redirect=` (§6.1), else neutral (§4.7).
    async fn evaluate(&mut self, spf: &Spf, domain: &str) -> Result<Step, Abort> {
        let mut has_all = false;
        for d in spf.directives.iter() {
            if d.mechanism.needs_ptr() {
                self.ensure_validated().await;
            }
            has_all |= matches!(d.mechanism, Mechanism::All);
            let q = qualifier_prefix(&d.qualifier);
            let (matched, term) = self.directive_match(&d.mechanism, q, domain).await?;
            if matched {
                return Ok(self.matched_step(spf, domain, &d.qualifier, term).await);
            }
        }
        self.after_no_match(spf, domain, has_all).await
    }

    /// Whether `mechanism` (qualifier prefix `q`) of `domain`'s record matches the
    /// client, and the term as written with its macros expanded.
    async fn directive_match(
        &mut self,
        mechanism: &Mechanism,
        q: &str,
        domain: &str,
    ) -> Result<(bool, String), Abort> {
        let ip = self.ip;
        Ok(match mechanism {
            Mechanism::All => (true, format!("{q}all")),
            Mechanism::Ip4 { addr, mask } => (
                in_net(ip, IpAddr::V4(*addr), *mask, 0),
                format!("{q}ip4:{addr}{}", cidr4(*mask)),
            ),
            Mechanism::Ip6 { addr, mask } => (
                in_net(ip, IpAddr::V6(*addr), 0, *mask),
                format!("{q}ip6:{addr}{}", cidr6(*mask).replacen("//", "/", 1)),
            ),
            Mechanism::A {
                macro_string,
                ip4_mask,
                ip6_mask,
            } => {
                let (target, term) =
                    self.counted_host_term(q, "a", macro_string, *ip4_mask, *ip6_mask, domain)?;
                let m = self.addr_match(&target, *ip4_mask, *ip6_mask, true).await?;
                (m, term)
            }
            Mechanism::Mx {
                macro_string,
                ip4_mask,
                ip6_mask,
            } => {
                let (target, term) =
                    self.counted_host_term(q, "mx", macro_string, *ip4_mask, *ip6_mask, domain)?;
                let m = self.mx_match(&target, *ip4_mask, *ip6_mask, &term).await?;
                (m, term)
            }
            Mechanism::Ptr { macro_string } => {
                let target = self.expand(macro_string, domain);
                let term = format!("{q}ptr{}", name_suffix(macro_string, &target));
                self.count_lookup(&term)?;
                let names = self.validated_names().await;
                let suffix = format!(".{target}");
                let m = names.iter().any(|n| *n == target || n.ends_with(&suffix));
                (m, term)
            }
            Mechanism::Exists { macro_string } => {
                let target = self.expand(macro_string, domain);
                let term = format!("{q}exists:{target}");
                self.count_lookup(&term)?;
                (self.exists_match(&target, &term).await?, term)
            }
            Mechanism::Include { macro_string } => {
                let target = self.expand(macro_string, domain);
                let term = format!("{q}include:{target}");
                self.count_lookup(&term)?;
                (self.include_match(target, &term, domain).await?, term)
            }
        })
    }

    /// For `a` and `mx` (`name`): the target (macros expanded) and the term as written,
    /// counted against the lookup limit (RFC 7208 §4.6.4).
    fn counted_host_term(
        &mut self,
        q: &str,
        name: &str,
        macro_string: &Macro,
        ip4_mask: u32,
        ip6_mask: u128,
        domain: &str,
    ) -> Result<(String, String), Abort> {
        let target = self.expand(macro_string, domain);
        let term = format!(
            "{q}{name}{}{}{}",
            name_suffix(macro_string, &target),
            cidr4(ip4_mask),
            cidr6(ip6_mask)
        );
        self.count_lookup(&term)?;
        Ok((target, term))
    }

    /// RFC 7208 §5.7 `exists:`: always an A query, whatever the client's family.
    async fn exists_match(&mut self, target: &str, term: &str) -> Result<bool, Abort> {
        match self.dns.a(target).await {
            Ok(a) => {
                self.trace.push(format!("A {target}: {}", join(&a)));
                Ok(true)
            }
            Err(LookupError::Void) => {
                self.trace.push(format!("A {target}: no records"));
                self.count_void(term)?;
                Ok(false)
            }
            Err(LookupError::Temporary(e)) => Err(temp(&format!("A {target}"), &e)),
        }
    }

    /// RFC 7208 §5.2 `include:`: the included result decides match / no match / error.
    async fn include_match(
        &mut self,
        target: String,
        term: &str,
        domain: &str,
    ) -> Result<bool, Abort> {
        let inner = self.check(target.clone()).await?;
        match inner.result {
            SpfResult::Pass => Ok(true),
            SpfResult::Fail | SpfResult::SoftFail | SpfResult::Neutral => Ok(false),
            SpfResult::None => Err(perm(format!(
                "{term} in {domain}: {target} has no SPF record"
            ))),
            SpfResult::TempError | SpfResult::PermError => Err(Abort {
                result: inner.result,
                reason: inner.reason,
            }),
        }
    }

    /// The step when `term` (qualified by `qualifier`) of `domain`'s record matched;
    /// a fail carries the domain's explanation (RFC 7208 §6.2).
    async fn matched_step(
        &mut self,
        spf: &Spf,
        domain: &str,
        qualifier: &Qualifier,
        term: String,
    ) -> Step {
        let result = qualifier_result(qualifier);
        let explanation = if result == SpfResult::Fail {
            self.explain(spf, domain).await
        } else {
            None
        };
        Step {
            result,
            reason: format!("{} matched {term} of {domain}", self.ip),
            mechanism: Some(term),
            explanation,
        }
    }

    /// No directive matched: `redirect=` when there is no `all` (RFC 7208 §6.1), else
    /// neutral (§4.7).
    async fn after_no_match(
        &mut self,
        spf: &Spf,
        domain: &str,
        has_all: bool,
    ) -> Result<Step, Abort> {
        let ip = self.ip;
        // RFC 7208 §6.1: redirect applies when nothing matched and there is no "all".
        if let (Some(m), false) = (&spf.redirect, has_all) {
            let target = self.expand(m, domain);
            let term = format!("redirect={target}");
            self.count_lookup(&term)?;
            let inner = self.check(target.clone()).await?;
            if inner.result == SpfResult::None {
                return Err(perm(format!(
                    "{term} in {domain}: {target} has no SPF record (RFC 7208 §6.1)"
                )));
            }
            return Ok(inner);
        }
        // RFC 7208 §4.7: no match, no redirect → neutral.
        Ok(Step {
            result: SpfResult::Neutral,
            mechanism: None,
            reason: format!("{ip} matched no mechanism of {domain} (default neutral)"),
            explanation: None,
        })
    }

    async fn addr_match(
        &mut self,
        target: &str,
        m4: u32,
        m6: u128,
        void_counts: bool,
    ) -> Result<bool, Abort> {
        let ip = self.ip;
        let kind = if ip.is_ipv4() { "A" } else { "AAAA" };
        match self.dns.addrs_like(target, ip).await {
            Ok(addrs) => {
                self.trace
                    .push(format!("{kind} {target}: {}", join(&addrs)));
                Ok(addrs.into_iter().any(|a| in_net(ip, a, m4, m6)))
            }
            Err(LookupError::Void) => {
                self.trace.push(format!("{kind} {target}: no records"));
                if void_counts {
                    self.count_void(&format!("a:{target}"))?;
                }
                Ok(false)
            }
            Err(LookupError::Temporary(e)) => Err(temp(&format!("{kind} {target}"), &e)),
        }
    }

    async fn mx_match(
        &mut self,
        target: &str,
        m4: u32,
        m6: u128,
        term: &str,
    ) -> Result<bool, Abort> {
        let names = match self.dns.mx(target).await {
            Ok(n) => n,
            Err(LookupError::Void) => {
                self.trace.push(format!("MX {target}: no records"));
                self.count_void(term)?;
                return Ok(false);
            }
            Err(LookupError::Temporary(e)) => return Err(temp(&format!("MX {target}"), &e)),
        };
        self.trace
            .push(format!("MX {target}: {}", names.join(", ")));
        // RFC 7208 §4.6.4: more than 10 MX names is a permerror for this term.
        if names.len() > MAX_NAMES {
            return Err(perm(format!(
                "{term}: {} MX names (more than {MAX_NAMES}; RFC 7208 §4.6.4)",
                names.len()
            )));
        }
        for n in names.iter().filter(|n| !n.is_empty()) {
            if self.addr_match(n, m4, m6, false).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// RFC 7208 §6.2: the explanation string, or nothing if anything goes wrong.
    async fn explain(&mut self, spf: &Spf, domain: &str) -> Option<String> {
        let m = spf.exp.as_ref()?;
        let target = self.expand(m, domain);
        let txts = match self.dns.txt(&target).await {
            Ok(t) => t,
            Err(e) => {
                self.trace
                    .push(format!("TXT {target} (exp): {}", describe_err(&e)));
                return None;
            }
        };
        self.trace
            .push(format!("TXT {target} (exp): {} record(s)", txts.len()));
        if txts.len() != 1 || !txts[0].is_ascii() {
            return None;
        }
        let parsed = Macro::parse(&txts[0]).ok()?;
        if parsed.needs_ptr() {
            self.ensure_validated().await;
        }
        self.vars.set_domain(domain.as_bytes().to_vec());
        Some(eval_explanation(&parsed, &self.vars))
    }
}

/// Expands an explanation string. RFC 7208 §7.3: an upper-case macro letter means
/// "URL-escape the value"; mail-auth escapes with lower-case hex digits, and RFC 3986
/// §2.1 asks producers for upper case (`%3D`), so each escaped part's escapes are
/// upper-cased (every '%' in an escaped value starts an escape: '%' itself becomes
/// `%25`). Literal text is left exactly as published.
fn eval_explanation(m: &Macro, vars: &Variables<'_>) -> String {
    let part = |p: &Macro| {
        let s = p.eval(vars, "", false).into_owned();
        if matches!(p, Macro::Variable { escape: true, .. }) {
            upper_case_escapes(&s)
        } else {
            s
        }
    };
    match m {
        Macro::List(parts) => parts.iter().map(part).collect(),
        other => part(other),
    }
}

fn upper_case_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut hex_left = 0;
    for c in s.chars() {
        if c == '%' {
            hex_left = 2;
            out.push(c);
        } else if hex_left > 0 {
            hex_left -= 1;
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn none_step(domain: &str, scope: Scope) -> Step {
    Step {
        result: SpfResult::None,
        mechanism: None,
        reason: if scope == Scope::Pra {
            format!("no spf2.0/pra or v=spf1 record for {domain}")
        } else {
            format!("no SPF record for {domain}")
        },
        explanation: None,
    }
}

fn name_suffix(m: &Macro, target: &str) -> String {
    if matches!(m, Macro::None) {
        String::new()
    } else {
        format!(":{target}")
    }
}

fn join<T: std::fmt::Display>(v: &[T]) -> String {
    v.iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_err(e: &LookupError) -> String {
    match e {
        LookupError::Void => "no records".into(),
        LookupError::Temporary(e) => format!("error {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_rewritten_for_the_parser() {
        let p =
            prepare_record("v=spf1 x=y ip4:192.0.2.0/0 a:a:b.test a//0 redirect=r.test").unwrap();
        // The unknown modifier is dropped; /0 is read as /1 and put back later.
        assert_eq!(
            p.text,
            format!("v=spf1 ip4:192.0.2.0/1 a:{PLACEHOLDER_SPEC} a//1 redirect=r.test")
        );
        let zero: Vec<_> = p.zero_masks.clone();
        assert_eq!(zero, vec![(0, true, false), (2, false, true)]);
        assert_eq!(
            p.own_specs.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![1]
        );
        assert!(prepare_record("v=spf1 include").is_err());
        assert!(prepare_record("v=spf1 ptr/24").is_err());
    }

    #[test]
    fn modifiers_are_kept_dropped_or_refused() {
        let keep = |term: &str| {
            let name_end = term.find('=').unwrap();
            keep_modifier(term, term, &term[..name_end].to_ascii_lowercase(), name_end)
        };
        assert_eq!(keep("redirect=x.test"), Ok(true));
        assert_eq!(keep("exp=x.test"), Ok(true));
        assert_eq!(keep("x-unknown=a%{d}"), Ok(false));
        assert_eq!(keep("empty="), Ok(false));
        assert!(keep("redirect=").is_err());
        assert!(keep("x=%{").is_err());
        assert!(keep("1x=y").is_err());
        // A qualifier makes it no modifier at all.
        assert!(keep_modifier("-x=y", "x=y", "x", 1).is_err());
    }

    #[test]
    fn cidr_suffixes_split_by_family() {
        assert_eq!(split_cidr("24", "ip4", "t"), Ok((Some("24"), None)));
        assert_eq!(split_cidr("64", "ip6", "t"), Ok((None, Some("64"))));
        assert_eq!(split_cidr("24//64", "a", "t"), Ok((Some("24"), Some("64"))));
        assert_eq!(split_cidr("/64", "mx", "t"), Ok((None, Some("64"))));
        assert_eq!(split_cidr("//64", "a", "t"), Ok((None, Some("64"))));
        assert_eq!(split_cidr("24", "a", "t"), Ok((Some("24"), None)));
        assert!(split_cidr("24", "ptr", "t").is_err());
        assert_eq!(cidr_length("0", 32, "t"), Ok(0));
        assert_eq!(cidr_length("128", 128, "t"), Ok(128));
        assert!(cidr_length("33", 32, "t").is_err());
        assert!(cidr_length("024", 32, "t").is_err());
        assert!(cidr_length("", 32, "t").is_err());
        assert!(cidr_length("+1", 32, "t").is_err());
    }

    #[test]
    fn record_selection() {
        let r = |v: &[&str]| v.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        assert_eq!(
            select_record(&r(&["v=spf1 -all", "other"]), Scope::MailFrom).unwrap(),
            Some(("v=spf1 -all".into(), "v=spf1"))
        );
        assert!(select_record(&r(&["v=spf1 -all", "v=spf1 +all"]), Scope::MailFrom).is_err());
        assert_eq!(
            select_record(&r(&["v=spf10 -all"]), Scope::MailFrom).unwrap(),
            None
        );
        // RFC 4406 §3.4: spf2.0/pra wins for the PRA scope, v=spf1 otherwise.
        let both = r(&["v=spf1 +all", "spf2.0/mfrom,pra ip4:192.0.2.0/24 -all"]);
        assert_eq!(
            select_record(&both, Scope::Pra).unwrap(),
            Some(("v=spf1 ip4:192.0.2.0/24 -all".into(), "spf2.0/pra"))
        );
        assert_eq!(
            select_record(&both, Scope::MailFrom).unwrap(),
            Some(("v=spf1 +all".into(), "v=spf1"))
        );
        // spf2.0 for another scope only: fall back to v=spf1.
        let mfrom_only = r(&["v=spf1 ?all", "spf2.0/mfrom -all"]);
        assert_eq!(
            select_record(&mfrom_only, Scope::Pra).unwrap(),
            Some(("v=spf1 ?all".into(), "v=spf1"))
        );
        assert!(select_record(
            &r(&["spf2.0/pra -all", "spf2.0/pra,mfrom +all"]),
            Scope::Pra
        )
        .is_err());
    }

    #[test]
    fn domain_validity() {
        assert!(is_valid_spf_domain("example.com"));
        assert!(is_valid_spf_domain("example.com."));
        assert!(!is_valid_spf_domain("A2345678"));
        assert!(!is_valid_spf_domain("[1.2.3.5]"));
        assert!(!is_valid_spf_domain("a..example.com"));
        assert!(!is_valid_spf_domain(&format!(
            "{}.example.com",
            "a".repeat(64)
        )));
    }

    #[test]
    fn domain_specs_with_colon_and_slash_are_ours_to_parse() {
        // RFC 7208 §7.1 macro-literal: ':' and '/' are allowed in a domain-spec.
        let spf = parse_record("v=spf1 a:foo:bar/baz.example.com/24 mx:x/y.test -all").unwrap();
        match &spf.directives[0].mechanism {
            Mechanism::A {
                macro_string: Macro::Literal(l),
                ip4_mask,
                ..
            } => {
                assert_eq!(&**l, b"foo:bar/baz.example.com");
                assert_eq!(*ip4_mask, u32::MAX << 8);
            }
            m => panic!("{m:?}"),
        }
        assert!(matches!(
            &spf.directives[1].mechanism,
            Mechanism::Mx { macro_string: Macro::Literal(l), .. } if &**l == b"x/y.test"
        ));
        // Explanation-only macro letters stay invalid in a domain-spec.
        assert!(parse_record("v=spf1 a:%{c}:x.test -all").is_err());
        assert_eq!(upper_case_escapes("a%3db%2f"), "a%3Db%2F");
    }

    #[test]
    fn term_names_and_cidr_lengths() {
        assert!(parse_record("v=spf1 a mx -all exp=x.test redirect=y.test").is_ok());
        assert!(parse_record("v=spf1 foo:bar -all").is_err());
        assert!(parse_record("v=spf1 -a=x").is_err());
        assert!(parse_record("v=spf1 1bad=x").is_err());
        assert!(parse_record("v=spf1 ip4:192.0.2.0/33").is_err());
        assert!(parse_record("v=spf1 a/024").is_err());
        assert!(parse_record("v=spf1 ip6:2001:db8::/129").is_err());
        // /0 is valid and means "everything" (mail-auth alone would overflow here).
        let spf = parse_record("v=spf1 ip4:0.0.0.0/0 a/0//0 mx:x.test//0 ip6:::/0").unwrap();
        let d = &spf.directives;
        assert!(matches!(d[0].mechanism, Mechanism::Ip4 { mask: 0, .. }));
        assert!(matches!(
            d[1].mechanism,
            Mechanism::A {
                ip4_mask: 0,
                ip6_mask: 0,
                ..
            }
        ));
        assert!(matches!(
            d[2].mechanism,
            Mechanism::Mx {
                ip4_mask: u32::MAX,
                ip6_mask: 0,
                ..
            }
        ));
        assert!(matches!(d[3].mechanism, Mechanism::Ip6 { mask: 0, .. }));
        let spf = parse_record("v=spf1 a:x.test/24//64").unwrap();
        assert!(matches!(
            spf.directives[0].mechanism,
            Mechanism::A {
                ip4_mask: 0xffff_ff00,
                ..
            }
        ));
    }

    #[test]
    fn long_expansions_lose_left_labels() {
        let long = format!("{}.example.com", "abcdefghi.".repeat(30));
        let t = truncate_domain(long);
        assert!(t.len() <= 253 && t.ends_with(".example.com"), "{t}");
    }
}
