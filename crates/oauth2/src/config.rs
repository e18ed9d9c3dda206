//! What every clone of a provider, and every call in flight, shares: where the token endpoint
//! is, who the client is, what it asks for.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::Uri;
use secrecy::SecretString;
use tokio::sync::OnceCell;
use tower_bearer::Token;
use tower_bearer_provider::shown_url;

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
    /// Whether a discovered token endpoint may be `http` on a host that is not loopback
    /// ([`OAuth2Builder::allow_cleartext_endpoints`](crate::OAuth2Builder::allow_cleartext_endpoints)).
    pub(super) allow_cleartext: bool,
}

impl ProviderConfig {
    /// The token endpoint: the one given, or the one discovered (once a call has done it).
    pub(super) fn token_endpoint(&self) -> Option<&TokenEndpoint> {
        match &self.endpoint {
            EndpointSource::Fixed(endpoint) => Some(endpoint),
            EndpointSource::Discovered { endpoint, .. } => endpoint.get(),
        }
    }

    /// Where the provider's requests go, as errors show it: the token endpoint, or the issuer
    /// while it is not discovered.
    pub(super) fn shown_url(&self) -> String {
        match (self.token_endpoint(), &self.endpoint) {
            (Some(endpoint), _) => shown_url(&endpoint.uri),
            (None, EndpointSource::Discovered { issuer, .. }) => issuer
                .parse::<Uri>()
                .map_or_else(|_| issuer.clone(), |issuer| shown_url(&issuer)),
            (None, EndpointSource::Fixed(endpoint)) => shown_url(&endpoint.uri),
        }
    }

    /// The newest refresh token issued, for
    /// [`Grant::refresh_token`](crate::Grant::refresh_token).
    pub(super) fn newest_refresh_token(&self) -> Option<SecretString> {
        lock(&self.newest_refresh_token).clone()
    }

    /// Remembers `token`'s refresh token, if it has one, as the newest.
    pub(super) fn set_newest_refresh_token(&self, token: &Token) {
        if let Some(refresh_token) = token.expose_refresh_token() {
            *lock(&self.newest_refresh_token) = Some(SecretString::from(refresh_token.to_owned()));
        }
    }
}

/// A mutex's guard, even if a holder panicked: what it guards is replaced whole, never left
/// half-written.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
