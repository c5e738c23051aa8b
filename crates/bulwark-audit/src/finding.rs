//! What `bulwark audit` reports: findings with an id, a severity, what was found, why
//! it matters and the exact fix.

use serde::Serialize;

/// How bad a finding is. Ordered: `Info < Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing to fix.
    Info,
    /// A weaker setting than recommended, with a reason it may be deliberate.
    Low,
    /// A real weakness an attacker needs some position or luck to use.
    Medium,
    /// A weakness that is directly usable, or a server that will not start.
    High,
    /// Secrets or mail exposed now (cleartext passwords, open relay, expired certificate).
    Critical,
}

impl Severity {
    /// Every severity, most severe first (the order of the report).
    pub const ALL: [Severity; 5] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ];

    /// The lowercase name used in output and by `--fail-on`.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|v| v.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("{s:?} is not a severity (critical, high, medium, low, info)"))
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable identifier (e.g. `cert-self-signed`), for suppressing or alerting.
    pub id: &'static str,
    /// How bad it is.
    pub severity: Severity,
    /// What it is about: a config key, a listener and address, a file, a domain.
    pub subject: String,
    /// What was found.
    pub found: String,
    /// Why it matters.
    pub why: String,
    /// The exact fix.
    pub fix: String,
}

impl Finding {
    /// A finding; `id` is one of `FINDING_IDS` (a test holds every emitted id to it).
    pub fn new(
        id: &'static str,
        severity: Severity,
        subject: impl Into<String>,
        found: impl Into<String>,
        why: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            id,
            severity,
            subject: subject.into(),
            found: found.into(),
            why: why.into(),
            fix: fix.into(),
        }
    }
}

/// Every finding id, its usual severity and what it checks: the list the README
/// documents (a test keeps them in step).
pub const FINDING_IDS: &[(&str, &str)] = &[
    ("config-invalid", "the configuration breaks a validation rule (`bulwark config check` refuses it)"),
    ("plaintext-auth", "SMTP AUTH offered before TLS (probe)"),
    ("imap-cleartext-login", "IMAP 143 allows login before STARTTLS: no STARTTLS, no LOGINDISABLED, or AUTH= offered in cleartext (probe)"),
    ("pop3-cleartext-login", "POP3 110 allows login before STLS: no STLS, or USER/SASL offered in cleartext (probe)"),
    ("open-relay", "mail to a remote domain accepted without authentication (probe)"),
    ("tls-legacy-version", "a listener completes a TLS 1.0/1.1 handshake (probe)"),
    ("tls-version-mismatch", "TLS versions accepted differ from [tls] min_version (probe)"),
    ("cert-unusable", "the certificate or key cannot be loaded"),
    ("cert-expired", "the certificate has expired or is not valid yet"),
    ("cert-expiring", "the certificate expires within 30 days"),
    ("cert-name-mismatch", "the certificate does not name server.hostname"),
    ("cert-self-signed", "self-signed certificate (info on loopback, high on Internet-facing listeners)"),
    ("cert-untrusted", "the chain does not verify against the system's trusted roots"),
    ("cert-not-served", "the running server presents another certificate than tls.cert (probe)"),
    ("key-permissions", "the private key is readable by group or others"),
    ("dkim-key-permissions", "a DKIM signing key is readable by group or others"),
    ("data-dir-permissions", "the data directory is accessible to group or others"),
    ("store-permissions", "the store directory or its files are accessible to group or others"),
    ("config-permissions", "bulwark.toml is readable by group or others"),
    ("log-permissions", "the protocol log directory or files are accessible to group or others"),
    ("metrics-no-token", "metrics bound beyond loopback without a bearer token"),
    ("metrics-exposed", "metrics bound beyond loopback (HTTPS and token required)"),
    ("metrics-unprotected", "the metrics endpoint beyond loopback answers without TLS or without the token (probe)"),
    ("accept-policy-internal-weak", "an internal network's per-host policy does not require TLS"),
    ("internal-servers-too-broad", "senderauth.internal_servers names a wide or public network (its hosts are trusted as our relays)"),
    ("proxy-protocol-too-broad", "PROXY headers accepted from a very large network"),
    ("connector-credentials-without-tls", "an outbound connector sends credentials without required TLS"),
    ("connector-credentials-unverified-tls", "an outbound connector sends credentials over TLS that does not verify the server"),
    ("credentials-permissions", "an outbound connector's credentials file is readable by group or others"),
    ("auth-limiter-disabled", "brute-force protection is off"),
    ("auth-limits-weak", "brute-force limits are far weaker than the defaults"),
    ("protocol-log-unredacted", "a protocol log would write secrets (impossible by construction; checked anyway)"),
    ("listener-mismatch", "a running listener differs from its configuration (probe)"),
    ("dns-spf-missing", "no SPF record for one of our domains (--dns)"),
    ("dns-spf-helo-missing", "no SPF record for the host name this server gives in HELO (--dns)"),
    ("dns-dkim-missing", "no DKIM key record for one of our domains (--dns)"),
    ("dns-dmarc-missing", "no DMARC record for one of our domains (--dns)"),
    ("dns-mx-missing", "no MX record for one of our domains (--dns)"),
    ("dns-lookup-failed", "a DNS check could not be completed (--dns)"),
];

