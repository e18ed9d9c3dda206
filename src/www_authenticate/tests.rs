use std::borrow::Cow;

use http::header::WWW_AUTHENTICATE;
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use regex::bytes::Regex;

use super::promises::{self, OwnedChallenge};
use super::{InvalidChallenge, challenges, parse};

/// `scheme`, then `name=value` pairs, or `scheme` and a token68 written as `~token68`.
fn challenge(scheme: &str, rest: &[&str]) -> OwnedChallenge {
    let mut challenge = OwnedChallenge {
        scheme: scheme.to_owned(),
        token68: None,
        params: Vec::new(),
    };
    for part in rest {
        match part.strip_prefix('~') {
            Some(token68) => challenge.token68 = Some(token68.to_owned()),
            None => {
                let (name, value) = part.split_once('=').expect("name=value");
                challenge.params.push((name.to_owned(), value.to_owned()));
            }
        }
    }
    challenge
}

/// RFC 9110's grammar, as a regular expression written apart from the parser.
fn well_formed(value: &[u8]) -> bool {
    thread_local! {
        static GRAMMAR: Regex = Regex::new(&promises::grammar()).unwrap();
    }
    GRAMMAR.with(|grammar| grammar.is_match(value))
}

/// The parser and the grammar agree on whether `value` is well-formed.
#[track_caller]
fn agree(value: &[u8]) -> bool {
    let read_whole = promises::check(value);
    let well_formed = well_formed(value);
    assert_eq!(
        read_whole,
        well_formed,
        "read whole: {read_whole}, grammar: {well_formed}, {:?} read as {:?}",
        String::from_utf8_lossy(value),
        promises::read(value),
    );
    read_whole
}

fn read_ok(value: &str) -> Vec<OwnedChallenge> {
    promises::read(value.as_bytes())
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|_| panic!("{value:?} is well-formed"))
}

#[track_caller]
fn reads(value: &str, expected: &[OwnedChallenge]) {
    assert_eq!(read_ok(value), expected, "{value:?}");
    assert!(agree(value.as_bytes()));
}

// ===== the RFCs' own examples =====

