//! The tokens a mock server issued, and what it remembers about each: access tokens with
//! their expiry, refresh tokens in families with rotation and reuse detection.
//!
//! Nothing here derives `Debug`: these types hold live credentials.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::server::rng::{self, SplitMix64};

/// A token pair as the token endpoint answers it.
pub(super) struct Issued {
    pub(super) access_token: String,
    pub(super) refresh_token: Option<String>,
    /// Whole seconds of validity, rounded down (and at least 1).
    pub(super) expires_in: u64,
    /// Whether the access token is bound to a DPoP key (`token_type: DPoP`).
    pub(super) dpop: bool,
}

/// Who tokens are issued to: the client, and the DPoP key (its thumbprint, `cnf.jkt`) they
/// are bound to, if any.
#[derive(Clone, Copy)]
pub(super) struct Holder<'a> {
    pub(super) client_id: &'a str,
    /// The thumbprint of the proof's key: the access token is bound to it.
    pub(super) jkt: Option<&'a str>,
    /// Whether a new refresh token is bound to `jkt` too (RFC 9449 §5: a public client's).
    pub(super) bind_refresh: bool,
}

impl<'a> Holder<'a> {
    /// A client's bearer tokens.
    pub(super) fn bearer(client_id: &'a str) -> Self {
        Holder {
            client_id,
            jkt: None,
            bind_refresh: false,
        }
    }
}

/// What the ledger knows about an access token presented to the API.
pub(super) enum AccessCheck {
    Unknown,
    Known {
        expired: bool,
        revoked: bool,
        client_id: String,
        /// The thumbprint of the key a DPoP token is bound to.
        jkt: Option<String>,
    },
}

/// Why a refresh token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RefreshRefusal {
    Unknown,
    /// Presented again after it was used: the whole family is now revoked.
    Reused,
    Revoked,
    OtherClient,
    /// Bound to a DPoP key, and presented without a proof of it.
    OtherKey,
}

impl RefreshRefusal {
    pub(super) fn describe(self) -> &'static str {
        match self {
            RefreshRefusal::Unknown => "unknown refresh token",
            RefreshRefusal::Reused => {
                "refresh token already used: every token of its family is revoked"
            }
            RefreshRefusal::Revoked => "refresh token revoked",
            RefreshRefusal::OtherClient => "refresh token issued to another client",
            RefreshRefusal::OtherKey => "refresh token bound to another DPoP key",
        }
    }
}

struct AccessRecord {
    expires_at: Instant,
    revoked: bool,
    client_id: String,
    family: Option<u64>,
    jkt: Option<String>,
}

struct RefreshRecord {
    family: u64,
    client_id: String,
    used: bool,
    revoked: bool,
    /// The DPoP key it is bound to, which every use must prove.
    jkt: Option<String>,
}

/// Every token the server issued.
pub(super) struct TokenLedger {
    rng: SplitMix64,
    next_family: u64,
    access: HashMap<String, AccessRecord>,
    refresh: HashMap<String, RefreshRecord>,
}

impl TokenLedger {
    pub(super) fn new() -> Self {
        TokenLedger {
            rng: SplitMix64::from_entropy(),
            next_family: 0,
            access: HashMap::new(),
            refresh: HashMap::new(),
        }
    }

    /// A new access token, with a refresh token starting a new family if `with_refresh`.
    pub(super) fn issue(
        &mut self,
        holder: Holder<'_>,
        now: Instant,
        ttl: Duration,
        with_refresh: bool,
    ) -> Issued {
        let family = with_refresh.then(|| {
            self.next_family += 1;
            self.next_family
        });
        let refresh_jkt = holder.jkt.filter(|_| holder.bind_refresh);
        self.issue_in(holder, family, refresh_jkt, now, ttl)
    }

