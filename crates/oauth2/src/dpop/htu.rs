//! `htu`: the request's URI without query and fragment (RFC 9449 §4.2), normalised.

use std::fmt::{self, Write};

use http::Uri;

/// Writes the `htu` of `uri` to `out`: scheme and host in lowercase, the port only when it is
/// not the scheme's default, the path (`/` when empty), no user info, query or fragment.
///
/// These are the scheme-based and case normalisations of RFC 3986 §6, which every server
/// applies alike. The path is sent as it is on the request line, so that a server that
/// compares it byte for byte (more common than RFC 9449 §4.3 would like) also agrees; only
/// the few bytes that may not appear in a URI at all (which `http::Uri` lets through: `"`,
/// `{`, `}`, `\`, non-ASCII) are percent-encoded, as a server's URL parser would read them.
///
/// `None` for a URI without scheme or host (origin-form): it has no `htu`.
pub(crate) fn write_htu(uri: &Uri, out: &mut impl Write) -> Option<fmt::Result> {
    let scheme = uri.scheme_str()?;
    let host = uri.host()?;
    Some(write(scheme, host, uri.port_u16(), uri.path(), out))
}

fn write(
    scheme: &str,
    host: &str,
    port: Option<u16>,
    path: &str,
    out: &mut impl Write,
) -> fmt::Result {
    write_lowercase(scheme, out)?;
    out.write_str("://")?;
    write_lowercase(host, out)?;
    if let Some(port) = port.filter(|port| Some(*port) != default_port(scheme)) {
        write!(out, ":{port}")?;
    }
    if path.is_empty() {
        return out.write_char('/');
    }
    // Runs of allowed bytes are written whole: the path is nearly always all of them.
    let mut start = 0;
    for (i, byte) in path.bytes().enumerate() {
        if !is_uri_path_byte(byte) {
            out.write_str(&path[start..i])?;
            write!(out, "%{byte:02X}")?;
            start = i + 1;
        }
    }
    out.write_str(&path[start..])
}

fn write_lowercase(text: &str, out: &mut impl Write) -> fmt::Result {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        for c in text.chars() {
            out.write_char(c.to_ascii_lowercase())?;
        }
        Ok(())
    } else {
        out.write_str(text)
    }
}

/// The ports schemes imply (RFC 9110 §4.2).
pub(crate) fn default_port(scheme: &str) -> Option<u16> {
    if scheme.eq_ignore_ascii_case("https") {
        Some(443)
    } else if scheme.eq_ignore_ascii_case("http") {
        Some(80)
    } else {
        None
    }
}

/// RFC 3986 `pchar` and `/`, with `%` (an escape already there is kept as it is).
fn is_uri_path_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&byte)
}

/// The `htu` of `uri`, as [`write_htu`] writes it.
#[cfg(test)]
pub(crate) fn htu(uri: &Uri) -> Option<String> {
    let mut out = String::new();
    write_htu(uri, &mut out)?.ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htu_normalisation_table() {
        let table = [
            ("https://as.example/token", "https://as.example/token"),
            ("HTTPS://AS.Example/Token", "https://as.example/Token"),
            ("https://as.example:443/token", "https://as.example/token"),
            ("http://as.example:80/token", "http://as.example/token"),
            ("https://as.example:80/token", "https://as.example:80/token"),
            ("http://as.example:443/token", "http://as.example:443/token"),
            ("https://as.example:8443/t", "https://as.example:8443/t"),
            ("https://as.example", "https://as.example/"),
            ("https://as.example?x=1", "https://as.example/"),
            ("https://as.example/a/b?x=1&y=2", "https://as.example/a/b"),
            ("https://user:pw@as.example/t", "https://as.example/t"),
            ("http://127.0.0.1:8080/api", "http://127.0.0.1:8080/api"),
            ("http://[::1]:80/", "http://[::1]/"),
            ("http://[::1]:8080/", "http://[::1]:8080/"),
            ("https://as.example/a%2fb", "https://as.example/a%2fb"),
            ("https://as.example/a/../b", "https://as.example/a/../b"),
            (
                "https://as.example/{\"q\"}",
                "https://as.example/%7B%22q%22%7D",
            ),
            (
                "https://as.example/caf%C3%A9",
                "https://as.example/caf%C3%A9",
            ),
        ];
        for (uri, expected) in table {
            let uri: Uri = uri.parse().unwrap();
            assert_eq!(htu(&uri).as_deref(), Some(expected), "{uri}");
        }
        assert_eq!(htu(&"/token".parse().unwrap()), None);
        // http::Uri already gives an absolute URI's empty path as "/"; in case it stops:
        let mut out = String::new();
        write("https", "as.example", None, "", &mut out).unwrap();
        assert_eq!(out, "https://as.example/");
        assert_eq!(htu(&"as.example:443".parse().unwrap()), None);
    }
}
