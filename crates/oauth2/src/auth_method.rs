//! The names of the client authentication methods (RFC 8414's
//! `token_endpoint_auth_method`).

use std::error::Error;
use std::fmt;
use std::str::FromStr;

/// How the client authenticates to the token endpoint: the names are RFC 8414's
/// `token_endpoint_auth_method` values, which [`FromStr`] and [`as_str`](Self::as_str) use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMethod {
    /// `client_secret_basic`: `Authorization: Basic` with the client id and secret, each
    /// form-urlencoded before base64 (RFC 6749 §2.3.1).
    ClientSecretBasic,
    /// `client_secret_post`: `client_id` and `client_secret` in the request body.
    ClientSecretPost,
    /// `private_key_jwt`: a JWT signed with the client's private key (RFC 7523 §2.2), fresh
    /// for each request.
    PrivateKeyJwt,
    /// `none`: a public client, which sends only its `client_id`.
    None,
}

impl AuthMethod {
    /// The method's RFC 8414 name, such as `client_secret_basic`.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::None => "none",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuthMethod {
    type Err = UnknownAuthMethod;

    /// An RFC 8414 name (`client_secret_basic`, `client_secret_post`, `private_key_jwt`,
    /// `none`), as in an `OAUTH2_AUTH_METHOD` variable.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.trim() {
            "client_secret_basic" => Ok(AuthMethod::ClientSecretBasic),
            "client_secret_post" => Ok(AuthMethod::ClientSecretPost),
            "private_key_jwt" => Ok(AuthMethod::PrivateKeyJwt),
            "none" => Ok(AuthMethod::None),
            other => Err(UnknownAuthMethod(
                other.chars().filter(|c| !c.is_control()).take(64).collect(),
            )),
        }
    }
}

/// Text that names no client authentication method this crate knows, from
/// [`AuthMethod`]'s `FromStr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownAuthMethod(String);

impl fmt::Display for UnknownAuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown client authentication method {:?} (expected client_secret_basic, \
             client_secret_post, private_key_jwt or none)",
            self.0
        )
    }
}

impl Error for UnknownAuthMethod {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_round_trip_their_names() {
        for method in [
            AuthMethod::ClientSecretBasic,
            AuthMethod::ClientSecretPost,
            AuthMethod::PrivateKeyJwt,
            AuthMethod::None,
        ] {
            assert_eq!(method.as_str().parse::<AuthMethod>(), Ok(method));
        }
        let unknown = "client_secret_jwt".parse::<AuthMethod>().unwrap_err();
        assert_eq!(unknown, UnknownAuthMethod("client_secret_jwt".into()));
        assert!(unknown.to_string().contains("client_secret_jwt"));
    }
}
