//! Installing the fixture: its npm packages once per lockfile, its scripts once per content,
//! both under the target directory, never in the repository (see [`staged`](crate::common::staged)).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::common::staged::{hash, publish};

/// The fixture's sources in the repository.
const SOURCES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/oidc-provider");

const INSTALL_HINT: &str = "the interop tests need Node.js 18 or later and npm; \
     install them with `apt-get install -y nodejs npm`";

/// The server script, ready to run with `node`: its directory sits inside the npm install, so
/// that node finds `oidc-provider` and `jose` in the `node_modules` above it. Installs on first
/// use in the process.
pub(super) fn server_script() -> &'static Path {
    static SCRIPT: OnceLock<PathBuf> = OnceLock::new();
    SCRIPT.get_or_init(|| {
        require_node();
        let packages = install_packages();
        let scripts = files(|name| name.ends_with(".mjs"));
        let dir = packages.join(format!("fixture-{:016x}", hash(&scripts)));
        publish(&dir, |staging| {
            for (name, content) in &scripts {
                std::fs::write(staging.join(name), content).expect("writing the fixture scripts");
            }
        });
        dir.join("server.mjs")
    })
}

fn require_node() {
    let version = Command::new("node")
        .arg("--version")
        .output()
        .unwrap_or_else(|err| panic!("could not run node ({err}): {INSTALL_HINT}"));
    let version = String::from_utf8_lossy(&version.stdout);
    let major: u32 = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|major| major.parse().ok())
        .unwrap_or(0);
    assert!(major >= 18, "node {version} is too old: {INSTALL_HINT}");
}

/// `npm ci` of the committed lockfile, into a directory of its own under the target directory.
fn install_packages() -> PathBuf {
    let manifests = files(|name| name == "package.json" || name == "package-lock.json");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("interop")
        .join(format!("oidc-provider-{:016x}", hash(&manifests)));
    publish(&dir, |staging| {
        for (name, content) in &manifests {
            std::fs::write(staging.join(name), content).expect("writing the fixture's manifests");
        }
        let output = Command::new("npm")
            // The lockfile pins every package and its integrity; the npm cache may serve them.
            .args([
                "ci",
                "--prefer-offline",
                "--no-audit",
                "--no-fund",
                "--ignore-scripts",
            ])
            .args(["--loglevel", "error"])
            .current_dir(staging)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|err| panic!("could not run npm ({err}): {INSTALL_HINT}"));
        assert!(
            output.status.success(),
            "`npm ci` of the oidc-provider fixture failed in {}:\n{}{}",
            staging.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
    });
    dir
}

/// The fixture's files whose name `wanted` accepts, sorted by name.
fn files(wanted: impl Fn(&str) -> bool) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(SOURCES)
        .expect("the fixture's sources")
        .map(|entry| entry.expect("a directory entry"))
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            wanted(&name).then(|| (name, std::fs::read(entry.path()).expect("a fixture file")))
        })
        .collect();
    files.sort();
    files
}
