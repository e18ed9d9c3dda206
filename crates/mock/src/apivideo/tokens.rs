//! The tokens the mock issues, and what it remembers about each.
//!
//! Nothing here derives `Debug`: these types hold live credentials.

use std::collections::HashMap;
use std::mem;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::server::rng::{self, SplitMix64};

/// An RS256 signature is 256 bytes: 342 base64url characters.
const SIGNATURE_LEN: usize = 342;
/// api.video's refresh tokens are `def50200` and about 700 hex digits.
const REFRESH_PREFIX: &str = "def50200";
const REFRESH_RANDOM_HEX: usize = 688;

/// A freshly issued access/refresh pair.
pub(super) struct IssuedPair {
    pub(super) access_token: String,
    pub(super) refresh_token: String,
    /// Whole seconds of validity, rounded down, as api.video reports them.
    pub(super) expires_in: u64,
}

/// What the store knows about an access token presented on a request.
pub(super) enum AccessState {
    Unknown,
    Known { expired: bool, revoked: bool },
}

/// Why a refresh token was refused (for the log line; every reason answers the same).
#[derive(Clone, Copy, Debug)]
pub(super) enum RefreshRejection {
    Unknown,
    AlreadyUsed,
    /// A later API-key login ended it.
    Ended,
    Revoked,
}

struct AccessGrant {
    expires_at: Instant,
    revoked: bool,
}

struct RefreshGrant {
    login: u64,
    used: bool,
    revoked: bool,
    /// The access token issued alongside, for `revoke_access_on_refresh`.
    access_token: String,
}

/// Every token issued for the server's one API key.
///
/// Refresh tokens carry the number of the login that started their chain: a newer login
/// ends them all at once without walking the map.
pub(super) struct IssuedTokens {
    rng: SplitMix64,
    /// Counts issued pairs; its scrambled value starts every token, which makes each unique.
    serial: u64,
    /// Keeps two servers' tokens from starting alike.
    salt: u64,
    login: u64,
    access: HashMap<String, AccessGrant>,
    refresh: HashMap<String, RefreshGrant>,
}

impl IssuedTokens {
    pub(super) fn new() -> Self {
        let mut rng = SplitMix64::from_entropy();
        Self {
            salt: rng.next_u64(),
            rng,
            serial: 0,
            login: 0,
            access: HashMap::new(),
            refresh: HashMap::new(),
        }
    }

    /// A login with the API key: a new pair, and the end of every earlier refresh token.
    pub(super) fn login(&mut self, now: Instant, ttl: Duration) -> IssuedPair {
        self.login += 1;
        self.issue(now, ttl)
    }

    /// Redeems `refresh_token` (once) for a new pair.
    pub(super) fn refresh(
        &mut self,
        refresh_token: &str,
        now: Instant,
        ttl: Duration,
        revoke_previous_access: bool,
    ) -> Result<IssuedPair, RefreshRejection> {
        let grant = self
            .refresh
            .get_mut(refresh_token)
            .ok_or(RefreshRejection::Unknown)?;
        if grant.revoked {
            return Err(RefreshRejection::Revoked);
        }
        if grant.used {
            return Err(RefreshRejection::AlreadyUsed);
        }
        if grant.login != self.login {
            return Err(RefreshRejection::Ended);
        }
        grant.used = true;
        let previous_access = mem::take(&mut grant.access_token);
        if revoke_previous_access {
            if let Some(access) = self.access.get_mut(&previous_access) {
                access.revoked = true;
            }
        }
        Ok(self.issue(now, ttl))
    }

    pub(super) fn access_state(&self, access_token: &str, now: Instant) -> AccessState {
        match self.access.get(access_token) {
            None => AccessState::Unknown,
            Some(grant) => AccessState::Known {
                expired: now >= grant.expires_at,
                revoked: grant.revoked,
            },
        }
    }

    /// Every token issued so far stops working.
    pub(super) fn revoke_all(&mut self) {
        self.access
            .values_mut()
            .for_each(|grant| grant.revoked = true);
        self.refresh
            .values_mut()
            .for_each(|grant| grant.revoked = true);
    }

    fn issue(&mut self, now: Instant, ttl: Duration) -> IssuedPair {
        self.serial += 1;
        // Whole seconds, rounded down, as api.video reports them; the claims say the same.
        let expires_in = ttl.as_secs();
        let access_token = self.access_token(expires_in);
        let refresh_token = self.refresh_token();
        // `checked_add` because a test may ask for an absurd ttl such as `Duration::MAX`.
        let expires_at = now.checked_add(ttl).unwrap_or_else(far_future);
        self.access.insert(
            access_token.clone(),
            AccessGrant {
                expires_at,
                revoked: false,
            },
        );
        self.refresh.insert(
            refresh_token.clone(),
            RefreshGrant {
                login: self.login,
                used: false,
                revoked: false,
                access_token: access_token.clone(),
            },
        );
        IssuedPair {
            access_token,
            refresh_token,
            expires_in,
        }
    }

