//! What a `RedisStore` keeps under its failure key: a failed refresh the replicas wait out.
//! Nothing in it is secret, so it is never encrypted.

use std::time::Duration;

use tokio::time::Instant;

use crate::value::wall_ms;
use tower_bearer::store::{SharedFailure, StoreError};

/// The first line of a stored failure: its format.
const FORMAT: &str = "f1";

/// One field a line, the description last (it may hold anything): the format, until when
/// (Unix milliseconds), the failures in a row, the status, `1` if permanent, the OAuth 2.0
/// error code (empty if none), the description.
pub(crate) fn encode(failure: &SharedFailure) -> String {
    let left = failure.until.saturating_duration_since(Instant::now());
    let until = wall_ms().saturating_add(left.as_millis() as u64);
    format!(
        "{FORMAT}\n{until}\n{}\n{}\n{}\n{}\n{}",
        failure.consecutive,
        failure.status.as_u16(),
        u8::from(failure.permanent),
        failure.error.as_deref().unwrap_or(""),
        failure.description,
    )
}

/// A stored failure, its `until` on this process's clock: a replica whose clock is behind the
/// publisher's waits longer by as much, one ahead less; the key itself ends on Redis's clock.
pub(crate) fn decode(stored: &[u8]) -> Result<SharedFailure, StoreError> {
    let malformed = || StoreError::msg("the shared failure in redis is malformed");
    let text = std::str::from_utf8(stored).map_err(|_| malformed())?;
    let mut fields = text.splitn(7, '\n');
    let mut next = || fields.next().ok_or_else(malformed);
    if next()? != FORMAT {
        return Err(StoreError::msg(
            "the shared failure in redis is in an unknown format",
        ));
    }
    let until: u64 = next()?.parse().map_err(|_| malformed())?;
    let consecutive: u32 = next()?.parse().map_err(|_| malformed())?;
    let status: u16 = next()?.parse().map_err(|_| malformed())?;
    let status = http::StatusCode::from_u16(status).map_err(|_| malformed())?;
    let permanent = match next()? {
        "0" => false,
        "1" => true,
        _ => return Err(malformed()),
    };
    let error = Some(next()?).filter(|code| !code.is_empty());
    let description = next()?;
    let left = Duration::from_millis(until.saturating_sub(wall_ms()));
    Ok(SharedFailure {
        status,
        error: error.map(str::to_owned),
        permanent,
        description: description.to_owned(),
        until: Instant::now() + left,
        consecutive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RedisStore;

    fn failure(until: Instant) -> SharedFailure {
        SharedFailure {
            status: http::StatusCode::BAD_REQUEST,
            error: Some("invalid_client".into()),
            permanent: true,
            description: "the token endpoint answered 400 invalid_client:\nwrong secret".into(),
            until,
            consecutive: 3,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_reads_back_as_written() {
        let written = failure(Instant::now() + Duration::from_secs(12));
        let read = decode(encode(&written).as_bytes()).unwrap();
        // Stored to the millisecond, on the wall clock.
        let drift = read.until.max(written.until) - read.until.min(written.until);
        assert!(drift <= Duration::from_millis(2), "{drift:?}");
        assert_eq!(
            SharedFailure {
                until: written.until,
                ..read
            },
            written
        );

        let plain = SharedFailure {
            status: http::StatusCode::SERVICE_UNAVAILABLE,
            error: None,
            permanent: false,
            ..written.clone()
        };
        let read = decode(encode(&plain).as_bytes()).unwrap();
        assert_eq!(
            (read.status, read.error, read.permanent),
            (plain.status, None, false)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_past_its_time_reads_as_ended() {
        let mut stored = encode(&failure(Instant::now())).into_bytes();
        // Ten seconds before now, on the wall clock.
        let text = String::from_utf8(stored.clone()).unwrap();
        let until: u64 = text.lines().nth(1).unwrap().parse().unwrap();
        stored = text
            .replacen(&until.to_string(), &(until - 10_000).to_string(), 1)
            .into_bytes();
        assert_eq!(decode(&stored).unwrap().until, Instant::now());
    }

    #[test]
    fn a_malformed_failure_is_an_error() {
        for stored in [
            &b""[..],
            b"f2\n1\n1\n503\n0\n\nx",
            b"f1\nsoon\n1\n503\n0\n\nx",
            b"f1\n1\n1\n503\n2\n\nx",
            b"f1\n1\n1\n99\n0\n\nx",
            b"f1\n1\n1\n503\n0\n",
            b"\xff",
        ] {
            assert!(decode(stored).is_err(), "{stored:?}");
        }
    }

    #[tokio::test]
    async fn the_failure_key_shares_the_tokens_hash_tag() {
        let store = RedisStore::builder("redis://127.0.0.1:1/", "the-api-key")
            .build()
            .unwrap();
        let keys = &store.inner.keys;
        let tag = |key: &str| key[key.find('{').unwrap()..=key.find('}').unwrap()].to_owned();
        assert_eq!(tag(&keys.failure), tag(&keys.token));
        assert!(keys.failure.ends_with("}:failure"));
    }
}
