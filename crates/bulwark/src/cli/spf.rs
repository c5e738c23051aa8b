//! `bulwark spf check` (diagnose any domain's SPF / Sender ID) and `bulwark spf record`
//! (the SPF record our domains should publish).
//!
//! `check` prints every DNS lookup, the explanation, and as its LAST line the result
//! word first — `pass (192.0.2.4 matched ip4:192.0.2.0/24 of pass.test)` — so scripts
//! can read it with `tail -1 | cut -d' ' -f1`.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use bulwark_config::{Config, DnsConfig, SenderAuthConfig};
use bulwark_senderauth::{Evaluation, PraSelector, SenderAuth};

#[derive(clap::Subcommand)]
pub enum SpfCommand {
    /// Evaluate SPF (and Sender ID) for a client IP, as this server would.
    Check(CheckArgs),
    /// Print the SPF record our domains should publish, explained.
    Record {
        /// Only this domain (default: every domain of the server).
        #[arg(long)]
        domain: Option<String>,
    },
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The connecting client's IP address.
    #[arg(long)]
    ip: IpAddr,
    /// The MAIL FROM address; empty (or omitted with --helo) checks the HELO identity.
    #[arg(long, default_value = "")]
    mail_from: String,
    /// The HELO/EHLO name the client gave.
    #[arg(long, default_value = "")]
    helo: String,
    /// Also evaluate Sender ID for this Purported Responsible Address.
    #[arg(long)]
    pra: Option<String>,
    /// Read a header block from this file ("-" = stdin), select its PRA (RFC 4407)
    /// and evaluate Sender ID for it.
    #[arg(long)]
    headers: Option<String>,
    /// DNS server to ask (ADDR:PORT) instead of [dns] / /etc/resolv.conf.
    #[arg(long)]
    dns: Option<SocketAddr>,
}

pub fn run(dir: &Path, cmd: SpfCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SpfCommand::Check(args) => super::block_on(check(dir, args)),
        SpfCommand::Record { domain } => super::block_on(record(dir, domain)),
    }
}

fn print_eval(title: &str, ev: &Evaluation) {
    println!("{title}");
    println!("  lookups:");
    if ev.lookups.is_empty() {
        println!("    (none)");
    }
    for l in &ev.lookups {
        println!("    {l}");
    }
    match &ev.explanation {
        Some(e) => println!("  explanation (exp=): {e}"),
        None => println!("  explanation: {}", ev.reason),
    }
}

