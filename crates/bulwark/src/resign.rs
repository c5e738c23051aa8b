//! DKIM signing of the queue's 7-bit copies (`bulwark_queue::downgrade::Resigner`):
//! a message we signed at submission and then had to convert for a next hop without
//! 8BITMIME is signed again, with the same keys (`[senderauth.signing]`).

use std::sync::Arc;

use bulwark_config::LoadedConfig;
use bulwark_queue::downgrade::Resigner;
use bulwark_senderauth::DkimSigner;

struct QueueResigner(DkimSigner);

impl Resigner for QueueResigner {
    fn sign(&self, domain: &str, message: &[u8]) -> Result<Option<String>, String> {
        self.0.sign_as(domain, message).map_err(|e| e.to_string())
    }
}

/// The signer for the queue, or `None` when signing is disabled.
pub fn from_config(cfg: &LoadedConfig) -> anyhow::Result<Option<Arc<dyn Resigner>>> {
    let signing = &cfg.config.senderauth.signing;
    if !signing.enabled {
        return Ok(None);
    }
    let signer = DkimSigner::load(&cfg.path(&signing.key_dir))?;
    Ok(Some(Arc::new(QueueResigner(signer))))
}
