//! What every protocol session may use: configuration, store, TLS, authentication, and
//! the shutdown signal. Built once by `serve`.

use std::sync::Arc;

use bulwark_auth::Authenticator;
use bulwark_config::LoadedConfig;
use bulwark_store::SharedStore;
use bulwark_tls::TlsServer;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct ServerContext {
    pub config: Arc<LoadedConfig>,
    pub store: SharedStore,
    pub tls: TlsServer,
    pub auth: Authenticator,
    /// Cancelled on SIGTERM/SIGINT.
    pub shutdown: CancellationToken,
}

impl ServerContext {
    /// The host name to greet with.
    pub fn hostname(&self) -> &str {
        &self.config.config.server.hostname
    }
}