#[test]
fn rfc9110_two_challenges_in_one_line() {
    reads(
        r#"Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple""#,
        &[
            challenge(
                "Newauth",
                &["realm=apps", "type=1", r#"title=Login to "apps""#],
            ),
            challenge("Basic", &["realm=simple"]),
        ],
    );
}

#[test]
fn rfc6750_bearer_challenges() {
    reads(
        r#"Bearer realm="example""#,
        &[challenge("Bearer", &["realm=example"])],
    );
    reads(
        "Bearer realm=\"example\",\r\n error=\"invalid_token\",\r\n error_description=\"The access token expired\""
            .replace("\r\n", "")
            .as_str(),
        &[challenge(
            "Bearer",
            &[
                "realm=example",
                "error=invalid_token",
                "error_description=The access token expired",
            ],
        )],
    );
    reads(
        r#"Bearer error="insufficient_scope", scope="openid profile""#,
        &[challenge(
            "Bearer",
            &["error=insufficient_scope", "scope=openid profile"],
        )],
    );
}

#[test]
fn rfc9449_dpop_challenges() {
    reads(
        r#"DPoP algs="ES256 PS256""#,
        &[challenge("DPoP", &["algs=ES256 PS256"])],
    );
    reads(
        r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#,
        &[challenge(
            "DPoP",
            &[
                "error=use_dpop_nonce",
                "error_description=Resource server requires nonce in DPoP proof",
            ],
        )],
    );
    reads(
        r#"Bearer error="invalid_token", error_description="Invalid DPoP key binding", algs="ES256", DPoP algs="ES256""#,
        &[
            challenge(
                "Bearer",
                &[
                    "error=invalid_token",
                    "error_description=Invalid DPoP key binding",
                    "algs=ES256",
                ],
            ),
            challenge("DPoP", &["algs=ES256"]),
        ],
    );
}

// ===== the corners =====

#[test]
fn schemes_alone_and_with_a_token68() {
    reads("Basic", &[challenge("Basic", &[])]);
    reads(
        "Negotiate, Basic realm=x",
        &[
            challenge("Negotiate", &[]),
            challenge("Basic", &["realm=x"]),
        ],
    );
    reads(
        "Negotiate YIIBzgYGKwYBBQUCoIIBwjCCAb6g/+.-_~==",
        &[challenge(
            "Negotiate",
            &["~YIIBzgYGKwYBBQUCoIIBwjCCAb6g/+.-_~=="],
        )],
    );
    reads(
        "Negotiate abc= , Basic realm=x, NTLM",
        &[
            challenge("Negotiate", &["~abc="]),
            challenge("Basic", &["realm=x"]),
            challenge("NTLM", &[]),
        ],
    );
    // `name=` with no value is a token68 that ends in its padding.
    reads("Bearer realm=", &[challenge("Bearer", &["~realm="])]);
}

#[test]
fn commas_and_equals_inside_quotes_are_text() {
    reads(
        r#"Bearer scope="a,b, Basic realm=x", error="x=y""#,
        &[challenge(
            "Bearer",
            &["scope=a,b, Basic realm=x", "error=x=y"],
        )],
    );
}

#[test]
fn quoted_pairs_are_unescaped() {
    reads(
        r#"Basic realm="a\\b\"c\d\ e""#,
        &[challenge("Basic", &[r#"realm=a\b"cd e"#])],
    );
    reads(r#"Basic realm="""#, &[challenge("Basic", &["realm="])]);
    reads(
        r#"Basic realm="\"""#,
        &[challenge("Basic", &[r#"realm=""#])],
    );
}

#[test]
fn values_are_borrowed_unless_unescaped_or_not_utf8() {
    let value = br#"Basic plain="abc", token=abc, escaped="a\bc", latin1="caf"#;
    let mut value = value.to_vec();
    value.extend_from_slice(b"\xe9\"");
    let challenge = parse(&value).next().unwrap().unwrap();
    assert!(matches!(
        challenge.param("plain"),
        Some(Cow::Borrowed("abc"))
    ));
    assert!(matches!(
        challenge.param("token"),
        Some(Cow::Borrowed("abc"))
    ));
    assert!(matches!(challenge.param("escaped"), Some(Cow::Owned(text)) if text == "abc"));
    assert_eq!(challenge.param("latin1").as_deref(), Some("caf\u{FFFD}"));
    let utf8 = "Basic realm=\"café\"";
    let challenge = parse(utf8.as_bytes()).next().unwrap().unwrap();
    assert!(matches!(
        challenge.param("realm"),
        Some(Cow::Borrowed("café"))
    ));
}

/// Found by fuzzing: obs-text that is UTF-8 for a C1 control (U+008B) is a value's text like
/// any other.
#[test]
fn obs_text_is_text_whatever_it_decodes_to() {
    let value = b"Bearer Aealm=\"ke\xc2\x8b\", er\x13a r%Ne";
    let read = promises::read(value);
    assert_eq!(read[0], Ok(challenge("Bearer", &["Aealm=ke\u{8b}"])));
    assert_eq!(read[1], Err(InvalidChallenge));
    assert!(!agree(value));
    assert!(agree("Bearer realm=\"\u{8b}\u{2028}\u{feff}\"".as_bytes()));
}

#[test]
fn odd_spacing_is_read_through() {
    reads(
        "  Bearer \t realm = \"x\"\t,error=\t invalid_token ,  Basic\trealm=y  ",
        &[
            challenge("Bearer", &["realm=x", "error=invalid_token"]),
            challenge("Basic", &["realm=y"]),
        ],
    );
}

#[test]
fn empty_list_elements_are_skipped() {
    reads("", &[]);
    reads(" , ,, ", &[]);
    reads(
        r#", ,Bearer realm="x",, , error="y",,, Basic realm=z ,,"#,
        &[
            challenge("Bearer", &["realm=x", "error=y"]),
            challenge("Basic", &["realm=z"]),
        ],
    );
    // `#auth-param` may open with an empty element too.
    reads("Bearer , realm=x", &[challenge("Bearer", &["realm=x"])]);
}

#[test]
fn a_comma_right_after_the_scheme_still_leads_to_its_parameters() {
    reads("Basic, realm=x", &[challenge("Basic", &["realm=x"])]);
}

#[test]
fn schemes_and_names_are_kept_as_sent_and_looked_up_in_any_case() {
    let value = br#"BEARER ERROR="insufficient_scope", Error="second""#;
    let challenge = parse(value).next().unwrap().unwrap();
    assert_eq!(challenge.scheme(), "BEARER");
    assert!(challenge.scheme().eq_ignore_ascii_case("bearer"));
    // The first of a repeated name wins.
    assert_eq!(
        challenge.param("error").as_deref(),
        Some("insufficient_scope")
    );
    assert_eq!(
        challenge.param("eRRoR").as_deref(),
        Some("insufficient_scope")
    );
    assert_eq!(challenge.param("scope"), None);
    let names: Vec<_> = challenge.params().map(|(name, _)| name).collect();
    assert_eq!(names, ["ERROR", "Error"]);
    assert_eq!(challenge.token68(), None);
}

#[test]
fn every_field_line_is_read_and_an_error_ends_only_its_own() {
    let mut headers = HeaderMap::new();
    for line in [
        r#"Basic realm="a""#,
        r#"Bearer realm="b", "oops", Never realm=c"#,
        r#"DPoP algs=ES256, Newauth"#,
    ] {
        headers.append(WWW_AUTHENTICATE, HeaderValue::from_static(line));
    }
    let read: Vec<_> = challenges(&headers)
        .map(|c| c.map(|c| OwnedChallenge::of(&c)))
        .collect();
    assert_eq!(
        read,
        [
            Ok(challenge("Basic", &["realm=a"])),
            Ok(challenge("Bearer", &["realm=b"])),
            Err(InvalidChallenge),
            Ok(challenge("DPoP", &["algs=ES256"])),
            Ok(challenge("Newauth", &[])),
        ]
    );
    assert_eq!(challenges(&HeaderMap::new()).count(), 0);
}

/// Each of these breaks the grammar somewhere; where it breaks, reading stops with an error.
#[test]
fn malformed_values_are_errors() {
    let table: &[&[u8]] = &[
        br#""Bearer""#,
        b"=",
        b"=x",
        b"Bearer=x",
        br#"Bearer"x""#,
        br#"Bearer realm="x"#,
        br#"Bearer realm="x\"#,
        br#"Bearer realm="x\""#,
        b"Bearer realm=x y",
        br#"Bearer realm="x" y"#,
        br#"Bearer realm="x"error="y""#,
        b"Bearer realm=x=y",
        b"Bearer realm==x",
        b"Bearer realm=\"x\x7f\"",
        b"Bearer realm=\"x\x00\"",
        b"Bearer realm=\"x\\\x01\"",
        b"Bearer realm=\"x\ny\"",
        b"Bearer realm=x\x00",
        br#"Bearer realm="x", "y""#,
        b"Bearer abc, realm=x",
        b"Bearer abc=, realm=x",
        b"Bearer abc def",
        b"Bearer @",
        b"Bearer a/b=c",
        b"Bearer realm=(x)",
        b"Bearer realm=x;y",
        b"Bearer realm='x' y",
        b"Bearer =x",
        b"Bearer realm=\"x\", =y",
        "Bëarer realm=x".as_bytes(),
        b"Bearer realm=\xff",
        b"Basic realm=x, \x80",
        b"\x00",
        b"Basic ==",
    ];
    for value in table {
        let read = promises::read(value);
        assert_eq!(
            read.last(),
            Some(&Err(InvalidChallenge)),
            "{:?} read as {read:?}",
            String::from_utf8_lossy(value)
        );
        assert!(!agree(value));
    }
}

#[test]
fn byte_classes_are_the_rfcs() {
    for byte in 0..=255u8 {
        let alphanumeric = byte.is_ascii_alphanumeric();
        let tchar = alphanumeric || b"!#$%&'*+-.^_`|~".contains(&byte);
        let token68 = alphanumeric || b"-._~+/".contains(&byte);
        let qdtext = byte == b'\t'
            || byte == b' '
            || (byte >= 0x21 && byte != 0x7F && byte != b'"' && byte != b'\\');
        assert_eq!(super::is_tchar(byte), tchar, "{byte:#x}");
        assert_eq!(super::is_token68_char(byte), token68, "{byte:#x}");
        assert_eq!(super::is_qdtext(byte), qdtext, "{byte:#x}");
    }
}

// ===== properties =====

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(2048);
    ProptestConfig {
        cases,
        // A failing input is printed; the parser needs no replay file.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const TCHARS: &str = "[!#$%&'*+.^_`|~0-9A-Za-z-]";

fn token() -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("{TCHARS}{{1,8}}")).unwrap()
}

/// A challenge and the text it is written as: random case, spacing, empty list elements,
/// values as tokens or quoted strings with needless escapes.
fn written_challenge() -> impl Strategy<Value = (OwnedChallenge, String)> {
    let whitespace = || "[ \t]{0,3}";
    let gap = || "[ \t]{0,2}(,[ \t]{0,2}){0,2}";
    let value = "[ -~\t\u{e9}\u{20ac}]{0,12}";
    let param = (
        token(),
        whitespace(),
        whitespace(),
        value,
        any::<bool>(),
        gap(),
    );
    let token68 = "[A-Za-z0-9._~+/-]{1,12}={0,2}";
    let rest = prop_oneof![
        Just(None),
        token68.prop_map(|t| Some(Err(t))),
        proptest::collection::vec(param, 1..5).prop_map(|p| Some(Ok(p))),
    ];
    (token(), "[ \t]{1,3}", rest).prop_map(|(scheme, space, rest)| {
        let mut owned = OwnedChallenge {
            scheme: scheme.clone(),
            token68: None,
            params: Vec::new(),
        };
        let mut text = scheme;
        match rest {
            None => {}
            Some(Err(token68)) => {
                text.push_str(&space);
                text.push_str(&token68);
                owned.token68 = Some(token68);
            }
            Some(Ok(params)) => {
                text.push_str(&space);
                for (i, (name, before, after, value, as_token, gap)) in
                    params.into_iter().enumerate()
                {
                    if i > 0 {
                        text.push(',');
                        text.push_str(&gap);
                    }
                    text.push_str(&name);
                    text.push_str(&before);
                    text.push('=');
                    text.push_str(&after);
                    let is_token = !value.is_empty() && value.bytes().all(super::is_tchar);
                    if as_token && is_token {
                        text.push_str(&value);
                    } else {
                        text.push('"');
                        for (j, c) in value.chars().enumerate() {
                            // Every third ordinary character escaped for nothing.
                            if c == '"' || c == '\\' || j % 3 == 2 {
                                text.push('\\');
                            }
                            text.push(c);
                        }
                        text.push('"');
                    }
                    owned.params.push((name, value));
                }
            }
        }
        (owned, text)
    })
}

proptest! {
    #![proptest_config(config())]

    /// Any bytes: challenges or an error, never a panic, and the promises hold.
    #[test]
    fn any_bytes_keep_the_promises(value in proptest::collection::vec(any::<u8>(), 0..256)) {
        agree(&value);
    }

    /// Bytes from the grammar's own alphabet, which random bytes rarely put together.
    #[test]
    fn near_misses_keep_the_promises(value in "[a-cA-C0-2=,\" \t\\\\/@\u{e9}]{0,48}") {
        agree(value.as_bytes());
    }

    /// Well-formed challenges over one to three field lines read back as they were written.
    #[test]
    fn written_challenges_read_back(
        written in proptest::collection::vec(
            (written_challenge(), "[ \t]{0,2}(,[ \t]{0,2}){1,3}", 0..3usize),
            0..6,
        ),
        leading in "[ \t,]{0,3}",
    ) {
        let mut lines = vec![leading];
        let mut expected = Vec::new();
        for ((owned, text), separator, line) in written {
            let line = line.min(lines.len());
            if line == lines.len() {
                lines.push(String::new());
            }
            let current = &mut lines[line];
            if !current.trim_matches([' ', '\t', ',']).is_empty() {
                current.push_str(&separator);
            }
            current.push_str(&text);
            expected.push((line, owned));
        }
        expected.sort_by_key(|(line, _)| *line);
        let expected: Vec<_> = expected.into_iter().map(|(_, owned)| owned).collect();
        for line in &lines {
            prop_assert!(well_formed(line.as_bytes()), "{:?}", line);
        }
        let mut headers = HeaderMap::new();
        for line in &lines {
            headers.append(WWW_AUTHENTICATE, HeaderValue::from_str(line).unwrap());
        }
        let read: Vec<_> = challenges(&headers)
            .map(|c| c.map(|c| OwnedChallenge::of(&c)))
            .collect::<Result<_, _>>()
            .map_err(|_| TestCaseError::fail(format!("{lines:?} is well-formed")))?;
        prop_assert_eq!(&read, &expected, "{:?}", lines);
        for (challenge, owned) in challenges(&headers).zip(&expected) {
            let challenge = challenge.unwrap();
            for (name, _) in &owned.params {
                let first = owned.params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name));
                let found = challenge.param(&name.to_ascii_uppercase());
                prop_assert_eq!(found.as_deref(), first.map(|(_, value)| value.as_str()));
            }
        }
    }

    /// One byte inserted, replaced or removed in well-formed challenges: parser and grammar
    /// still agree, on the near misses that matter most.
    #[test]
    fn mutated_challenges_agree(
        written in proptest::collection::vec(written_challenge(), 1..4),
        at in any::<prop::sample::Index>(),
        byte in prop_oneof![Just(b','), Just(b'='), Just(b'"'), Just(b'\\'), Just(b' '), any::<u8>()],
        how in 0..3u8,
    ) {
        let texts: Vec<_> = written.into_iter().map(|(_, text)| text).collect();
        let mut value = texts.join(", ").into_bytes();
        let at = at.index(value.len() + 1);
        match how {
            0 => value.insert(at, byte),
            1 if at < value.len() => value[at] = byte,
            _ if at < value.len() => {
                value.remove(at);
            }
            _ => value.push(byte),
        }
        agree(&value);
    }
}
