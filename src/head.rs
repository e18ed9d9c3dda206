//! A request's head, kept for a retry: what a 401 needs to send the request again.

use http::header::AUTHORIZATION;
use http::request::Parts;
use http::{Extensions, HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};

/// The method, URI, version, extensions and headers of a request as it was sent, less its
/// `Authorization` header (a retry carries a new token).
pub(crate) struct SavedHead {
    method: Method,
    uri: Uri,
    version: Version,
    extensions: Extensions,
    headers: SavedHeaders,
}

impl SavedHead {
    /// Saves `parts`, or `None` for a header value longer than 4 GiB; less its proof header
    /// too, if it has one (a retry carries a new proof).
    pub(crate) fn save(parts: &Parts, proof_header: Option<&HeaderName>) -> Option<SavedHead> {
        Some(SavedHead {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            extensions: parts.extensions.clone(),
            headers: SavedHeaders::save(&parts.headers, proof_header)?,
        })
    }

    /// The URI the request was sent to.
    pub(crate) fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The head again, with its headers in the order they were sent; `None` if a value holds
    /// bytes that a header value parsed from bytes may not (only `unsafe` code can put them
    /// there), since the retry could not send it as it was.
    pub(crate) fn restore(self) -> Option<Parts> {
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = self.method;
        parts.uri = self.uri;
        parts.version = self.version;
        parts.extensions = self.extensions;
        parts.headers = self.headers.restore()?;
        Some(parts)
    }
}

/// A request's headers as they were sent, less its `Authorization` (and proof), for a retry:
/// the tower layer's [`SavedHead`], and the reqwest middleware's copy of a request.
///
/// The headers are copied into one buffer rather than cloned as a `HeaderMap`: every request
/// that may be retried pays for the copy, and a `HeaderMap` clone costs two allocations, plus
/// one for each header value made from a `&str` (its bytes move to a shared buffer on their
/// first clone), and as many frees. The copy is one allocation; the `HeaderMap` is rebuilt
/// only for a retry.
pub(crate) struct SavedHeaders {
    /// For each header in order: the name's length (2 bytes) and the value's (4 bytes), little
    /// endian, whether the value is sensitive (1 byte), then the name and the value.
    buffer: Vec<u8>,
    count: usize,
}

const ENTRY_HEAD: usize = 7;

impl SavedHeaders {
    /// Saves `headers`, or `None` for a value longer than 4 GiB; less the proof header too, if
    /// there is one (a retry carries a new proof).
    pub(crate) fn save(
        headers: &HeaderMap,
        proof_header: Option<&HeaderName>,
    ) -> Option<SavedHeaders> {
        // One pass, into a buffer sized for typical headers: a reallocation is rarer than a
        // second walk of the map is costly.
        let mut buffer = Vec::with_capacity(headers.len() * 48);
        let mut count = 0;
        for (name, value) in headers {
            if name == AUTHORIZATION || proof_header == Some(name) {
                continue;
            }
            let name = name.as_str().as_bytes();
            let value_len = u32::try_from(value.len()).ok()?.to_le_bytes();
            // Header names are at most 64 KiB - 1 long (`http` refuses longer ones).
            let name_len = (name.len() as u16).to_le_bytes();
            buffer.extend_from_slice(&[
                name_len[0],
                name_len[1],
                value_len[0],
                value_len[1],
                value_len[2],
                value_len[3],
                u8::from(value.is_sensitive()),
            ]);
            buffer.extend_from_slice(name);
            buffer.extend_from_slice(value.as_bytes());
            count += 1;
        }
        Some(SavedHeaders { buffer, count })
    }

    /// The headers again, in the order they were sent, with room for the token; `None` if a
    /// value holds bytes that a header value parsed from bytes may not.
    pub(crate) fn restore(self) -> Option<HeaderMap> {
        let mut headers = HeaderMap::with_capacity(self.count + 1);
        let mut rest = self.buffer.as_slice();
        while let Some((head, tail)) = rest.split_first_chunk::<ENTRY_HEAD>() {
            let name_len = usize::from(u16::from_le_bytes([head[0], head[1]]));
            let value_len = u32::from_le_bytes([head[2], head[3], head[4], head[5]]) as usize;
            let (name, tail) = tail.split_at(name_len);
            let (value, tail) = tail.split_at(value_len);
            let name = HeaderName::from_bytes(name).ok()?;
            let mut value = HeaderValue::from_bytes(value).ok()?;
            value.set_sensitive(head[6] != 0);
            headers.append(name, value);
            rest = tail;
        }
        Some(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(request: Request<()>) -> Parts {
        request.into_parts().0
    }

    #[test]
    fn a_head_comes_back_as_it_was_sent_less_its_authorization() {
        let mut secret = HeaderValue::from_static("s3cr3t");
        secret.set_sensitive(true);
        let mut request = Request::post("https://api.test/videos?page=2")
            .version(Version::HTTP_2)
            .header("accept", "application/json")
            .header("x-custom-name", "one")
            .header("x-custom-name", "two")
            .header("authorization", "Bearer old")
            .header("x-api-key", secret.clone())
            .header("empty", "")
            .header("obs-text", HeaderValue::from_bytes(b"caf\xe9\tok").unwrap())
            .body(())
            .unwrap();
        request.extensions_mut().insert(42u32);
        let original = parts(request);

        let restored = SavedHead::save(&original, None).unwrap().restore().unwrap();

        assert_eq!(restored.method, Method::POST);
        assert_eq!(restored.uri, original.uri);
        assert_eq!(restored.version, Version::HTTP_2);
        assert_eq!(restored.extensions.get::<u32>(), Some(&42));
        let sent: Vec<_> = original
            .headers
            .iter()
            .filter(|(name, _)| *name != AUTHORIZATION)
            .collect();
        let again: Vec<_> = restored.headers.iter().collect();
        assert_eq!(sent, again);
        assert!(restored.headers["x-api-key"].is_sensitive());
        assert!(!restored.headers["accept"].is_sensitive());
        assert!(!restored.headers.contains_key(AUTHORIZATION));
    }

    #[test]
    fn a_head_without_headers_comes_back_empty() {
        let original = parts(Request::get("/").body(()).unwrap());
        let restored = SavedHead::save(&original, None).unwrap().restore().unwrap();
        assert!(restored.headers.is_empty());
        assert_eq!(restored.uri, "/");
    }
}
