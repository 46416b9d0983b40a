//! Python programs the tests run as real peers (Milvus servers), each in a virtual environment
//! under `target/` made on first use with `pip install`, as the tests fetch their models.

use std::path::PathBuf;
use std::process::Command;

/// `target/VENV/bin/EXE`, after making the environment and installing `packages` into it when
/// the executable or pip is missing. Panics, saying what failed, without Python or the
/// packages: the tests that need them are never skipped.
pub fn venv_executable(venv: &str, packages: &[&str], exe: &str) -> PathBuf {
    let venv = super::root().join("target").join(venv);
    let executable = venv.join("bin").join(exe);
    let pip = venv.join("bin/pip");
    if !executable.exists() || !pip.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("running python3 -m venv (python3 is needed for the Milvus tests)");
        assert!(made.success(), "python3 -m venv {} failed", venv.display());
        let installed = Command::new(&pip)
            .args(["install", "--quiet"])
            .args(packages)
            .status()
            .expect("running pip");
        assert!(installed.success(), "pip install {packages:?} failed");
    }
    executable
}
