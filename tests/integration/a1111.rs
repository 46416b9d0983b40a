//! AUTOMATIC1111's API on `promptdex serve` (`serve::a1111`): its real client, PyPI's
//! `webuiapi`, gets captions and PNG info; another front-end's file comes back in A1111's
//! layout; bad requests get JSON errors with 4xx statuses and the server keeps serving.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use base64::Engine;
use serde_json::{json, Value};

use crate::common;
use common::server::{build_small_index, request, Reply, Server};

/// One small index for this module.
fn index() -> &'static PathBuf {
    static INDEX: OnceLock<PathBuf> = OnceLock::new();
    INDEX.get_or_init(|| build_small_index("a1111"))
}

/// `POST path` with `body` as JSON.
fn post_json(server: &Server, path: &str, body: &Value) -> Reply {
    let bytes = serde_json::to_vec(body).unwrap();
    request(
        server.addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        &bytes,
    )
}

fn base64_of(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn cli_json(args: &[&str]) -> Value {
    let out = common::promptdex(args, &common::root());
    assert!(out.status.success(), "{}", common::stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a1111_webuiapi_gets_captions_and_png_info() {
    let index = index();
    let server = Server::start(index, &[]);
    let python = common::python::venv_executable("clients-venv", &["webuiapi==0.9.17"], "python");
    let cats = common::data_dir().join("eval/sdcpp_lovely_cat/images");
    let mut images: Vec<PathBuf> = std::fs::read_dir(&cats)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    images.sort();
    let first = cats.join("a_lovely_cat.png");
    let out = Command::new(&python)
        .arg(common::root().join("tests/clients/a1111_client.py"))
        .arg(server.url(""))
        .arg(&first)
        .args(&images)
        .output()
        .expect("running the webuiapi client");
    assert!(
        out.status.success(),
        "the client failed: {}",
        common::stderr(&out)
    );
    let answers: Value = serde_json::from_slice(&out.stdout).unwrap();

    // interrogate: the prompt `generate` writes from the pixels, in each mode.
    let idx = index.to_str().unwrap();
    let path = first.to_str().unwrap();
    for (model, mode) in [("clip", "fast"), ("clip-classic", "classic")] {
        let printed = cli_json(&[
            "generate",
            path,
            "--index",
            idx,
            "--json",
            "--ignore-metadata",
            "--mode",
            mode,
        ]);
        let caption = &answers["interrogate"][model];
        assert!(caption.as_str().is_some_and(|c| !c.is_empty()), "{answers}");
        assert_eq!(caption, &printed[0]["result"]["prompt"], "{model}");
    }
    let unknown = &answers["interrogate"]["unknown"];
    assert_eq!(unknown["status"], 404, "{answers}");
    assert_eq!(unknown["body"]["detail"], "Model not found", "{answers}");

    // png-info: the file's own `parameters` text, byte for byte as Pillow reads it, and its
    // fields under A1111's names.
    let mut with_parameters = 0;
    for image in &images {
        let answer = &answers["png_info"][image.to_str().unwrap()];
        let fields = &answer["parameters"];
        match answer["pillow"].as_str() {
            Some(text) => {
                with_parameters += 1;
                assert_eq!(answer["info"], text, "{}", image.display());
                let prompt = fields["Prompt"].as_str().unwrap();
                assert!(!prompt.is_empty() && text.starts_with(prompt), "{answer}");
                for key in ["Steps", "Sampler", "CFG scale", "Seed", "Size-1", "Size-2"] {
                    assert!(fields[key].is_string(), "{key} in {answer}");
                }
            }
            None => assert_eq!(answer["info"], "", "{}", image.display()),
        }
    }
    assert!(with_parameters >= 3, "{answers}");
}

#[test]
fn a1111_png_info_writes_other_front_ends_in_a1111_layout() {
    let server = Server::start(index(), &[]);
    let fixture = common::root().join("tests/fixtures/metadata/comfyui_prompt.png");
    let bytes = std::fs::read(&fixture).unwrap();
    let printed = cli_json(&[
        "generate",
        fixture.to_str().unwrap(),
        "--index",
        index().to_str().unwrap(),
        "--json",
    ]);
    let embedded = &printed[0]["result"]["embedded"];
    let infotext = embedded["infotext"].as_str().unwrap();
    // With and without the data-URL prefix webuiapi sends.
    for image in [
        format!("data:image/png;base64,{}", base64_of(&bytes)),
        base64_of(&bytes),
    ] {
        let reply = post_json(&server, "/sdapi/v1/png-info", &json!({ "image": image }));
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let answer = reply.json();
        assert_eq!(answer["info"], infotext, "{answer}");
        assert_eq!(
            answer["parameters"]["Prompt"], embedded["prompt"],
            "{answer}"
        );
        assert!(answer["parameters"]["Steps"].is_string(), "{answer}");
        assert!(answer["items"]["prompt"].is_string(), "{answer}");
        assert!(answer["items"].get("parameters").is_none(), "{answer}");
    }
    let listed = server.get("/sdapi/v1/interrogators").json();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["clip", "clip-classic"]);
}

#[test]
fn a1111_bad_requests_get_json_errors_and_the_server_keeps_serving() {
    let mut server = Server::start(index(), &["--max-upload-mb", "1"]);
    let png = std::fs::read(common::root().join("tests/fixtures/metadata/a1111_text.png")).unwrap();
    let big = vec![b'A'; 2 << 20];
    for route in ["/sdapi/v1/interrogate", "/sdapi/v1/png-info"] {
        let cases: [(&str, Value, u16); 6] = [
            ("bad base64", json!({"image": "not base64 at all!"}), 400),
            ("empty image", json!({"image": ""}), 400),
            ("no image", json!({"model": "clip"}), 400),
            ("a URL", json!({"image": "http://127.0.0.1:9/cat.png"}), 400),
            (
                "not an image",
                json!({"image": base64_of(b"hello, world")}),
                415,
            ),
            ("over the limit", json!({"image": base64_of(&big)}), 413),
        ];
        for (what, body, status) in cases {
            let what = format!("{route}: {what}");
            post_json(&server, route, &body).assert_error(status, &what);
            assert!(server.alive(), "{what}");
        }
        let reply = request(
            server.addr,
            "POST",
            route,
            &[("Content-Type", "application/json")],
            b"{not json",
        );
        reply.assert_error(400, &format!("{route}: not JSON"));
    }
    let unknown = json!({"image": base64_of(&png), "model": "deepdanbooru"});
    let reply = post_json(&server, "/sdapi/v1/interrogate", &unknown);
    reply.assert_error(404, "unknown model");
    assert_eq!(reply.json()["detail"], "Model not found");
    assert_eq!(server.get("/healthz").status, 200);
}
