//! Which requests get a token: the origins a token may be sent to.

use std::fmt;
use std::sync::Arc;

use http::Uri;
use http::uri::{Authority, Scheme};

/// The requests a token is attached to; any other passes through with none.
///
/// A bearer token must never reach a host it was not issued for: a pre-signed upload URL, a
/// CDN, a redirect to a third party. Every layer and middleware is built with a `Scope`, so
/// that where the token goes is a decision written down, not a default:
///
/// | the client | its scope |
/// | --- | --- |
/// | sends to one API, and maybe elsewhere (uploads, CDNs, redirects) | [`Scope::origin`]: the API's `scheme://host[:port]` |
/// | sends to several APIs of the same account | [`Scope::origins`] |
/// | cannot send anywhere but one origin (a connection, a gRPC channel) | [`Scope::any`] |
/// | decides by more than the origin | [`Scope::predicate`] |
///
/// A provider that knows its API's origin builds a layer scoped to it (`into_layer`).
///
/// A request whose URI has no scheme and host (an origin-form URI, as on a connection already
/// bound to a host) is outside every origin scope, except for the gRPC layer
/// (`tonic::GrpcAuthLayer`), which sits in front of one channel: there a scope of one origin
/// is the channel's, and a path-only URI counts as that origin.
///
/// A request sent without the token because it is out of scope is counted
/// ([`Stats::out_of_scope`](crate::Stats::out_of_scope)), and the first one is logged as a
/// warning: a layer that never attaches its token is a misconfiguration to be seen.
///
/// ```
/// use tower_bearer::Scope;
///
/// let scope = Scope::origin("https://ws.api.video")?;
/// assert!(scope.allows(&"https://ws.api.video/videos?currentPage=2".parse()?));
/// assert!(scope.allows(&"https://WS.api.video:443/videos".parse()?));
/// assert!(!scope.allows(&"http://ws.api.video/videos".parse()?));
/// assert!(!scope.allows(&"https://upload.example.net/signed".parse()?));
/// assert!(!scope.allows(&"/videos".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Scope {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Any,
    Origins(Arc<[Origin]>),
    /// One origin, that of a channel: a path-only URI counts as it.
    Channel(Arc<Origin>),
    Predicate(Arc<dyn Fn(&Uri) -> bool + Send + Sync>),
}

/// An origin: scheme, lowercase host, and port (made explicit).
#[derive(Clone, PartialEq, Eq)]
struct Origin {
    scheme: Scheme,
    host: String,
    port: u16,
    /// As given, less any userinfo: what a path-only URI is made absolute with.
    authority: Authority,
}

impl Scope {
    /// Every request gets the token, wherever it goes: for a client that cannot send
    /// anywhere but one origin (a connection bound to a host, a gRPC channel), or that you
    /// trust with the token everywhere.
    pub fn any() -> Self {
        Scope { kind: Kind::Any }
    }

    /// Only requests to this origin (`scheme://host[:port]`; any path is ignored).
    pub fn origin<U>(origin: U) -> Result<Self, InvalidOrigin>
    where
        U: TryInto<Uri>,
    {
        Scope::origins([origin])
    }

    /// Only requests to one of these origins.
    pub fn origins<I, U>(origins: I) -> Result<Self, InvalidOrigin>
    where
        I: IntoIterator<Item = U>,
        U: TryInto<Uri>,
    {
        let origins = origins
            .into_iter()
            .map(|uri| {
                let uri = uri.try_into().map_err(|_| InvalidOrigin(()))?;
                Origin::of(&uri).ok_or(InvalidOrigin(()))
            })
            .collect::<Result<Arc<[Origin]>, _>>()?;
        Ok(Scope {
            kind: Kind::Origins(origins),
        })
    }

    /// The requests for which `allows` returns true.
    pub fn predicate<F>(allows: F) -> Self
    where
        F: Fn(&Uri) -> bool + Send + Sync + 'static,
    {
        Scope {
            kind: Kind::Predicate(Arc::new(allows)),
        }
    }

    /// Whether a request to `uri` gets the token.
    #[inline]
    pub fn allows(&self, uri: &Uri) -> bool {
        match &self.kind {
            Kind::Any => true,
            Kind::Origins(origins) => {
                let (Some(scheme), Some(host)) = (uri.scheme(), uri.host()) else {
                    return false;
                };
                let port = uri.port_u16().or_else(|| default_port(scheme));
                origins
                    .iter()
                    .any(|origin| origin.matches(scheme.as_str(), host, port))
            }
            Kind::Channel(origin) => match (uri.scheme(), uri.host()) {
                (None, None) => true,
                (Some(scheme), Some(host)) => {
                    let port = uri.port_u16().or_else(|| default_port(scheme));
                    origin.matches(scheme.as_str(), host, port)
                }
                _ => false,
            },
            Kind::Predicate(allows) => allows(uri),
        }
    }

