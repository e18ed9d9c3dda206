//! Server-provided nonces (RFC 9449 §8, §9), kept per origin.

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::header::{HeaderMap, HeaderName};
use http::{HeaderValue, Uri};

use super::htu::default_port;

/// The header a server sends its nonce in.
pub(crate) static DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// Longer nonces are refused: a nonce goes into every proof, and no server needs this much.
const MAX_NONCE_LEN: usize = 1024;

/// At most this many origins are remembered; past it the oldest is forgotten, which costs it
/// one more nonce challenge. A client talks to a handful of DPoP origins.
const MAX_ORIGINS: usize = 64;

/// A nonce as RFC 9449 §8.1 defines it: `1*NQCHAR`, that is visible ASCII but `"` and `\`.
/// Nothing in it needs escaping in JSON.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct DpopNonce(Arc<str>);

impl DpopNonce {
    pub(crate) fn new(text: &str) -> Option<DpopNonce> {
        is_valid(text).then(|| DpopNonce(Arc::from(text)))
    }

    pub(crate) fn from_header(value: &HeaderValue) -> Option<DpopNonce> {
        DpopNonce::new(value.to_str().ok()?)
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `text` is a nonce we send: `1*NQCHAR`, at most [`MAX_NONCE_LEN`] bytes.
pub(crate) fn is_valid(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_NONCE_LEN
        && text
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

impl std::fmt::Debug for DpopNonce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A nonce is no secret: it is sent in the clear to whoever asks.
        f.debug_tuple("DpopNonce").field(&&*self.0).finish()
    }
}

/// An origin as the nonce store keys it: lowercase scheme and host, and the port made explicit.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Origin {
    scheme: Box<str>,
    host: Box<str>,
    port: u16,
}

impl Origin {
    fn of(uri: &Uri) -> Option<Origin> {
        let scheme = uri.scheme_str()?;
        Some(Origin {
            scheme: scheme.to_ascii_lowercase().into(),
            host: uri.host()?.to_ascii_lowercase().into(),
            port: uri.port_u16().or_else(|| default_port(scheme))?,
        })
    }

    /// Compares without building an `Origin`: this is on every proof's path.
    fn matches(&self, uri: &Uri) -> bool {
        let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return false;
        };
        self.scheme.eq_ignore_ascii_case(scheme)
            && self.host.eq_ignore_ascii_case(host)
            && uri.port_u16().or_else(|| default_port(scheme)) == Some(self.port)
    }
}

/// The latest nonce each origin gave, shared by every request to it.
///
/// Reads (one per proof) are a lock-free load and a scan of a few entries; writes copy the
/// list, and happen only when an origin's nonce changes, not on every response that repeats
/// it.
#[derive(Debug, Default)]
pub(crate) struct NonceStore {
    origins: ArcSwap<Vec<(Origin, DpopNonce)>>,
}

impl NonceStore {
    pub(crate) fn new() -> NonceStore {
        NonceStore::default()
    }

    /// The nonce to put in a proof for `uri`, if its origin has given one.
    pub(crate) fn get(&self, uri: &Uri) -> Option<DpopNonce> {
        self.origins
            .load()
            .iter()
            .find(|(origin, _)| origin.matches(uri))
            .map(|(_, nonce)| nonce.clone())
    }

    /// Takes the `DPoP-Nonce` of any response from `uri`'s origin (a success, a
    /// `use_dpop_nonce` challenge, or any other answer), if it is a valid nonce. Says whether
    /// the origin's nonce changed.
    pub(crate) fn update(&self, uri: &Uri, headers: &HeaderMap) -> bool {
        match headers.get(&DPOP_NONCE).and_then(DpopNonce::from_header) {
            Some(nonce) => self.set(uri, nonce),
            None => false,
        }
    }

    /// Remembers `nonce` for `uri`'s origin; says whether it changed.
    pub(crate) fn set(&self, uri: &Uri, nonce: DpopNonce) -> bool {
        if self.get(uri).as_ref() == Some(&nonce) {
            return false;
        }
        let Some(origin) = Origin::of(uri) else {
            return false;
        };
        self.origins.rcu(|origins| {
            let mut origins: Vec<_> = origins
                .iter()
                .filter(|(known, _)| *known != origin)
                .cloned()
                .collect();
            if origins.len() == MAX_ORIGINS {
                origins.remove(0);
            }
            origins.push((origin.clone(), nonce.clone()));
            origins
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(text: &str) -> Uri {
        text.parse().unwrap()
    }

    fn nonce(text: &str) -> DpopNonce {
        DpopNonce::new(text).unwrap()
    }

    #[test]
    fn nonces_are_nqchar() {
        for ok in ["eyJ7S_zG.eyJH0-Z.HX4w-7v", "!#[]~", "a", &"n".repeat(1024)] {
            assert!(DpopNonce::new(ok).is_some(), "{ok}");
        }
        for bad in ["", "a b", "a\"b", "a\\b", "a\tb", "é", &"n".repeat(1025)] {
            assert!(DpopNonce::new(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn nonces_are_kept_per_origin() {
        let store = NonceStore::new();
        assert_eq!(store.get(&uri("https://as.example/token")), None);
        assert!(store.set(&uri("https://as.example/token"), nonce("n1")));
        // Same origin: any path, any case, the default port spelled out or not.
        for same in [
            "https://as.example/other?q",
            "HTTPS://AS.EXAMPLE/",
            "https://as.example:443/x",
        ] {
            assert_eq!(store.get(&uri(same)), Some(nonce("n1")), "{same}");
        }
        for other in [
            "http://as.example/token",
            "https://as.example:8443/token",
            "https://rs.example/token",
            "/token",
        ] {
            assert_eq!(store.get(&uri(other)), None, "{other}");
        }
        assert!(store.set(&uri("https://rs.example/api"), nonce("r1")));
        assert_eq!(store.get(&uri("https://rs.example/")), Some(nonce("r1")));
        assert_eq!(store.get(&uri("https://as.example/")), Some(nonce("n1")));
    }

    #[test]
    fn responses_update_the_nonce_only_when_it_changes_and_is_valid() {
        let store = NonceStore::new();
        let api = uri("https://rs.example/api");
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(DPOP_NONCE.clone(), HeaderValue::from_static(value));
            headers
        };
        assert!(store.update(&api, &with("n1")));
        assert!(!store.update(&api, &with("n1")), "the same nonce again");
        assert!(!store.update(&api, &HeaderMap::new()), "no header keeps it");
        assert!(
            !store.update(&api, &with("bad nonce")),
            "an invalid one is ignored"
        );
        assert_eq!(store.get(&api), Some(nonce("n1")));
        assert!(store.update(&api, &with("n2")));
        assert_eq!(store.get(&api), Some(nonce("n2")));
        assert!(!store.update(&uri("/relative"), &with("n3")));
    }

    #[test]
    fn the_oldest_origin_is_forgotten_past_the_bound() {
        let store = NonceStore::new();
        for i in 0..=MAX_ORIGINS {
            store.set(&uri(&format!("https://h{i}.example/")), nonce("n"));
        }
        assert_eq!(store.get(&uri("https://h0.example/")), None);
        assert!(store.get(&uri("https://h1.example/")).is_some());
        assert!(
            store
                .get(&uri(&format!("https://h{MAX_ORIGINS}.example/")))
                .is_some()
        );
        assert_eq!(store.origins.load().len(), MAX_ORIGINS);
    }
}
