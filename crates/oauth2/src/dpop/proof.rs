//! Writing one proof (RFC 9449 §4.2): the claims, and the JWS around them.

use std::fmt::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderValue, Method, Uri};
use ring::digest;

use super::error::{ProofError, ProofErrorKind};
use super::htu::write_htu;
use crate::jose::{self, SigningKey};

/// `ath`: base64url of the SHA-256 of an access token (RFC 9449 §4.2), 43 characters.
///
/// A token is sent many times: its hash is worth computing once and keeping beside it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct AccessTokenHash([u8; 43]);

impl AccessTokenHash {
    pub(crate) fn of(access_token: &str) -> AccessTokenHash {
        let digest = digest::digest(&digest::SHA256, access_token.as_bytes());
        let mut encoded = [0; 43];
        // 32 bytes are always 43 characters.
        let _ = URL_SAFE_NO_PAD.encode_slice(digest, &mut encoded);
        AccessTokenHash(encoded)
    }

    pub(crate) fn as_str(&self) -> &str {
        // base64url is ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for AccessTokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AccessTokenHash")
            .field(&self.as_str())
            .finish()
    }
}

/// The claims of a typical proof fit here, so they are written without an allocation; a long
/// URI or nonce falls back to the heap.
const INLINE_CLAIMS: usize = 768;

/// A proof for one request: `encoded_header` is the key's header, already base64url-encoded;
/// `nonce`, if any, is `1*NQCHAR`.
pub(super) fn proof(
    key: &SigningKey,
    encoded_header: &str,
    method: &Method,
    uri: &Uri,
    ath: Option<&AccessTokenHash>,
    nonce: Option<&str>,
) -> Result<HeaderValue, ProofError> {
    if uri.scheme().is_none() || uri.host().is_none() {
        return Err(ProofError::new(ProofErrorKind::NoOrigin));
    }
    let mut jti = [0; 22];
    let random =
        jose::try_random_bytes::<16>().map_err(|e| ProofError::new(ProofErrorKind::Signing(e)))?;
    // 16 bytes are always 22 characters.
    let _ = URL_SAFE_NO_PAD.encode_slice(random, &mut jti);
    let claims = Claims {
        // base64url is ASCII.
        jti: std::str::from_utf8(&jti).unwrap_or_default(),
        method,
        uri,
        iat: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs()),
        ath,
        nonce,
    };
    let mut inline = InlineText::<INLINE_CLAIMS>::new();
    let jws = match claims.write(&mut inline) {
        Ok(()) => jose::sign_encoded(key, encoded_header, inline.as_bytes()),
        Err(fmt::Error) => {
            // Room for the fixed claims, a path percent-encoded throughout, and the nonce: one
            // allocation (tests/dpop_allocations.rs).
            let len = INLINE_CLAIMS + 3 * uri.path().len() + nonce.map_or(0, str::len);
            let mut heap = String::with_capacity(len);
            // A String takes any length.
            let _ = claims.write(&mut heap);
            jose::sign_encoded(key, encoded_header, heap.as_bytes())
        }
    }
    .map_err(|e| ProofError::new(ProofErrorKind::Signing(e)))?;
    // `sign_encoded` allocated exactly the JWS's length, so the header value takes the buffer
    // over without another allocation or a copy.
    let mut value = HeaderValue::from_maybe_shared(Bytes::from(jws))
        .expect("a compact JWS is base64url and dots: visible ASCII");
    // Not a bearer secret (it is bound to this request and expires), but unique per request:
    // HTTP/2 must not index it in HPACK's table, where it would only evict headers that repeat.
    value.set_sensitive(true);
    Ok(value)
}

struct Claims<'a> {
    jti: &'a str,
    method: &'a Method,
    uri: &'a Uri,
    iat: u64,
    ath: Option<&'a AccessTokenHash>,
    /// Checked to be `1*NQCHAR`.
    nonce: Option<&'a str>,
}

impl Claims<'_> {
    /// The claims as JSON. Written by hand rather than through a `serde_json::Value`: every
    /// value is base64url, a method token, a number, a nonce (no `"` nor `\`) or the `htu`
    /// (percent-encoded where a URI may not hold a byte), so nothing needs escaping.
    ///
    /// Fails only when `out` is full (the URI's origin was checked before).
    fn write(&self, out: &mut impl Write) -> fmt::Result {
        out.write_str(r#"{"jti":""#)?;
        out.write_str(self.jti)?;
        out.write_str(r#"","htm":""#)?;
        out.write_str(self.method.as_str())?;
        out.write_str(r#"","htu":""#)?;
        write_htu(self.uri, out).unwrap_or(Err(fmt::Error))?;
        write!(out, r#"","iat":{}"#, self.iat)?;
        if let Some(ath) = self.ath {
            out.write_str(r#","ath":""#)?;
            out.write_str(ath.as_str())?;
            out.write_char('"')?;
        }
        if let Some(nonce) = self.nonce {
            out.write_str(r#","nonce":""#)?;
            out.write_str(nonce)?;
            out.write_char('"')?;
        }
        out.write_char('}')
    }
}

/// Text on the stack; a write past its end fails rather than allocating.
struct InlineText<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> InlineText<N> {
    fn new() -> Self {
        InlineText {
            bytes: [0; N],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl<const N: usize> Write for InlineText<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.bytes
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}