    /// A JWT-shaped token: base64url header and claims, and a random "signature".
    ///
    /// The claims carry wall-clock `iat`/`exp` so the token decodes like a real one, but the
    /// server never reads them back: validity is kept on tokio's clock, which tests may pause.
    fn access_token(&mut self, expires_in: u64) -> String {
        let jti = self.token_id();
        let issued_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let expires = issued_at.saturating_add(expires_in);
        let header = format!(r#"{{"typ":"JWT","alg":"RS256","jti":"{jti}"}}"#);
        let claims = format!(
            r#"{{"aud":"library","jti":"{jti}","iat":{issued_at},"nbf":{issued_at},"exp":{expires},"sub":"usMockServer","scopes":["mock.api.video"],"context":{{"user":"usMockServer","project":"prMockServer","member":"meMockServer"}}}}"#
        );
        let mut token = String::with_capacity(960);
        rng::push_base64url(&mut token, header.as_bytes());
        token.push('.');
        rng::push_base64url(&mut token, claims.as_bytes());
        token.push('.');
        self.rng
            .push_chars(&mut token, rng::BASE64URL, SIGNATURE_LEN);
        token
    }

    fn refresh_token(&mut self) -> String {
        let mut token = String::with_capacity(REFRESH_PREFIX.len() + 16 + REFRESH_RANDOM_HEX);
        token.push_str(REFRESH_PREFIX);
        rng::push_hex_u64(&mut token, self.unique());
        for _ in 0..REFRESH_RANDOM_HEX / 16 {
            rng::push_hex_u64(&mut token, self.rng.next_u64());
        }
        token
    }

    /// 80 hex digits, like api.video's `jti`: the unique part, then randomness.
    fn token_id(&mut self) -> String {
        let mut id = String::with_capacity(80);
        rng::push_hex_u64(&mut id, self.unique());
        for _ in 0..4 {
            rng::push_hex_u64(&mut id, self.rng.next_u64());
        }
        id
    }

    /// Unique per pair, yet random-looking: the salted serial through a bijection.
    fn unique(&self) -> u64 {
        rng::scramble(self.serial ^ self.salt)
    }
}

/// Far enough that no test outlives it, near enough that `Instant` arithmetic cannot overflow.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn refresh(store: &mut IssuedTokens, token: &str) -> Result<IssuedPair, RefreshRejection> {
        store.refresh(token, Instant::now(), HOUR, false)
    }

    #[test]
    fn access_tokens_look_like_rs256_jwts() {
        let pair = IssuedTokens::new().login(Instant::now(), HOUR);
        let segments: Vec<&str> = pair.access_token.split('.').collect();
        assert_eq!(segments.len(), 3);
        assert!(
            (850..=1000).contains(&pair.access_token.len()),
            "{}",
            pair.access_token.len()
        );
        assert_eq!(segments[2].len(), SIGNATURE_LEN);
        assert!(
            segments
                .iter()
                .all(|s| s.bytes().all(|b| rng::BASE64URL.contains(&b)))
        );
        assert!(pair.refresh_token.starts_with(REFRESH_PREFIX));
        assert!(
            pair.refresh_token[REFRESH_PREFIX.len()..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit())
        );
    }

    #[test]
    fn refresh_tokens_are_single_use_and_end_at_the_next_login() {
        let mut store = IssuedTokens::new();
        let first = store.login(Instant::now(), HOUR);
        let second = refresh(&mut store, &first.refresh_token).ok().unwrap();
        assert!(matches!(
            refresh(&mut store, &first.refresh_token),
            Err(RefreshRejection::AlreadyUsed)
        ));
        store.login(Instant::now(), HOUR);
        assert!(matches!(
            refresh(&mut store, &second.refresh_token),
            Err(RefreshRejection::Ended)
        ));
        assert!(matches!(
            refresh(&mut store, "def50200"),
            Err(RefreshRejection::Unknown)
        ));
    }

    #[test]
    fn tokens_are_unique() {
        let mut store = IssuedTokens::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let pair = store.login(Instant::now(), HOUR);
            assert!(seen.insert(pair.access_token) && seen.insert(pair.refresh_token));
        }
    }

    #[test]
    fn revoke_all_ends_everything() {
        let mut store = IssuedTokens::new();
        let pair = store.login(Instant::now(), HOUR);
        store.revoke_all();
        assert!(matches!(
            store.access_state(&pair.access_token, Instant::now()),
            AccessState::Known {
                revoked: true,
                expired: false
            }
        ));
        assert!(matches!(
            refresh(&mut store, &pair.refresh_token),
            Err(RefreshRejection::Revoked)
        ));
    }

    #[test]
    fn a_huge_ttl_does_not_overflow() {
        let mut store = IssuedTokens::new();
        let pair = store.login(Instant::now(), Duration::MAX);
        assert!(matches!(
            store.access_state(&pair.access_token, Instant::now()),
            AccessState::Known { expired: false, .. }
        ));
    }
}