/// Sorts findings: most severe first, then by id and subject.
pub fn sort(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.id.cmp(b.id))
            .then(a.subject.cmp(&b.subject))
    });
}

/// Counts per severity, most severe first.
pub fn summary(findings: &[Finding]) -> Vec<(Severity, usize)> {
    Severity::ALL
        .into_iter()
        .map(|s| (s, findings.iter().filter(|f| f.severity == s).count()))
        .collect()
}

/// Human-readable report.
pub fn render_text(findings: &[Finding]) -> String {
    let mut out = String::new();
    if findings.is_empty() {
        out.push_str("No findings.\n");
        return out;
    }
    for f in findings {
        out.push_str(&format!(
            "{:<8} {}  {}\n  found: {}\n  why:   {}\n  fix:   {}\n\n",
            f.severity.name().to_uppercase(),
            f.id,
            f.subject,
            f.found,
            f.why,
            f.fix
        ));
    }
    out.push_str(&summary_line(findings));
    out.push('\n');
    out
}

/// The count line closing the report, e.g. "3 finding(s): 1 high, 2 low".
pub fn summary_line(findings: &[Finding]) -> String {
    let parts: Vec<String> = summary(findings)
        .into_iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect();
    format!("{} finding(s): {}", findings.len(), parts.join(", "))
}

/// Markdown report (a table of findings, then their details).
pub fn render_markdown(findings: &[Finding]) -> String {
    let esc = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let mut out =
        String::from("| severity | id | subject | found | fix |\n|---|---|---|---|---|\n");
    for f in findings {
        out.push_str(&format!(
            "| {} | `{}` | {} | {} | {} |\n",
            f.severity,
            f.id,
            esc(&f.subject),
            esc(&f.found),
            esc(&f.fix)
        ));
    }
    out.push('\n');
    out.push_str(&summary_line(findings));
    out.push('\n');
    out
}

/// JSON report: `{"findings": [...], "summary": {"critical": n, ...}}`.
pub fn render_json(findings: &[Finding]) -> serde_json::Value {
    let summary: serde_json::Map<String, serde_json::Value> = summary(findings)
        .into_iter()
        .map(|(s, n)| (s.name().to_string(), serde_json::Value::from(n)))
        .collect();
    serde_json::json!({ "findings": findings, "summary": summary })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_order_and_parse() {
        assert!(Severity::Critical > Severity::High);
        assert!(Severity::Low > Severity::Info);
        assert_eq!("HIGH".parse::<Severity>().unwrap(), Severity::High);
        assert!("urgent".parse::<Severity>().is_err());
    }

    #[test]
    fn rendering() {
        let mut f = vec![
            Finding::new("b", Severity::Info, "s", "found", "why", "fix"),
            Finding::new("a", Severity::High, "t|u", "found", "why", "fix"),
        ];
        sort(&mut f);
        assert_eq!(f[0].id, "a");
        let t = render_text(&f);
        assert!(t.starts_with("HIGH     a  t|u\n"), "{t}");
        assert!(t.contains("2 finding(s): 0 critical, 1 high, 0 medium, 0 low, 1 info"));
        assert!(render_markdown(&f).contains("| high | `a` | t\\|u |"));
        assert_eq!(render_json(&f)["summary"]["high"], 1);
        assert_eq!(render_json(&f)["findings"][0]["severity"], "high");
    }

    #[test]
    fn ids_are_unique() {
        for (i, (id, _)) in FINDING_IDS.iter().enumerate() {
            assert!(FINDING_IDS[i + 1..].iter().all(|(o, _)| o != id), "{id}");
        }
    }
}

#[cfg(test)]
mod id_tests {
    use super::FINDING_IDS;
    use std::path::Path;

    /// Every id the checks can raise is listed in FINDING_IDS, and every listed id is
    /// documented in README.md.
    #[test]
    fn ids_are_listed_and_documented() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut raised = Vec::new();
        for f in ["checks.rs", "dns.rs", "probe/mod.rs"] {
            let text = std::fs::read_to_string(src.join(f)).unwrap();
            for pat in ["Finding::new(", "diff("] {
                for (i, _) in text.match_indices(pat) {
                    let rest = text[i + pat.len()..].trim_start();
                    if let Some(r) = rest.strip_prefix('"') {
                        raised.push(r.chars().take_while(|c| *c != '"').collect::<String>());
                    }
                }
            }
        }
        assert!(raised.len() > 20, "{raised:?}");
        for id in &raised {
            assert!(
                FINDING_IDS.iter().any(|(i, _)| i == id),
                "{id} is raised but not in FINDING_IDS"
            );
        }
        let readme =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
                .unwrap();
        for (id, _) in FINDING_IDS {
            assert!(readme.contains(&format!("`{id}`")), "{id} not in README.md");
        }
    }
}
