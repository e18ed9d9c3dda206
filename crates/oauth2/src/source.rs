//! Credentials the platform hands the client and replaces behind its back (a Kubernetes
//! projected service-account token, Azure workload identity's federated token, another
//! cache's access token): read afresh for every grant, never kept.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use tower::BoxError;
use tower_bearer::TokenCache;

/// Where a credential is read from, at each grant.
#[derive(Clone)]
pub(crate) enum Source {
    /// A file's contents. Read whole every time: the kubelet rewrites a projected token
    /// without a reliable change of mtime (a symlink swap), so no cache keyed on it is safe.
    File(PathBuf),
    /// An environment variable's value, read every time.
    Env(String),
    Function(Arc<dyn Fn() -> Result<String, BoxError> + Send + Sync>),
    /// Another cache's access token: its own refresh feeds this one's exchange.
    Cache(TokenCache),
}

impl Source {
    /// The credential, now: surrounding whitespace (a file's final newline) trimmed, and
    /// never empty.
    pub(crate) async fn read(&self) -> Result<SecretString, BoxError> {
        let value = match self {
            Source::File(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|error| format!("could not read {}: {error}", path.display()))?,
            Source::Env(name) => {
                std::env::var(name).map_err(|error| format!("${name}: {error}"))?
            }
            Source::Function(read) => read()?,
            Source::Cache(cache) => cache.token().await?.expose_access_token().to_owned(),
        };
        let value = SecretString::from(value);
        let trimmed = value.expose_secret().trim();
        if trimmed.is_empty() {
            return Err(format!("{self:?} is empty").into());
        }
        Ok(if trimmed.len() == value.expose_secret().len() {
            value
        } else {
            SecretString::from(trimmed.to_owned())
        })
    }
}

/// Where it is read from, never what it holds.
impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(path) => write!(f, "the file {}", path.display()),
            Source::Env(name) => write!(f, "${name}"),
            Source::Function(_) => f.write_str("the function's answer"),
            Source::Cache(_) => f.write_str("the cache's access token"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use tower::service_fn;
    use tower_bearer::{Token, TokenRequest};

    use super::*;

    /// A file rewritten in place with its old mtime put back (as a copy that keeps times
    /// does): the new contents are read, since nothing is keyed on the mtime.
    #[tokio::test]
    async fn a_file_is_read_afresh_even_when_its_mtime_has_not_changed() {
        let dir = tempdir();
        let path = dir.join("token");
        std::fs::write(&path, "first\n").unwrap();
        let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let source = Source::File(path.clone());
        assert_eq!(source.read().await.unwrap().expose_secret(), "first");

        std::fs::write(&path, "second").unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(mtime).unwrap();
        assert_eq!(file.metadata().unwrap().modified().unwrap(), mtime);

        assert_eq!(source.read().await.unwrap().expose_secret(), "second");
    }

    #[tokio::test]
    async fn a_missing_or_empty_source_is_an_error_that_names_it() {
        let dir = tempdir();
        let missing = Source::File(dir.join("absent"));
        let error = missing.read().await.unwrap_err().to_string();
        assert!(error.starts_with("could not read "), "{error}");
        assert!(error.contains("absent"), "{error}");

        let path = dir.join("blank");
        std::fs::write(&path, " \n").unwrap();
        let error = Source::File(path).read().await.unwrap_err().to_string();
        assert!(
            error.starts_with("the file ") && error.ends_with("blank is empty"),
            "{error}"
        );

        let unset = Source::Env("TOWER_BEARER_TEST_SURELY_UNSET".into());
        let error = unset.read().await.unwrap_err().to_string();
        assert_eq!(
            error,
            "$TOWER_BEARER_TEST_SURELY_UNSET: environment variable not found"
        );
    }

    #[tokio::test]
    async fn an_environment_variable_is_read_each_time() {
        // One the test runner sets, and nothing here changes: the value as the process has it.
        let source = Source::Env("CARGO_PKG_NAME".into());
        assert_eq!(
            source.read().await.unwrap().expose_secret(),
            std::env::var("CARGO_PKG_NAME").unwrap()
        );
    }

    /// A chained exchange: each read is the other cache's current access token, so its own
    /// refresh (here, a refused token replaced) feeds the next exchange.
    #[tokio::test]
    async fn a_cache_gives_its_current_access_token() {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let cache = TokenCache::new(service_fn(move |_: TokenRequest| {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            async move { Token::bearer(format!("subject-{n}")) }
        }));
        let source = Source::Cache(cache.clone());
        assert_eq!(source.read().await.unwrap().expose_secret(), "subject-1");

        let first = cache.token().await.unwrap();
        tokio::time::pause();
        tokio::time::advance(Duration::from_secs(60)).await;
        cache.reject(&first).await.unwrap();
        assert_eq!(source.read().await.unwrap().expose_secret(), "subject-2");
    }

    #[test]
    fn debug_output_names_the_source_not_its_value() {
        let function = Source::Function(Arc::new(|| Ok("s3cr3t".to_owned())));
        assert_eq!(format!("{function:?}"), "the function's answer");
        assert_eq!(format!("{:?}", Source::Env("TOKEN".into())), "$TOKEN");
        assert_eq!(
            format!("{:?}", Source::File("/var/run/token".into())),
            "the file /var/run/token"
        );
    }

    /// A directory of the test's own in the temporary directory, removed on drop.
    struct TempDir(PathBuf);

    impl std::ops::Deref for TempDir {
        type Target = std::path::Path;

        fn deref(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tempdir() -> TempDir {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("tower-bearer-source-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}
