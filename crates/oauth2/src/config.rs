//! What every clone of a provider, and every call in flight, shares: where the token endpoint
//! is, who the client is, what it asks for.

use std::sync::Mutex;
use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::OnceCell;

use crate::client_auth::ClientAuth;
use crate::endpoint::TokenEndpoint;
use crate::grant::GrantKind;
use crate::grant_proof::DpopSettings;

/// The provider's settings, fixed when it is built, and the little it learns while it runs.
pub(super) struct ProviderConfig {
    pub(super) endpoint: EndpointSource,
    pub(super) client_auth: ClientAuth,
    pub(super) grant: GrantKind,
    /// `scope` (joined), `audience`, `resource` and extra parameters, in that order: sent with
    /// every grant, the refresh-token grant included.
    pub(super) params: Vec<(String, String)>,
    /// The lifetime of a token whose answer has no `expires_in`; `None`: until refused.
    pub(super) default_lifetime: Option<Duration>,
    /// For [`Grant::refresh_token`](crate::Grant::refresh_token): the newest refresh token
    /// issued, so that a call without a previous token (the cache lost it after a failure)
    /// never presents one the server has rotated away, which a server with reuse detection
    /// answers by revoking them all.
    pub(super) newest_refresh_token: Mutex<Option<SecretString>>,
    /// The DPoP key every token request proves, if the tokens are to be bound to one.
    pub(super) dpop: Option<DpopSettings>,
}

/// Where the token endpoint comes from.
pub(super) enum EndpointSource {
    /// Given.
    Fixed(TokenEndpoint),
    /// Discovered from the issuer's metadata on first use, then kept.
    Discovered {
        issuer: String,
        endpoint: OnceCell<TokenEndpoint>,
    },
}
