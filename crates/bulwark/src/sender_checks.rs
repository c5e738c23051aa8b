//! The glue between the SMTP server's seam (`bulwark_smtp::SenderChecks`) and
//! `bulwark_senderauth`, which knows nothing of SMTP sessions: SPF at MAIL, Sender
//! ID/DKIM/DMARC after DATA on port 25, DKIM signing of submissions.

use std::sync::Arc;

use async_trait::async_trait;
use bulwark_config::{ListenerKind, LoadedConfig};
use bulwark_senderauth::{Action, DkimSigner, SenderAuth, SpfOutcome};
use bulwark_smtp::checks::{
    CheckNote, MailFromVerdict, MessageAction, MessageContext, MessageVerdict, SenderContext,
    SignContext,
};
use bulwark_smtp::{Enhanced, SmtpError};

pub struct SenderAuthChecks {
    auth: SenderAuth,
    /// `None` when signing is disabled.
    signer: Option<DkimSigner>,
}

impl SenderAuthChecks {
    pub fn from_config(cfg: &LoadedConfig) -> anyhow::Result<SenderAuthChecks> {
        let auth = SenderAuth::from_config(&cfg.config)?;
        let signing = &cfg.config.senderauth.signing;
        let signer = if signing.enabled {
            let s = DkimSigner::load(&cfg.path(&signing.key_dir))?;
            for (domain, selector) in s.selectors() {
                tracing::info!(target: "bulwark::senderauth", %domain, %selector, "DKIM signing key loaded");
            }
            Some(s)
        } else {
            None
        };
        Ok(SenderAuthChecks { auth, signer })
    }
}

fn refusal(a: &Action, reason: &'static str) -> Option<SmtpError> {
    match a {
        Action::Reject {
            code,
            enhanced: e,
            text,
        }
        | Action::TempFail {
            code,
            enhanced: e,
            text,
        } => Some(SmtpError::new(*code, *e, reason, text.clone())),
        _ => None,
    }
}

#[async_trait]
impl bulwark_smtp::SenderChecks for SenderAuthChecks {
    async fn check_mail_from(&self, ctx: &SenderContext) -> MailFromVerdict {
        if ctx.listener != ListenerKind::Smtp || !self.auth.enabled() {
            return MailFromVerdict::default();
        }
        // RFC 7505 §4.2: a sender domain with a null MX sends no mail (550 5.7.27).
        if !self.auth.is_internal(ctx.client_ip) {
            let a = self.auth.check_null_mx_sender(&ctx.mail_from).await;
            if let Some(refuse) = refusal(&a, "null-mx") {
                return MailFromVerdict {
                    refuse: Some(refuse),
                    ..MailFromVerdict::default()
                };
            }
        }
        let o = self
            .auth
            .check_mail_from(ctx.client_ip, &ctx.helo, &ctx.mail_from)
            .await;
        MailFromVerdict {
            refuse: refusal(&o.action, "spf"),
            // Received-SPF is written after DATA, together with Authentication-Results.
            headers: String::new(),
            note: Some(Arc::new(o)),
        }
    }

    async fn check_forward_routes(&self, targets: &[String]) -> Option<SmtpError> {
        if !self.auth.enabled() {
            return None;
        }
        for t in targets {
            let (_, domain) = t.rsplit_once('@')?;
            if !self.auth.publishes_null_mx(domain).await {
                return None;
            }
        }
        // RFC 7505 §3: 556 5.1.10 for a recipient whose domain accepts no mail. The
        // forward targets are not named: they are our configuration, not the sender's.
        tracing::info!(target: "bulwark::senderauth", targets = targets.len(), "recipient refused: it only forwards to domains with a null MX");
        Some(SmtpError::new(
            556,
            Enhanced::new(5, 1, 10),
            "bad_route",
            "This address forwards to a domain that accepts no mail (null MX, RFC 7505)",
        ))
    }

    async fn check_message(
        &self,
        ctx: &MessageContext,
        note: Option<&CheckNote>,
        message: &[u8],
    ) -> MessageVerdict {
        if ctx.sender.listener != ListenerKind::Smtp {
            return MessageVerdict::default();
        }
        // Every field we would add ourselves (Authentication-Results in our name,
        // Received-SPF, X-Bulwark-*) is removed whether or not the checks run (RFC
        // 8601 §5): downstream filters and clients trust them, so a sender must never
        // be able to write a verdict in our name.
        let (removed, stripped) =
            bulwark_senderauth::headers::strip_forged_results(message, self.auth.hostname());
        if removed > 0 {
            tracing::info!(target: "bulwark::senderauth", removed, "removed header fields only this server may add (Authentication-Results in our name, Received-SPF, X-Bulwark-*)");
        }
        if !self.auth.enabled() {
            return MessageVerdict {
                replace_message: (removed > 0).then_some(stripped),
                ..MessageVerdict::default()
            };
        }
        let spf = note
            .and_then(|n| n.downcast_ref::<SpfOutcome>())
            .cloned()
            .unwrap_or(SpfOutcome {
                evaluation: None,
                action: Action::Accept,
            });
        let s = &ctx.sender;
        let v = self
            .auth
            .check_message(s.client_ip, &s.helo, &s.mail_from, &spf, message)
            .await;
        let action = match &v.action {
            Action::Accept => MessageAction::Accept,
            Action::Tag => MessageAction::Tag,
            Action::Quarantine => MessageAction::Quarantine,
            a => match refusal(a, "senderauth") {
                Some(e) => MessageAction::Refuse(e),
                None => MessageAction::Accept,
            },
        };
        // A sender that failed SPF, or a From whose domain's DMARC failed, is likely
        // forged: notices about forwarded copies would hit the forgery's victim.
        let sender_failed = v
            .results
            .spf
            .as_ref()
            .is_some_and(|e| e.result == bulwark_senderauth::SpfResult::Fail)
            || v.results.dmarc.as_ref().is_some_and(|d| d.result == "fail");
        MessageVerdict {
            action,
            headers: v.headers_to_prepend,
            replace_message: (removed > 0).then_some(stripped),
            sender_failed,
        }
    }

    async fn sign(&self, ctx: &SignContext, message: &[&[u8]]) -> Result<String, SmtpError> {
        let (Some(signer), Some(domain)) = (&self.signer, &ctx.from_domain) else {
            return Ok(String::new());
        };
        match signer.sign_as(domain, &message.concat()) {
            Ok(h) => Ok(h.unwrap_or_default()),
            Err(e) => {
                tracing::error!(target: "bulwark::senderauth", %domain, error = %e, "DKIM signing failed");
                Err(SmtpError::temporary_failure("dkim"))
            }
        }
    }
}
