//! Shared helpers for the integration tests: real models, real data, the real binary.

pub mod cdp;
pub mod milvus;
pub mod milvus_auth;
pub mod png;
pub mod python;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use promptdex::models::{self, registry::MINILM, text::EmbedConfig, MiniLm};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The models folder: `$PROMPTDEX_MODELS`, else `models/` in the repository.
pub fn models_dir() -> PathBuf {
    std::env::var_os("PROMPTDEX_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models"))
}

/// The shared real data: `$PROMPTDEX_DATA`, else `../shared/data` beside the repository.
pub fn data_dir() -> PathBuf {
    std::env::var_os("PROMPTDEX_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/data"))
}

/// The darknet photos in `target/test-photos` (`scripts/fetch_test_photos.sh`, run once per
/// test binary, so two tests never fetch them at once).
pub fn photos_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = root().join("target/test-photos");
        let status = Command::new("bash")
            .arg(root().join("scripts/fetch_test_photos.sh"))
            .arg(&dir)
            .status()
            .expect("running scripts/fetch_test_photos.sh");
        assert!(status.success(), "scripts/fetch_test_photos.sh failed");
        dir
    })
    .clone()
}

/// MiniLM's folder, fetched (and verified) by the project's own code on first use.
pub fn minilm_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        models::fetch_model(&models_dir(), &MINILM, &mut |l| eprintln!("{l}"))
            .expect("fetching all-MiniLM-L6-v2")
    })
    .clone()
}

/// The real MiniLM, loaded once per test binary.
pub fn minilm() -> &'static MiniLm {
    static MODEL: OnceLock<MiniLm> = OnceLock::new();
    MODEL.get_or_init(|| {
        MiniLm::load(&minilm_dir(), EmbedConfig::default()).expect("loading MiniLM")
    })
}

/// A shell that sends `signal` to process `pid` once this test process has ended, however it
/// ends (a panic, a failed test, a kill): servers the tests start never outlive them.
pub fn watchdog(pid: u32, signal: &str) -> std::process::Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while kill -0 {} 2>/dev/null; do sleep 1; done; kill -{signal} {pid} 2>/dev/null",
            std::process::id()
        ))
        .spawn()
        .expect("starting the watchdog shell")
}

/// Runs the promptdex binary with the test models folder.
pub fn promptdex(args: &[&str], cwd: &Path) -> Output {
    minilm_dir();
    Command::new(env!("CARGO_BIN_EXE_promptdex"))
        .args(args)
        .current_dir(cwd)
        .env("PROMPTDEX_MODELS", models_dir())
        .output()
        .expect("running promptdex")
}

/// Runs the binary, which must succeed, and reads its JSON: one document (pretty or not), or
/// a report line after other lines.
pub fn run_json(args: &[&str], cwd: &Path) -> serde_json::Value {
    let out = promptdex(args, cwd);
    assert!(out.status.success(), "{args:?} failed: {}", stderr(&out));
    let text = stdout(&out);
    serde_json::from_str(&text)
        .unwrap_or_else(|_| serde_json::from_str(text.lines().last().unwrap()).unwrap())
}

/// stdout of a run as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr of a run as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The first `n` prompts of the DiffusionDB sample shipped in `examples/`, as a TSV string.
pub fn sample_tsv(n: usize) -> String {
    let text = std::fs::read_to_string(root().join("examples/data/diffusiondb_prompts_10k.tsv"))
        .expect("examples/data/diffusiondb_prompts_10k.tsv");
    text.lines().take(n + 1).map(|l| format!("{l}\n")).collect()
}

/// Runs promptdex with `args` again and again, killing it after a delay that grows by
/// `step_ms` each time, until a run finishes on its own (which must succeed). Returns how many
/// runs were killed.
pub fn kill_until_done(args: &[&str], first_ms: u64, step_ms: u64) -> usize {
    minilm_dir();
    let mut kills = 0;
    let mut delay = first_ms;
    loop {
        let mut child = Command::new(env!("CARGO_BIN_EXE_promptdex"))
            .args(args)
            .env("PROMPTDEX_MODELS", models_dir())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting promptdex");
        std::thread::sleep(std::time::Duration::from_millis(delay));
        if child.try_wait().unwrap().is_some() {
            assert!(child.wait().unwrap().success(), "the last run failed");
            return kills;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        delay += step_ms;
        assert!(kills < 40, "the run never finished");
    }
}

/// A CLIP folder named `clip-vit-b-32` with the real CLIP tokenizer and a tiny random model of
/// the real vocabulary size (`tests/fixtures/clip/tiny-real-vocab`, made by
/// `scripts/make_clip_tokenizer_fixture.py`; its `tokenizer.json` is stored gzipped), unpacked
/// once under `target/`.
pub fn tiny_clip_dir() -> PathBuf {
    let base = root().join("target/test-fixtures");
    let dir = base.join("clip-vit-b-32");
    if dir.join("tokenizer.json").is_file() {
        return dir;
    }
    let fixture = root().join("tests/fixtures/clip/tiny-real-vocab");
    std::fs::create_dir_all(&base).unwrap();
    // Filled beside and renamed into place, so test binaries running at once never see half.
    let tmp = tempfile::tempdir_in(&base).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(f), tmp.path().join(f)).unwrap();
    }
    let gz = std::fs::File::open(fixture.join("tokenizer.json.gz")).unwrap();
    let mut out = std::fs::File::create(tmp.path().join("tokenizer.json")).unwrap();
    std::io::copy(&mut flate2::read::GzDecoder::new(gz), &mut out).unwrap();
    drop(out);
    let staged = tmp.keep();
    if std::fs::rename(&staged, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&staged);
    }
    dir
}