async fn check(dir: &Path, a: CheckArgs) -> anyhow::Result<ExitCode> {
    // The server's own configuration when there is one (host name for %{r}, [dns]);
    // otherwise defaults, so the tool works on any machine.
    let loaded = Config::load(dir).ok().map(|l| l.config);
    let hostname = loaded
        .as_ref()
        .map_or("localhost".to_string(), |c| c.server.hostname.clone());
    let dns = match a.dns {
        Some(addr) => DnsConfig {
            resolvers: vec![addr],
        },
        None => loaded.as_ref().map(|c| c.dns.clone()).unwrap_or_default(),
    };
    let resolver = bulwark_dns::SharedResolver::from_config(&dns).context("cannot set up DNS")?;
    let sa = SenderAuth::new(&SenderAuthConfig::default(), &hostname, resolver);

    let want_sender_id = a.pra.is_some() || a.headers.is_some();
    let mut last: Option<String> = None;
    if !a.mail_from.is_empty() || !a.helo.is_empty() || !want_sender_id {
        anyhow::ensure!(
            !a.mail_from.is_empty() || !a.helo.is_empty(),
            "give --mail-from ADDR (or --helo NAME to check the HELO identity)"
        );
        let ev = sa.evaluate_spf(a.ip, &a.helo, &a.mail_from).await;
        print_eval(
            &format!(
                "SPF: identity {} <{}> domain {} from {} (HELO {})",
                ev.scope.as_str(),
                ev.sender,
                ev.domain,
                ev.ip,
                if a.helo.is_empty() { "-" } else { &a.helo }
            ),
            &ev,
        );
        last = Some(ev.summary());
    }
    if want_sender_id {
        let pra = if let Some(addr) = &a.pra {
            let value = format!(" {addr}\r\n");
            let hdr: Vec<(&[u8], &[u8])> = vec![(b"From".as_slice(), value.as_bytes())];
            PraSelector::select(&hdr)
        } else {
            let src = a.headers.as_deref().unwrap_or("-");
            let mut text = Vec::new();
            if src == "-" {
                std::io::stdin()
                    .take(1 << 20)
                    .read_to_end(&mut text)
                    .context("cannot read the header block from stdin")?;
            } else {
                text = std::fs::read(src).with_context(|| format!("cannot read {src}"))?;
            }
            if !text.windows(2).any(|w| w == b"\n\n") && !text.ends_with(b"\n") {
                text.extend_from_slice(b"\r\n");
            }
            text.extend_from_slice(b"\r\n");
            let msg = mail_auth::AuthenticatedMessage::parse(&text);
            let hdrs = msg.map(|m| m.headers).unwrap_or_default();
            PraSelector::select(&hdrs)
        };
        match pra {
            Ok(pra) => {
                println!("PRA: {} (from the {} header)", pra.address, pra.header);
                let ev = sa.evaluate_pra(a.ip, &a.helo, &pra).await;
                print_eval(
                    &format!(
                        "Sender ID: PRA {} domain {} from {}",
                        pra.address, pra.domain, a.ip
                    ),
                    &ev,
                );
                last = Some(ev.summary());
            }
            Err(no) => {
                println!("no PRA: {}", no.reason);
                last = Some(format!("no-pra ({})", no.reason));
            }
        }
    }
    if let Some(l) = last {
        println!("{l}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn record(dir: &Path, only: Option<String>) -> anyhow::Result<ExitCode> {
    let (cfg, store) = super::store_for(dir)?;
    let c = &cfg.config;
    let mut domains: Vec<String> = store
        .list_domains()
        .await?
        .into_iter()
        .map(|d| d.name)
        .collect();
    if let Some(d) = only {
        domains = vec![d.trim_end_matches('.').to_ascii_lowercase()];
    }
    anyhow::ensure!(
        !domains.is_empty(),
        "no domains; add one with `bulwark domain add`"
    );
    // The same functions compute the fixes `bulwark audit --dns` suggests.
    let rec = bulwark_senderauth::record::recommended_spf(c);
    for d in &domains {
        println!("{}", rec.zone_line(d));
    }
    let host = &c.server.hostname;
    let all_domains: Vec<String> = store
        .list_domains()
        .await?
        .into_iter()
        .map(|d| d.name)
        .collect();
    let helo = bulwark_senderauth::record::helo_record_needed(host, &all_domains)
        .then(|| bulwark_senderauth::record::recommended_helo_spf(c));
    if let Some(h) = &helo {
        println!("{}", h.zone_line(host));
    }
    println!();
    println!("Why ({}):", domains.join(", "));
    for t in &rec.terms {
        println!("  {:<24} {}", t.term, t.why);
    }
    match &helo {
        Some(h) => {
            println!("Why ({host}, the HELO name):");
            for t in &h.terms {
                println!("  {:<24} {}", t.term, t.why);
            }
        }
        None => println!(
            "{host}, the HELO name, is one of the domains: its record above covers it (a:{host})."
        ),
    }
    for n in &rec.notes {
        println!("\nNote: {n}");
    }
    println!(
        "\nPublish one such TXT record per name (a second v=spf1 record is a permerror).\n\
         Also publish the DKIM keys (`bulwark dkim list` prints their records) and a DMARC policy,\n\
         e.g. _dmarc.D TXT \"v=DMARC1; p=quarantine; adkim=r; aspf=r\"."
    );
    Ok(ExitCode::SUCCESS)
}