    /// The scope of a layer in front of one channel: a scope of one origin becomes that
    /// channel's, which path-only URIs count as; any other is as it was.
    pub(crate) fn for_channel(self) -> Scope {
        match &self.kind {
            Kind::Origins(origins) if origins.len() == 1 => Scope {
                kind: Kind::Channel(Arc::new(origins[0].clone())),
            },
            _ => self,
        }
    }

    /// `uri` made absolute with the channel's origin, for a path-only URI in a channel's
    /// scope: what a proof names. `None` for any other.
    pub(crate) fn absolute(&self, uri: &Uri) -> Option<Uri> {
        let Kind::Channel(origin) = &self.kind else {
            return None;
        };
        if uri.scheme().is_some() || uri.authority().is_some() {
            return None;
        }
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(origin.scheme.clone());
        parts.authority = Some(origin.authority.clone());
        parts.path_and_query = uri.path_and_query().cloned();
        Uri::from_parts(parts).ok()
    }

    /// Whether a request to `scheme://host:port` gets the token, for a client whose URLs are
    /// not [`Uri`]s (reqwest's): the same decision as [`allows`](Self::allows), from the
    /// parts an origin scope compares, so that the hot path parses nothing. `port` is the
    /// URL's, or its scheme's default; `uri` is called only for a predicate, which is given
    /// the whole URI (a URL that is no valid `Uri` gets no token).
    #[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
    #[inline]
    pub(crate) fn allows_origin(
        &self,
        scheme: &str,
        host: Option<&str>,
        port: Option<u16>,
        uri: impl FnOnce() -> Option<Uri>,
    ) -> bool {
        match &self.kind {
            Kind::Any => true,
            Kind::Origins(origins) => host.is_some_and(|host| {
                origins
                    .iter()
                    .any(|origin| origin.matches(scheme, host, port))
            }),
            Kind::Channel(origin) => host.is_some_and(|host| origin.matches(scheme, host, port)),
            Kind::Predicate(allows) => uri().is_some_and(|uri| allows(&uri)),
        }
    }
}

impl Origin {
    fn of(uri: &Uri) -> Option<Origin> {
        let scheme = uri.scheme()?.clone();
        let host = uri.host()?.to_ascii_lowercase();
        let port = uri.port_u16().or_else(|| default_port(&scheme))?;
        let authority = match uri.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        }
        .parse()
        .ok()?;
        Some(Origin {
            scheme,
            host,
            port,
            authority,
        })
    }

    /// Whether a URI with this scheme, host and port (explicit, or the scheme's default) is
    /// of this origin. Schemes and hosts compare in any case.
    fn matches(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        scheme.eq_ignore_ascii_case(self.scheme.as_str())
            && host.eq_ignore_ascii_case(&self.host)
            && port == Some(self.port)
    }
}

/// A request's URI as a log may show it: scheme, host, port and path, without the userinfo
/// and the query, which may carry credentials (a pre-signed URL's signature).
pub(crate) struct WithoutSecrets<'a>(pub(crate) &'a Uri);

impl fmt::Display for WithoutSecrets<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let uri = self.0;
        if let (Some(scheme), Some(host)) = (uri.scheme(), uri.host()) {
            write!(f, "{scheme}://{host}")?;
            if let Some(port) = uri.port() {
                write!(f, ":{port}")?;
            }
        }
        f.write_str(uri.path())
    }
}

/// Whether two URIs are of one origin: scheme, host (in any case) and port (explicit, or the
/// scheme's default). Two path-only URIs are of one origin, the connection's.
pub(crate) fn same_origin(a: &Uri, b: &Uri) -> bool {
    let port = |uri: &Uri| {
        uri.port_u16()
            .or_else(|| uri.scheme().and_then(default_port))
    };
    a.scheme() == b.scheme()
        && match (a.host(), b.host()) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a == b,
        }
        && port(a) == port(b)
}

/// The origin of `uri`, `scheme://host[:port]` in lower case with the scheme's default port
/// left out: one text for every URI of one origin. `None` for a URI with no scheme or host.
pub(crate) fn origin_of(uri: &Uri) -> Option<String> {
    use std::fmt::Write;

    let (scheme, host) = (uri.scheme()?, uri.host()?);
    let default = default_port(scheme);
    let port = uri.port_u16().or(default)?;
    let mut origin = String::with_capacity(scheme.as_str().len() + 3 + host.len() + 6);
    origin.push_str(scheme.as_str());
    origin.push_str("://");
    origin.push_str(host);
    origin.make_ascii_lowercase();
    if Some(port) != default {
        // Writing to a String cannot fail.
        let _ = write!(origin, ":{port}");
    }
    Some(origin)
}

