//! A Python virtual environment under the target directory with the packages of one pinned
//! requirements file in `tests/interop/python/`, for the tests that check a mock against a
//! vendor's own Python library. Made once per requirements file's content (see
//! [`staged`](crate::common::staged)); the only step that needs PyPI.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::common::staged::{hash, publish};

const INSTALL_HINT: &str = "these tests need Python 3.9 or later with venv and pip; \
     install them with `apt-get install -y python3 python3-venv`";

/// The `python` of a virtual environment with `tests/interop/python/{name}.txt` installed.
pub fn venv(name: &str) -> PathBuf {
    let requirements_file =
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/python"))
            .join(format!("{name}.txt"));
    let requirements = std::fs::read(&requirements_file)
        .unwrap_or_else(|err| panic!("{}: {err}", requirements_file.display()));
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("interop")
        .join(format!(
            "python-{name}-{:016x}",
            hash(&[(name.to_owned(), requirements.clone())])
        ));
    publish(&dir, |staging| {
        run(Command::new("python3").args(["-m", "venv"]).arg(staging));
        std::fs::write(staging.join("requirements.txt"), &requirements)
            .expect("writing the requirements");
        run(Command::new(staging.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--requirement", "requirements.txt"])
            .current_dir(staging));
    });
    dir.join("bin/python")
}

fn run(command: &mut Command) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("could not run {command:?} ({err}): {INSTALL_HINT}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({INSTALL_HINT}):\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}
