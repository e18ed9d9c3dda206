//! JWT assertions (RFC 7523): a `private_key_jwt` client assertion (§2.2) and a JWT-bearer
//! grant's assertion (§2.1) are the same thing, signed with the client's key.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::error::OAuth2Error;
use crate::jose::{self, SigningKey};

/// The claims every assertion carries, and the ones a caller adds.
pub(super) struct Assertion<'a> {
    pub(super) issuer: &'a str,
    pub(super) subject: &'a str,
    pub(super) audience: &'a str,
    pub(super) lifetime: Duration,
    /// More claims (a Google service account's `scope`); they may not replace the ones above.
    pub(super) extra: Option<&'a Map<String, Value>>,
}

impl Assertion<'_> {
    /// The signed JWT: `iss`, `sub`, `aud`, a fresh random `jti`, `iat` now and `exp` a
    /// lifetime later (wall-clock seconds, as the server reads them).
    pub(super) fn sign(&self, key: &SigningKey) -> Result<String, OAuth2Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut claims = self.extra.cloned().unwrap_or_default();
        claims.insert("iss".into(), self.issuer.into());
        claims.insert("sub".into(), self.subject.into());
        claims.insert("aud".into(), self.audience.into());
        claims.insert("jti".into(), jose::random_id().into());
        claims.insert("iat".into(), now.into());
        claims.insert(
            "exp".into(),
            now.saturating_add(self.lifetime.as_secs().max(1)).into(),
        );
        jose::sign(key, None, &Value::Object(claims)).map_err(OAuth2Error::Signing)
    }
}