    /// Redeems `refresh_token` for `holder`: a new access token and, when `rotate`, a new
    /// refresh token of the same family (the redeemed one is then used up; presenting it
    /// again revokes the family, as Auth0 and Okta do). A refresh token bound to a DPoP key
    /// is redeemed only with a proof of that key, and its successor is bound to it too; an
    /// unbound one given with a proof by a client whose refresh tokens are bound
    /// (`holder.bind_refresh`) has a bound successor.
    pub(super) fn refresh(
        &mut self,
        refresh_token: &str,
        holder: Holder<'_>,
        now: Instant,
        ttl: Duration,
        rotate: bool,
    ) -> Result<Issued, RefreshRefusal> {
        let record = self
            .refresh
            .get_mut(refresh_token)
            .ok_or(RefreshRefusal::Unknown)?;
        if record.client_id != holder.client_id {
            return Err(RefreshRefusal::OtherClient);
        }
        if record.revoked {
            return Err(RefreshRefusal::Revoked);
        }
        if record.jkt.is_some() && record.jkt.as_deref() != holder.jkt {
            return Err(RefreshRefusal::OtherKey);
        }
        let family = record.family;
        if record.used {
            self.revoke_family(family);
            return Err(RefreshRefusal::Reused);
        }
        if !rotate {
            // The refresh token stays, and the answer carries none (RFC 6749 §6 allows it):
            // the client keeps the one it has.
            let issued = self.issue_in(holder, None, None, now, ttl);
            if let Some(access) = self.access.get_mut(&issued.access_token) {
                access.family = Some(family);
            }
            return Ok(issued);
        }
        record.used = true;
        let refresh_jkt = record.jkt.clone().or_else(|| {
            holder
                .jkt
                .filter(|_| holder.bind_refresh)
                .map(str::to_owned)
        });
        Ok(self.issue_in(holder, Some(family), refresh_jkt.as_deref(), now, ttl))
    }

    pub(super) fn check_access(&self, access_token: &str, now: Instant) -> AccessCheck {
        match self.access.get(access_token) {
            None => AccessCheck::Unknown,
            Some(record) => AccessCheck::Known {
                expired: now >= record.expires_at,
                revoked: record.revoked,
                client_id: record.client_id.clone(),
                jkt: record.jkt.clone(),
            },
        }
    }

    /// Every token issued so far stops working.
    pub(super) fn revoke_all(&mut self) {
        self.access
            .values_mut()
            .for_each(|record| record.revoked = true);
        self.refresh
            .values_mut()
            .for_each(|record| record.revoked = true);
    }

    /// How many families have been revoked for reuse is counted by the caller; this revokes
    /// one: its refresh tokens and the access tokens issued with them.
    fn revoke_family(&mut self, family: u64) {
        self.refresh
            .values_mut()
            .filter(|record| record.family == family)
            .for_each(|record| record.revoked = true);
        self.access
            .values_mut()
            .filter(|record| record.family == Some(family))
            .for_each(|record| record.revoked = true);
    }