fn default_port(scheme: &Scheme) -> Option<u16> {
    if *scheme == Scheme::HTTPS {
        Some(443)
    } else if *scheme == Scheme::HTTP {
        Some(80)
    } else {
        None
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Any => f.write_str("Scope::Any"),
            Kind::Origins(origins) => f
                .debug_tuple("Scope::Origins")
                .field(&origins.iter().map(|o| format!("{o:?}")).collect::<Vec<_>>())
                .finish(),
            Kind::Channel(origin) => f.debug_tuple("Scope::Channel").field(origin).finish(),
            Kind::Predicate(_) => f.write_str("Scope::Predicate"),
        }
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// A scope's origin was not an absolute `http` or `https` URI with a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidOrigin(());

impl fmt::Display for InvalidOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an origin must be an absolute URI with a scheme and a host")
    }
}

impl std::error::Error for InvalidOrigin {}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn origins_match_scheme_host_and_port() {
        let scope =
            Scope::origins(["http://127.0.0.1:8080", "https://api.example.com/ignored"]).unwrap();
        assert!(scope.allows(&uri("http://127.0.0.1:8080/a?b")));
        assert!(!scope.allows(&uri("http://127.0.0.1:8081/a")));
        assert!(!scope.allows(&uri("https://127.0.0.1:8080/a")));
        assert!(scope.allows(&uri("https://API.example.com/x")));
        assert!(scope.allows(&uri("https://api.example.com:443/x")));
        assert!(!scope.allows(&uri("https://api.example.com.evil.net/x")));
        assert!(!scope.allows(&uri("https://evil.net/api.example.com")));
    }

    #[test]
    fn bad_origins_are_errors() {
        assert!(Scope::origin("/relative").is_err());
        assert!(Scope::origin("not a uri").is_err());
        assert!(Scope::origin("ftp://host").is_err());
    }

    #[test]
    fn an_origin_without_a_port_has_its_schemes_default_port() {
        let scope = Scope::origins(["http://api.test", "https://secure.test"]).unwrap();
        assert!(scope.allows(&uri("http://api.test/a")));
        assert!(scope.allows(&uri("http://api.test:80/a")));
        assert!(!scope.allows(&uri("http://api.test:443/a")));
        assert!(scope.allows(&uri("https://secure.test:443/a")));
        assert!(!scope.allows(&uri("https://secure.test:80/a")));
    }

    #[test]
    fn a_channels_scope_is_its_one_origin_and_makes_path_only_uris_absolute() {
        let channel = Scope::origin("https://api.test:8443")
            .unwrap()
            .for_channel();
        assert!(channel.allows(&uri("/pkg.Service/Method")));
        assert!(channel.allows(&uri("https://api.test:8443/pkg.Service/Method")));
        assert!(!channel.allows(&uri("https://other.test:8443/pkg.Service/Method")));
        assert_eq!(
            channel.absolute(&uri("/pkg.Service/Method?x=1")).unwrap(),
            "https://api.test:8443/pkg.Service/Method?x=1"
        );
        assert_eq!(channel.absolute(&uri("https://api.test:8443/a")), None);

        // Two origins are no channel's: each keeps its place.
        let two = Scope::origins(["https://a.test", "https://b.test"])
            .unwrap()
            .for_channel();
        assert!(two.allows(&uri("https://b.test/x")));
        assert!(!two.allows(&uri("/x")));
        assert_eq!(two.absolute(&uri("/x")), None);
    }

    #[test]
    fn answers_from_path_only_uris_are_of_the_same_origin() {
        // A request through a channel keeps its path-only URI below the layer.
        assert!(same_origin(&uri("/a"), &uri("/b")));
        assert!(!same_origin(&uri("/a"), &uri("https://api.test/a")));
        assert!(same_origin(
            &uri("https://API.test/a"),
            &uri("https://api.test:443/b")
        ));
        assert!(!same_origin(
            &uri("http://api.test/a"),
            &uri("https://api.test/a")
        ));
    }

    #[test]
    fn debug_output_names_the_origins_and_display_the_uri_without_secrets() {
        let origins = Scope::origins(["https://a.test", "http://b.test:8080"]).unwrap();
        assert_eq!(
            format!("{origins:?}"),
            r#"Scope::Origins(["https://a.test:443", "http://b.test:8080"])"#
        );
        assert_eq!(
            format!(
                "{:?}",
                Scope::origin("https://a.test").unwrap().for_channel()
            ),
            "Scope::Channel(https://a.test:443)"
        );
        assert_eq!(format!("{:?}", Scope::any()), "Scope::Any");
        assert_eq!(
            format!("{:?}", Scope::predicate(|_| true)),
            "Scope::Predicate"
        );
        assert_eq!(
            WithoutSecrets(&uri("https://user:pw@api.test:8443/v?sig=s3cr3t")).to_string(),
            "https://api.test:8443/v"
        );
        assert_eq!(
            Scope::origin("/relative").unwrap_err().to_string(),
            "an origin must be an absolute URI with a scheme and a host"
        );
    }

    #[test]
    fn predicate_and_any() {
        let scope = Scope::predicate(|u| u.path().starts_with("/api/"));
        assert!(scope.allows(&uri("/api/x")));
        assert!(!scope.allows(&uri("/other")));
        assert!(Scope::any().allows(&uri("/anything")));
    }
}
