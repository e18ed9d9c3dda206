//! Finding the token endpoint from the issuer: RFC 8414 metadata, then OpenID Connect
//! Discovery's.

use bytes::Bytes;
use http::header::{ACCEPT, HeaderValue, USER_AGENT};
use http::{Request, StatusCode, Uri};
use serde_json::Value;

use crate::endpoint::TokenEndpoint;
use crate::error::{DiscoveryError, MAX_TEXT, MalformedAnswer, OAuth2Error};
use crate::grant_proof::{self as dpop, DpopSettings};
use tower_bearer::RetryAfter;
use tower_bearer_provider as http_client;
use tower_bearer_provider::{
    HttpClient, Malformed, Members, RequestBody, Secrets, is_cleartext, shown_url,
};

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// The URIs the issuer's metadata may be at, in the order they are tried: RFC 8414's
/// (`/.well-known/oauth-authorization-server` inserted before the issuer's path), then
/// OpenID Connect's (`/.well-known/openid-configuration` appended to it).
pub(super) fn metadata_uris(issuer: &Uri) -> [String; 2] {
    let scheme = issuer.scheme_str().unwrap_or("https");
    let authority = issuer
        .authority()
        .map_or("", |authority| authority.as_str());
    let path = issuer.path().trim_end_matches('/');
    [
        format!("{scheme}://{authority}/.well-known/oauth-authorization-server{path}"),
        format!("{scheme}://{authority}{path}/.well-known/openid-configuration"),
    ]
}

/// The issuer's token endpoint, from the first metadata document found; with a DPoP key, the
/// server must accept its algorithm if it says which it accepts. The endpoint may not carry
/// the credentials in clear where the issuer does not ([`check_scheme`]).
pub(super) async fn discover<C, B>(
    client: &mut C,
    issuer: &str,
    allow_cleartext: bool,
    dpop: Option<&DpopSettings>,
) -> Result<TokenEndpoint, OAuth2Error>
where
    C: HttpClient<B>,
    B: RequestBody,
{
    let issuer_uri: Uri = issuer
        .parse()
        .expect("the builder checked the issuer is a URI");
    let mut last = (StatusCode::NOT_FOUND, String::new());
    for uri in metadata_uris(&issuer_uri) {
        let uri: Uri = uri.parse().expect("built from a valid URI");
        let failed = |error, retry_after| OAuth2Error::Discovery {
            error,
            retry_after,
            url: shown_url(&uri),
        };
        let mut request = Request::new(http_client::body::<B>(Bytes::new()));
        *request.uri_mut() = uri.clone();
        request.headers_mut().insert(ACCEPT, JSON);
        request
            .headers_mut()
            .insert(USER_AGENT, http_client::USER_AGENT);
        let unanswered = |error| failed(DiscoveryError::NoAnswer(error), None);
        let answer = http_client::send(client, request)
            .await
            .map_err(unanswered)?;
        if !answer.status.is_success() {
            tracing::debug!(
                uri = %uri,
                status = answer.status.as_u16(),
                "no authorization server metadata"
            );
            last = (answer.status, shown_url(&uri));
            continue;
        }
        let body = answer.body.map_err(unanswered)?;
        return parse_metadata(&body, issuer)
            .and_then(|metadata| {
                check_scheme(&issuer_uri, &metadata.token_endpoint, allow_cleartext)?;
                dpop::check_algorithm(dpop, metadata.dpop_algorithms.as_deref())?;
                Ok(metadata.token_endpoint)
            })
            .map_err(|error| {
                // Metadata that names another issuer, no usable endpoint, a cleartext one, or
                // no DPoP algorithm the key signs with, will say the same next time: only a
                // change of configuration fixes it.
                failed(
                    error,
                    Some(RetryAfter::permanent(
                        "the authorization server's metadata is unusable",
                    )),
                )
            });
    }
    let (status, url) = last;
    Err(OAuth2Error::Discovery {
        error: DiscoveryError::Status(status),
        // A 404 at both URIs is a wrong issuer; a 5xx may pass.
        retry_after: status
            .is_client_error()
            .then(|| RetryAfter::permanent("the issuer has no metadata")),
        url,
    })
}

/// The token endpoint the metadata names may not carry the client's credentials in clear
/// where the issuer does not: an `https` issuer's endpoint is `https` (a downgrade is never
/// taken, on loopback neither), and an `http` issuer's is on loopback, or allowed.
fn check_scheme(
    issuer: &Uri,
    endpoint: &TokenEndpoint,
    allow_cleartext: bool,
) -> Result<(), DiscoveryError> {
    let is_https = |uri: &Uri| {
        uri.scheme_str()
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https"))
    };
    let downgrade = is_https(issuer) && !is_https(&endpoint.uri);
    if downgrade || (is_cleartext(&endpoint.uri) && !allow_cleartext) {
        return Err(DiscoveryError::Cleartext {
            token_endpoint: shown_url(&endpoint.uri),
        });
    }
    Ok(())
}

/// What the provider reads in a metadata document.
#[derive(Debug)]
pub(super) struct Metadata {
    pub(super) token_endpoint: TokenEndpoint,
    /// `dpop_signing_alg_values_supported` (RFC 9449 §5.1), when it is an array of strings;
    /// each cleaned and cut like any text from the server.
    pub(super) dpop_algorithms: Option<Vec<String>>,
}