    fn issue_in(
        &mut self,
        holder: Holder<'_>,
        family: Option<u64>,
        refresh_jkt: Option<&str>,
        now: Instant,
        ttl: Duration,
    ) -> Issued {
        let client_id = holder.client_id;
        let access_token = self.random_token("mat_", 43);
        // `checked_add` because a test may ask for an absurd ttl such as `Duration::MAX`.
        let expires_at = now
            .checked_add(ttl)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600));
        self.access.insert(
            access_token.clone(),
            AccessRecord {
                expires_at,
                revoked: false,
                client_id: client_id.to_owned(),
                family,
                jkt: holder.jkt.map(str::to_owned),
            },
        );
        let refresh_token = family.map(|family| {
            let token = self.random_token("mrt_", 64);
            self.refresh.insert(
                token.clone(),
                RefreshRecord {
                    family,
                    client_id: client_id.to_owned(),
                    used: false,
                    revoked: false,
                    jkt: refresh_jkt.map(str::to_owned),
                },
            );
            token
        });
        Issued {
            access_token,
            refresh_token,
            expires_in: ttl.as_secs().max(1),
            dpop: holder.jkt.is_some(),
        }
    }

    /// `prefix` and `len` random URL-safe characters: unique in practice (256 bits and more).
    fn random_token(&mut self, prefix: &str, len: usize) -> String {
        let mut token = String::with_capacity(prefix.len() + len);
        token.push_str(prefix);
        self.rng.push_chars(&mut token, rng::BASE64URL, len);
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn rotation_then_reuse_revokes_the_family() {
        let mut ledger = TokenLedger::new();
        let now = Instant::now();
        let first = ledger.issue(Holder::bearer("c"), now, HOUR, true);
        let other = ledger.issue(Holder::bearer("c"), now, HOUR, true);
        let r1 = first.refresh_token.unwrap();
        let second = ledger
            .refresh(&r1, Holder::bearer("c"), now, HOUR, true)
            .ok()
            .unwrap();
        let r2 = second.refresh_token.clone().unwrap();
        assert_ne!(r1, r2);
        assert_eq!(
            ledger
                .refresh(&r1, Holder::bearer("c"), now, HOUR, true)
                .err(),
            Some(RefreshRefusal::Reused)
        );
        // The family is gone: its newest refresh token and its access tokens.
        assert_eq!(
            ledger
                .refresh(&r2, Holder::bearer("c"), now, HOUR, true)
                .err(),
            Some(RefreshRefusal::Revoked)
        );
        assert!(matches!(
            ledger.check_access(&second.access_token, now),
            AccessCheck::Known { revoked: true, .. }
        ));
        // Another family is untouched.
        let r3 = other.refresh_token.unwrap();
        assert!(
            ledger
                .refresh(&r3, Holder::bearer("c"), now, HOUR, true)
                .is_ok()
        );
        assert_eq!(
            ledger
                .refresh(&r3, Holder::bearer("d"), now, HOUR, true)
                .err(),
            Some(RefreshRefusal::OtherClient)
        );
    }

    #[test]
    fn a_bound_refresh_token_needs_its_key_and_binds_its_successor() {
        let mut ledger = TokenLedger::new();
        let now = Instant::now();
        let public = |jkt| Holder {
            client_id: "p",
            jkt,
            bind_refresh: true,
        };
        let first = ledger.issue(public(Some("k1")), now, HOUR, true);
        let r1 = first.refresh_token.unwrap();
        assert!(matches!(
            ledger.check_access(&first.access_token, now),
            AccessCheck::Known { jkt: Some(jkt), .. } if jkt == "k1"
        ));
        for other in [None, Some("k2")] {
            assert_eq!(
                ledger.refresh(&r1, public(other), now, HOUR, true).err(),
                Some(RefreshRefusal::OtherKey)
            );
        }
        let second = ledger
            .refresh(&r1, public(Some("k1")), now, HOUR, true)
            .ok()
            .unwrap();
        let r2 = second.refresh_token.unwrap();
        assert_eq!(
            ledger
                .refresh(&r2, public(Some("k2")), now, HOUR, true)
                .err(),
            Some(RefreshRefusal::OtherKey)
        );
        // A confidential client's refresh token is not bound: its access tokens are.
        let confidential = Holder {
            client_id: "c",
            jkt: Some("k1"),
            bind_refresh: false,
        };
        let r3 = ledger
            .issue(confidential, now, HOUR, true)
            .refresh_token
            .unwrap();
        assert!(
            ledger
                .refresh(&r3, Holder::bearer("c"), now, HOUR, true)
                .is_ok()
        );
    }

    #[test]
    fn without_rotation_the_refresh_token_stays() {
        let mut ledger = TokenLedger::new();
        let now = Instant::now();
        let r1 = ledger
            .issue(Holder::bearer("c"), now, HOUR, true)
            .refresh_token
            .unwrap();
        for _ in 0..3 {
            let issued = ledger
                .refresh(&r1, Holder::bearer("c"), now, HOUR, false)
                .ok()
                .unwrap();
            assert!(issued.refresh_token.is_none());
        }
    }
}
