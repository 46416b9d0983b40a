//! A real `promptdex serve` on a loopback port over a small real index, and a raw HTTP/1.1
//! client that sends exactly the bytes a test wants (no URL normalisation, no encoding).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::{data_dir, minilm_dir, models_dir, promptdex, sample_tsv, stderr};

/// The eval set the small index holds: 7 Kaggle images with their prompts.
pub fn image_set() -> PathBuf {
    data_dir().join("eval/kaggle_sample")
}

/// Builds a small real index (300 DiffusionDB prompts and the Kaggle sample's 7 images) at
/// `target/tmp/serve-index-NAME`, afresh.
pub fn build_small_index(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("serve-index-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let corpus = dir.with_extension("tsv");
    std::fs::write(&corpus, sample_tsv(300)).unwrap();
    let index = dir.to_str().unwrap();
    let out = promptdex(
        &["import", corpus.to_str().unwrap(), "--index", index],
        &dir,
    );
    assert!(out.status.success(), "import: {}", stderr(&out));
    let set = image_set();
    let out = promptdex(
        &[
            "index",
            set.to_str().unwrap(),
            "--prompts",
            set.join("prompts.csv").to_str().unwrap(),
            "--index",
            index,
        ],
        &dir,
    );
    assert!(out.status.success(), "index: {}", stderr(&out));
    dir
}

/// A running server, killed when dropped.
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Server {
    /// Starts `promptdex serve --index INDEX --addr 127.0.0.1:0 EXTRA...` and waits for its
    /// `listening on` line.
    pub fn start(index: &Path, extra: &[&str]) -> Server {
        minilm_dir();
        let mut child = Command::new(env!("CARGO_BIN_EXE_promptdex"))
            .args(["serve", "--index", index.to_str().unwrap()])
            .args(["--addr", "127.0.0.1:0"])
            .args(extra)
            .env("PROMPTDEX_MODELS", models_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting promptdex serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("listening on http://") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(addr) => addr.parse().expect("an address"),
            Err(_) => {
                let _ = child.kill();
                panic!("the server did not print `listening on` within 180 s");
            }
        };
        Server { child, addr }
    }

    /// `http://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Reply {
        request(self.addr, "GET", path, &[], &[])
    }

    /// `POST path` with `body` (raw bytes, `application/octet-stream`).
    pub fn post(&self, path: &str, body: &[u8]) -> Reply {
        request(
            self.addr,
            "POST",
            path,
            &[("Content-Type", "application/octet-stream")],
            body,
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Reply {
    /// The value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics, showing it, when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts a JSON error `{error, detail}` with `status`; returns the error code.
    pub fn assert_error(&self, status: u16, what: &str) -> String {
        assert_eq!(
            self.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{what}: {:?}",
            self.headers
        );
        let body = self.json();
        let code = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: {body}"));
        assert!(body["detail"].is_string(), "{what}: {body}");
        assert_eq!(body.as_object().unwrap().len(), 2, "{what}: {body}");
        code.to_string()
    }
}

/// Sends one request over a fresh connection (`Connection: close`) and reads the answer.
/// The body is written from another thread while the answer is read, so a server that
/// answers early (413) and closes is seen answering rather than as a broken pipe.
pub fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connecting");
    stream
        .set_read_timeout(Some(Duration::from_secs(180)))
        .unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let chunked = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"));
    if !chunked && (!body.is_empty() || method == "POST") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let body = body.to_vec();
    let sender = std::thread::spawn(move || {
        // Errors are expected when the server refuses the body early.
        let _ = writer.write_all(&body);
    });
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let _ = sender.join();
    parse(&raw)
}

fn parse(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .expect("a chunk size");
        if size == 0 {
            return out;
        }
        let start = end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

/// A `multipart/form-data` body with one file field named `image`: (content type, body).
pub fn multipart(file_name: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "promptdex-test-boundary-7d1c";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{file_name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