/// The token endpoint of a metadata document, if its `issuer` is `expected` (RFC 8414 §3.3:
/// identical, character for character), and the DPoP algorithms it lists.
pub(super) fn parse_metadata(body: &[u8], expected: &str) -> Result<Metadata, DiscoveryError> {
    let malformed = |error: Malformed| DiscoveryError::Malformed(error.into());
    let members = Members::parse(body).map_err(malformed)?;
    let issuer = members.string("issuer").map_err(malformed)?;
    if issuer != expected {
        return Err(DiscoveryError::IssuerMismatch {
            expected: expected.to_owned(),
            found: http_client::server_text(issuer, &Secrets::new(), MAX_TEXT),
        });
    }
    let token_endpoint = members.string("token_endpoint").map_err(malformed)?;
    let token_endpoint = TokenEndpoint::parse(token_endpoint).ok_or(DiscoveryError::Malformed(
        MalformedAnswer::NotAUri("token_endpoint"),
    ))?;
    // A list that is not one is ignored rather than refused: a server that breaks this
    // member still issues tokens, and its proofs' fate says the rest.
    let dpop_algorithms = match members.get("dpop_signing_alg_values_supported") {
        Some(Value::Array(values)) => values
            .iter()
            .map(|value| {
                value
                    .as_str()
                    .map(|alg| http_client::server_text(alg, &Secrets::new(), MAX_TEXT))
            })
            .collect(),
        _ => None,
    };
    Ok(Metadata {
        token_endpoint,
        dpop_algorithms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_uris_for_issuers_with_and_without_a_path() {
        let uris = |issuer: &str| metadata_uris(&issuer.parse().unwrap());
        assert_eq!(
            uris("https://as.example"),
            [
                "https://as.example/.well-known/oauth-authorization-server",
                "https://as.example/.well-known/openid-configuration",
            ]
        );
        assert_eq!(uris("https://as.example/"), uris("https://as.example"));
        assert_eq!(
            uris("https://login.example:8443/realms/acme/"),
            [
                "https://login.example:8443/.well-known/oauth-authorization-server/realms/acme",
                "https://login.example:8443/realms/acme/.well-known/openid-configuration",
            ]
        );
    }

    #[test]
    fn metadata_must_name_the_same_issuer_and_a_token_endpoint() {
        let doc = |issuer: &str, endpoint: &str| {
            format!(r#"{{"issuer":"{issuer}","token_endpoint":"{endpoint}","jwks_uri":"x"}}"#)
        };
        let endpoint = parse_metadata(
            doc("https://as.example", "https://as.example/oauth/token").as_bytes(),
            "https://as.example",
        )
        .unwrap();
        assert_eq!(
            endpoint.token_endpoint.url,
            "https://as.example/oauth/token"
        );
        assert_eq!(endpoint.dpop_algorithms, None);

        let with_algs = |algs: &str| {
            let doc = format!(
                r#"{{"issuer":"https://as.example","token_endpoint":"https://as.example/t","dpop_signing_alg_values_supported":{algs}}}"#
            );
            parse_metadata(doc.as_bytes(), "https://as.example")
                .unwrap()
                .dpop_algorithms
        };
        assert_eq!(
            with_algs(r#"["ES256","EdDSA"]"#),
            Some(vec!["ES256".to_owned(), "EdDSA".to_owned()])
        );
        // Not a list of strings: as if absent, rather than a reason to refuse the server.
        for broken in [r#""ES256""#, r#"["ES256",7]"#, "null"] {
            assert_eq!(with_algs(broken), None, "{broken}");
        }

        let mismatch = parse_metadata(
            doc("https://evil.example", "https://evil.example/token").as_bytes(),
            "https://as.example",
        )
        .unwrap_err();
        assert!(matches!(
            &mismatch,
            DiscoveryError::IssuerMismatch { expected, found }
                if expected == "https://as.example" && found == "https://evil.example"
        ));
        // A trailing slash is another issuer (RFC 8414 §3.3): said, not guessed.
        assert!(matches!(
            parse_metadata(
                doc("https://as.example/", "https://as.example/t").as_bytes(),
                "https://as.example"
            ),
            Err(DiscoveryError::IssuerMismatch { .. })
        ));
        assert!(matches!(
            parse_metadata(
                doc("https://as.example", "/relative").as_bytes(),
                "https://as.example"
            ),
            Err(DiscoveryError::Malformed(MalformedAnswer::NotAUri(
                "token_endpoint"
            )))
        ));
        assert!(matches!(
            parse_metadata(br#"{"issuer":"https://as.example"}"#, "https://as.example"),
            Err(DiscoveryError::Malformed(MalformedAnswer::Missing(
                "token_endpoint"
            )))
        ));
        assert!(matches!(
            parse_metadata(b"<html>", "https://as.example"),
            Err(DiscoveryError::Malformed(MalformedAnswer::NotJson(_)))
        ));
    }

    /// Found by the `oauth2_metadata` fuzz target, which took any accepted endpoint to start
    /// with `http`: a scheme is case-insensitive (RFC 3986 §3.1), so `htTps` is https. The
    /// endpoint is sent to as such and kept as the document wrote it (an assertion's `aud`
    /// names it so).
    #[test]
    fn a_token_endpoint_scheme_in_any_case_is_that_scheme() {
        use http::uri::Scheme;

        let fuzzed = br#"{"issuer":"https://as.example","token_endpoint":"htTps://as.es","s_supported":["client_secret_baent_creden]tials","refresh_token"]}"#;
        parse_metadata(fuzzed, "https://as.example").unwrap();
        for (url, scheme) in [
            ("htTps://as.es", Scheme::HTTPS),
            ("HTTP://as.example/t", Scheme::HTTP),
        ] {
            let endpoint = TokenEndpoint::parse(url).unwrap();
            assert_eq!(endpoint.url, url);
            assert_eq!(endpoint.uri.scheme(), Some(&scheme));
        }
    }
}
