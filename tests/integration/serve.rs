//! `promptdex serve` over a small real index: the API answers what the command line prints,
//! bad requests get JSON errors with 4xx statuses while the server keeps serving, and a full
//! queue answers 503 with Retry-After.

use crate::common;

use std::path::PathBuf;
use std::sync::OnceLock;

use common::server::{build_small_index, image_set, multipart, request, Reply, Server};
use serde_json::Value;

/// One small index for this test binary.
fn index() -> &'static PathBuf {
    static INDEX: OnceLock<PathBuf> = OnceLock::new();
    INDEX.get_or_init(|| build_small_index("api"))
}

fn first_image() -> (PathBuf, String) {
    let set = image_set();
    let labels = std::fs::read_to_string(set.join("prompts.csv")).unwrap();
    let line = labels.lines().nth(1).unwrap();
    let (image, prompt) = line.split_once(',').unwrap();
    (set.join(image), prompt.trim_matches('"').to_string())
}

fn cli_json(args: &[&str]) -> Value {
    let out = common::promptdex(args, &common::root());
    assert!(out.status.success(), "{}", common::stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Equal JSON, numbers within 1e-3 (the CLI widens f32s to f64 before printing some objects;
/// the server prints them as f32).
fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-3
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| close(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
        }
        _ => a == b,
    }
}

fn assert_healthy(server: &Server, after: &str) {
    let reply = server.get("/healthz");
    assert_eq!(reply.status, 200, "after {after}");
    assert_eq!(reply.json()["status"], "ok");
}

#[test]
fn api_answers_like_the_cli() {
    let index = index();
    let idx = index.to_str().unwrap();
    let server = Server::start(index, &[]);

    assert_healthy(&server, "start");
    let stats = server.get("/api/stats").json();
    assert_eq!(stats["index"]["images"], 7, "{stats}");
    assert!(
        stats["index"]["records"].as_u64().unwrap() >= 300,
        "{stats}"
    );
    assert!(stats["index"]["bytes"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(stats["models"]["text"], "all-MiniLM-L6-v2", "{stats}");
    assert_eq!(stats["models"]["image"], "efficientnet-lite0", "{stats}");

    // Text search: the same hits as `search --json`.
    for mode in ["hybrid", "semantic", "bm25"] {
        let reply = server.get(&format!("/api/search?q=castle+on+a+hill&k=5&mode={mode}"));
        assert_eq!(reply.status, 200);
        let served = reply.json();
        let printed = cli_json(&[
            "search",
            "castle on a hill",
            "--index",
            idx,
            "-k",
            "5",
            "--mode",
            mode,
            "--json",
        ]);
        let served = served.as_array().unwrap();
        let printed = printed.as_array().unwrap();
        assert_eq!(served.len(), printed.len(), "{mode}");
        assert!(!served.is_empty(), "{mode}");
        for (s, p) in served.iter().zip(printed) {
            for key in ["id", "prompt", "bm25_rank", "semantic_rank", "metadata"] {
                assert_eq!(s[key], p[key], "{mode} {key}");
            }
            assert!(close(&s["score"], &p["score"]), "{mode}: {s} vs {p}");
        }
    }

    // Generation: the same object as one `generate --json` result (timings aside), from a
    // raw body and from a multipart form.
    let (path, prompt) = first_image();
    let bytes = std::fs::read(&path).unwrap();
    let raw = server.post("/api/generate", &bytes);
    assert_eq!(raw.status, 200, "{}", String::from_utf8_lossy(&raw.body));
    let served = raw.json();
    let printed = cli_json(&["generate", path.to_str().unwrap(), "--index", idx, "--json"]);
    let printed = &printed[0]["result"];
    let mut keys: Vec<&String> = printed.as_object().unwrap().keys().collect();
    let mut served_keys: Vec<&String> = served.as_object().unwrap().keys().collect();
    keys.sort();
    served_keys.sort();
    assert_eq!(keys, served_keys);
    for key in [
        "prompt",
        "source",
        "embedded",
        "tags",
        "modifiers",
        "missing",
    ] {
        assert!(
            close(&served[key], &printed[key]),
            "{key}: {} vs {}",
            served[key],
            printed[key]
        );
    }
    let texts = |v: &Value| -> Vec<(Value, Value, Value)> {
        v["parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["kind"].clone(), p["text"].clone(), p["id"].clone()))
            .collect()
    };
    assert_eq!(texts(&served), texts(printed));
    assert!(close(
        &served["cosine_to_ensemble"],
        &printed["cosine_to_ensemble"]
    ));
    // The image is indexed with its prompt: it is its own nearest neighbour.
    let neighbour = served["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "neighbour")
        .expect("a neighbour part");
    assert_eq!(neighbour["text"], prompt.as_str());
    let (content_type, form) = multipart("cat.png", &bytes);
    let reply = request(
        server.addr,
        "POST",
        "/api/generate",
        &[("Content-Type", &content_type)],
        &form,
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["prompt"], served["prompt"]);

    // Search by image: the image itself first, then its neighbours.
    let found = server.post("/api/search/image?k=4", &bytes).json();
    let images = found["images"].as_array().unwrap();
    assert_eq!(images.len(), 4, "{found}");
    assert!(images[0]["similarity"].as_f64().unwrap() > 0.99, "{found}");
    assert_eq!(images[0]["prompt"], prompt.as_str());
    let id = images[0]["id"].as_u64().unwrap();

    // The indexed image by id, and its thumbnail.
    let full = server.get(&format!("/api/images/{id}"));
    assert_eq!(full.status, 200);
    assert_eq!(full.header("content-type"), Some("image/png"));
    assert_eq!(full.body, bytes);
    let thumb = server.get(&format!("/api/images/{id}?thumb=1"));
    assert_eq!(thumb.status, 200);
    assert_eq!(thumb.header("content-type"), Some("image/jpeg"));
    let small = image::load_from_memory(&thumb.body).unwrap();
    assert!(small.width().max(small.height()) <= 320);
    assert_eq!(
        server.get(&format!("/api/images/{id}?thumb=1")).body,
        thumb.body
    );

    // The page and its assets.
    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let html = String::from_utf8(page.body).unwrap();
    assert!(html.contains("id=\"file\"") && html.contains("/assets/app.js"));
    assert_eq!(server.get("/assets/app.js").status, 200);
    assert_eq!(server.get("/assets/style.css").status, 200);
}

#[test]
fn bad_requests_get_json_errors_and_the_server_keeps_serving() {
    let index = index();
    let mut server = Server::start(index, &[]);
    let (path, _) = first_image();
    let png = std::fs::read(&path).unwrap();
    let get = |target: &str| request(server.addr, "GET", target, &[], &[]);

    let cases: Vec<(&str, Reply, u16, &str)> = vec![
        (
            "empty body",
            server.post("/api/generate", &[]),
            400,
            "empty_body",
        ),
        (
            "empty body, image search",
            server.post("/api/search/image", &[]),
            400,
            "empty_body",
        ),
        (
            "50 MB upload",
            server.post("/api/generate", &vec![0x89; 50 << 20]),
            413,
            "payload_too_large",
        ),
        (
            "50 MB chunked upload",
            chunked_upload(&server, 50 << 20),
            413,
            "payload_too_large",
        ),
        (
            "non-image bytes",
            server.post("/api/generate", b"hello, this is not an image at all"),
            415,
            "unsupported_media_type",
        ),
        (
            "truncated PNG",
            server.post("/api/generate", &png[..png.len() / 2]),
            422,
            "bad_image",
        ),
        (
            "truncated PNG, image search",
            server.post("/api/search/image", &png[..png.len() / 3]),
            422,
            "bad_image",
        ),
        (
            "PNG signature only",
            server.post("/api/generate", &png[..16]),
            422,
            "bad_image",
        ),
        (
            "multipart without a file",
            request(
                server.addr,
                "POST",
                "/api/generate",
                &[("Content-Type", "multipart/form-data; boundary=x")],
                b"--x\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n--x--\r\n",
            ),
            400,
            "bad_request",
        ),
        (
            "dot-dot path",
            get("/api/images/../../etc/passwd"),
            404,
            "not_found",
        ),
        (
            "encoded dot-dot id",
            get("/api/images/..%2F..%2Fetc%2Fpasswd"),
            400,
            "bad_id",
        ),
        (
            "absolute path id",
            get("/api/images/%2Fetc%2Fpasswd"),
            400,
            "bad_id",
        ),
        ("negative id", get("/api/images/-1"), 400, "bad_id"),
        ("prompt record id", get("/api/images/0"), 404, "not_found"),
        ("unknown id", get("/api/images/99999999"), 404, "not_found"),
        ("unknown route", get("/api/nothing"), 404, "not_found"),
        ("unknown page", get("/index.php"), 404, "not_found"),
        (
            "wrong method",
            request(server.addr, "DELETE", "/api/search?q=x", &[], &[]),
            405,
            "method_not_allowed",
        ),
        (
            "GET on generate",
            get("/api/generate"),
            405,
            "method_not_allowed",
        ),
        (
            "k=100000",
            get("/api/search?q=cat&k=100000"),
            400,
            "bad_request",
        ),
        ("k=0", get("/api/search?q=cat&k=0"), 400, "bad_request"),
        (
            "k not a number",
            get("/api/search?q=cat&k=ten"),
            400,
            "bad_request",
        ),
        (
            "image search k=100000",
            server.post("/api/search/image?k=100000", &png),
            400,
            "bad_request",
        ),
        ("no q", get("/api/search"), 400, "bad_request"),
        ("blank q", get("/api/search?q=+++"), 400, "bad_request"),
        (
            "invalid UTF-8 in q",
            get("/api/search?q=%FF%FEcat"),
            400,
            "bad_request",
        ),
        (
            "truncated UTF-8 in q",
            get("/api/search?q=caf%C3"),
            400,
            "bad_request",
        ),
        (
            "unknown mode",
            get("/api/search?q=cat&mode=magic"),
            400,
            "bad_request",
        ),
        (
            "bad flag",
            server.post("/api/generate?metadata=maybe", &png),
            400,
            "bad_request",
        ),
        (
            "too long q",
            get(&format!("/api/search?q={}", "a".repeat(5000))),
            400,
            "bad_request",
        ),
    ];
    for (what, reply, status, code) in cases {
        assert_eq!(reply.assert_error(status, what), code, "{what}");
        assert!(server.alive(), "the server died after: {what}");
        assert_healthy(&server, what);
    }
    // Still answering real work.
    let reply = server.get("/api/search?q=cat&k=3");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json().as_array().unwrap().len(), 3);
    assert_eq!(server.post("/api/generate", &png).status, 200);
}

/// A 50 MB body sent chunked (no Content-Length): refused once it passes the limit.
fn chunked_upload(server: &Server, bytes: usize) -> Reply {
    let chunk = vec![0x42u8; 1 << 20];
    let mut body = Vec::with_capacity(bytes + bytes / 100);
    for _ in 0..bytes / chunk.len() {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(&chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    request(
        server.addr,
        "POST",
        "/api/generate",
        &[("Transfer-Encoding", "chunked")],
        &body,
    )
}

#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let index = index();
    let server = Server::start(index, &["--workers", "1", "--queue", "0"]);
    let (path, _) = first_image();
    let png = std::fs::read(&path).unwrap();
    let addr = server.addr;
    // Ask without the stored prompt so every request runs the models.
    let replies: Vec<Reply> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                scope.spawn(|| {
                    request(
                        addr,
                        "POST",
                        "/api/generate?metadata=0",
                        &[("Content-Type", "image/png")],
                        &png,
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let busy: Vec<&Reply> = replies.iter().filter(|r| r.status == 503).collect();
    assert_eq!(ok + busy.len(), replies.len(), "{replies:?}");
    assert!(ok >= 1, "nothing got through");
    assert!(!busy.is_empty(), "no request was refused");
    for reply in busy {
        assert_eq!(reply.assert_error(503, "busy"), "busy");
        let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry));
    }
    // Once the queue drains, work is accepted again.
    assert_eq!(server.post("/api/generate?metadata=0", &png).status, 200);
    let stats = server.get("/api/stats").json();
    assert!(
        stats["server"]["pools"]["inference"]["rejected"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

#[test]
fn a_client_that_never_finishes_its_headers_is_cut_off() {
    use std::io::{Read, Write};
    let server = Server::start(index(), &["--header-timeout", "1"]);
    let mut slow = std::net::TcpStream::connect(server.addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    // The server closes the connection (possibly after a 408) once the deadline passes.
    let _ = slow.read_to_end(&mut buf);
    let waited = started.elapsed();
    assert!(
        waited < std::time::Duration::from_secs(8),
        "the connection stayed open {waited:?}"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    assert_healthy(&server, "a stalled client");
}

/// Records added while the server runs are served within seconds: `import` adds a prompt to the
/// index a running server opened, the server reopens its readers (the next generation in
/// `/api/stats`), and every request sent meanwhile (searches, stats) is answered, none
/// dropped.
#[test]
fn prompts_imported_while_serving_are_found_within_seconds() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    let index = build_small_index("follow");
    let server = Server::start(&index, &[]);
    let before = server.get("/api/stats").json();

    let prompt = "a lighthouse made of marzipan on a licorice cliff, zebra striped sky";
    let query = "/api/search?q=marzipan+lighthouse+licorice&k=1&mode=";
    let top = |mode: &str| -> Value {
        let reply = server.get(&format!("{query}{mode}"));
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.json()[0]["prompt"].clone()
    };
    assert_ne!(top("bm25"), prompt);

    let stop = AtomicBool::new(false);
    let addr = server.addr;
    let (found_after, replies) = std::thread::scope(|scope| {
        // Requests all through the import and the swap.
        let clients: Vec<_> = (0..4)
            .map(|i| {
                let stop = &stop;
                scope.spawn(move || {
                    let mut statuses = Vec::new();
                    let started = Instant::now();
                    while !stop.load(Ordering::Relaxed)
                        && started.elapsed() < Duration::from_secs(120)
                    {
                        let target = if i == 0 {
                            "/api/stats".to_string()
                        } else {
                            format!("/api/search?q=castle+{i}&k=5&mode=hybrid")
                        };
                        let reply = request(addr, "GET", &target, &[], &[]);
                        statuses.push((target, reply.status));
                    }
                    statuses
                })
            })
            .collect();
        let corpus = index.with_extension("new.tsv");
        std::fs::write(&corpus, format!("prompt\n{prompt}\n")).unwrap();
        let out = common::promptdex(
            &[
                "import",
                corpus.to_str().unwrap(),
                "--index",
                index.to_str().unwrap(),
            ],
            &common::root(),
        );
        assert!(out.status.success(), "import: {}", common::stderr(&out));
        let imported = Instant::now();
        while top("bm25") != prompt && imported.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(200));
        }
        let found_after = imported.elapsed();
        // Keep the clients going a little past the swap.
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        let replies: Vec<(String, u16)> = clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        (found_after, replies)
    });
    assert_eq!(
        top("bm25"),
        prompt,
        "not found {found_after:?} after the import"
    );
    assert!(
        found_after < Duration::from_secs(10),
        "found only after {found_after:?}"
    );
    assert_eq!(top("semantic"), prompt, "the prompt graph was not reopened");
    assert_eq!(top("hybrid"), prompt);
    let failed: Vec<_> = replies.iter().filter(|(_, s)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        replies.len()
    );
    assert!(
        replies.len() >= 8,
        "only {} requests went through",
        replies.len()
    );

    let after = server.get("/api/stats").json();
    assert_eq!(before["index"]["generation"], 0, "{before}");
    assert!(
        after["index"]["generation"].as_u64().unwrap() >= 1,
        "{after}"
    );
    let records = |stats: &Value| stats["index"]["watermark"]["records"].as_u64().unwrap();
    assert_eq!(records(&after), records(&before) + 1, "{after}");
    assert_eq!(
        after["index"]["records"].as_u64().unwrap(),
        before["index"]["records"].as_u64().unwrap() + 1,
        "{after}"
    );
    eprintln!(
        "found {found_after:?} after the import; {} requests meanwhile, all answered",
        replies.len()
    );
}

/// A real PNG with a `tEXt` chunk `keyword` holding `text` (CRC correct), before `IEND`.
fn png_with_text(keyword: &str, text: &str) -> Vec<u8> {
    let image = image::RgbImage::from_fn(80, 60, |x, y| image::Rgb([x as u8 * 3, y as u8 * 4, 90]));
    let mut bytes = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    let data = [keyword.as_bytes(), b"\0", text.as_bytes()].concat();
    let chunk = common::png::png_chunk(b"tEXt", &data);
    let iend = bytes.len() - 12;
    bytes.splice(iend..iend, chunk);
    bytes
}

/// An upload whose metadata is broken (malformed JSON, a chunk over the metadata limit) is
/// generated from its pixels, with a warning naming the chunk, as `index` and `generate` do.
#[test]
fn uploads_with_broken_metadata_are_generated_with_a_warning() {
    let server = Server::start(index(), &[]);
    let huge = format!("{{\"nodes\": [], \"pad\": \"{}\"}}", "x".repeat(2 << 20));
    for (name, png) in [
        (
            "malformed",
            png_with_text("prompt", "{\"1\": {\"class_type\": "),
        ),
        ("huge", png_with_text("workflow", &huge)),
    ] {
        let reply = server.post("/api/generate", &png);
        assert_eq!(
            reply.status,
            200,
            "{name}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        let body = reply.json();
        assert_eq!(body["source"], "ensemble", "{name}: {body}");
        assert!(!body["prompt"].as_str().unwrap().is_empty(), "{name}");
        let warnings = body["warnings"].as_array().unwrap();
        assert!(
            warnings
                .iter()
                .any(|w| w.as_str().unwrap().contains("tEXt")),
            "{name}: {warnings:?}"
        );
    }
    assert_healthy(&server, "uploads with broken metadata");
}

/// An upload whose prompt is hidden in its pixels (NovelAI's stealth text) gets that prompt,
/// as `index` and `generate` read it; `metadata=0` ignores it.
#[test]
fn uploads_with_stealth_text_in_their_pixels_answer_with_it() {
    let server = Server::start(index(), &[]);
    let png =
        std::fs::read(common::root().join("tests/fixtures/metadata/novelai_stealth.png")).unwrap();
    let body = server.post("/api/generate", &png).json();
    assert_eq!(body["source"], "embedded", "{body}");
    assert_eq!(
        body["prompt"], "1girl, red kimono, cherry blossoms, night",
        "{body}"
    );
    let ignored = server.post("/api/generate?metadata=0", &png).json();
    assert_eq!(ignored["source"], "ensemble", "{ignored}");
}
