//! Installs under the target directory, never in the repository: each in a directory named by
//! the hash of what it is made from, which appears there by one atomic rename of a fully
//! written staging directory. So test binaries running in parallel (and worktrees sharing a
//! target directory) never see half an install; if two install at once, one rename wins and
//! the other's copy is thrown away.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// A hash of named contents, for a directory's name.
pub fn hash(files: &[(String, Vec<u8>)]) -> u64 {
    let mut hasher = DefaultHasher::new();
    files.hash(&mut hasher);
    hasher.finish()
}

/// Makes `dir` exist with what `fill` writes, unless it exists already.
pub fn publish(dir: &Path, fill: impl FnOnce(&Path)) {
    if dir.exists() {
        return;
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let staging = dir.with_extension(format!("staging-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&staging).expect("a staging directory under the target directory");
    fill(&staging);
    if std::fs::rename(&staging, dir).is_err() {
        // Another test binary published the same content first.
        assert!(dir.exists(), "could not publish {}", dir.display());
        let _ = std::fs::remove_dir_all(&staging);
    }
}
