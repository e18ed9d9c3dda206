//! How a server compares a proof's `htu` with the request's URI (RFC 9449 §4.3): both fully
//! normalised.

use std::fmt::Write;

use http::Uri;

/// Full syntax- and scheme-based normalisation (RFC 3986 §6.2.2, §6.2.3), for comparing two
/// `htu`s as RFC 9449 §4.3 says a server does: case, percent-encoding (hex in uppercase,
/// unreserved characters decoded), dot segments, default port, empty path. Query and
/// fragment are dropped. `None` when `text` is not an absolute URI.
pub(super) fn normalise(text: &str) -> Option<String> {
    let uri: Uri = text.parse().ok()?;
    let scheme = uri.scheme_str()?;
    let host = uri.host()?;
    let mut path = String::with_capacity(uri.path().len());
    let raw = uri.path().as_bytes();
    let mut i = 0;
    while i < raw.len() {
        let decoded = match raw[i] {
            b'%' => raw
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok()),
            _ => None,
        };
        match decoded {
            Some(byte) if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) => {
                path.push(byte as char);
                i += 3;
            }
            Some(byte) => {
                let _ = write!(path, "%{byte:02X}");
                i += 3;
            }
            None => {
                // A whole UTF-8 character (the path is a `str`), or one ASCII byte.
                let c = uri.path()[i..].chars().next()?;
                path.push(c);
                i += c.len_utf8();
            }
        }
    }
    let path = remove_dot_segments(&path);
    let mut out = String::new();
    write(scheme, host, uri.port_u16(), &path, &mut out).ok()?;
    Some(out)
}

/// RFC 3986 §5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut output: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." if last => output.push(""),
            "." => {}
            ".." => {
                if output.len() > 1 {
                    output.pop();
                }
                if last {
                    output.push("");
                }
            }
            segment => output.push(segment),
        }
    }
    output.join("/")
}

/// `scheme://host[:port]` and `path`, the port left out when it is the scheme's default.
fn write(
    scheme: &str,
    host: &str,
    port: Option<u16>,
    path: &str,
    out: &mut String,
) -> std::fmt::Result {
    let scheme = scheme.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    };
    write!(out, "{scheme}://{}", host.to_ascii_lowercase())?;
    if let Some(port) = port.filter(|&port| Some(port) != default) {
        write!(out, ":{port}")?;
    }
    if path.is_empty() {
        return out.write_char('/');
    }
    // What RFC 3986 allows in a path (`pchar` and `/`, with `%` kept as it is) stays; any
    // other byte is percent-encoded, as a client writes its `htu`.
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&byte) {
            out.write_char(char::from(byte))?;
        } else {
            write!(out, "%{byte:02X}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_compare_fully_normalised_uris() {
        let same = [
            ("https://as.example/token", "HTTPS://AS.EXAMPLE:443/token"),
            ("https://as.example/a%7Eb", "https://as.example/a~b"),
            ("https://as.example/a%2fb", "https://as.example/a%2Fb"),
            ("https://as.example/a/./b/../c", "https://as.example/a/c"),
            ("https://as.example", "https://as.example/"),
            ("https://as.example/t?x=1", "https://as.example/t"),
        ];
        for (a, b) in same {
            assert_eq!(normalise(a), normalise(b), "{a} {b}");
            assert!(normalise(a).is_some());
        }
        let different = [
            ("https://as.example/token", "http://as.example/token"),
            ("https://as.example/token", "https://as.example:8443/token"),
            ("https://as.example/token", "https://as.example/Token"),
            ("https://as.example/a%2Fb", "https://as.example/a/b"),
            ("https://as.example/token", "https://other.example/token"),
        ];
        for (a, b) in different {
            assert_ne!(normalise(a), normalise(b), "{a} {b}");
        }
        assert_eq!(normalise("/token"), None);
    }
}
