//! `promptdex report` end to end: a small real index, a real evaluation of the Kaggle sample,
//! and the report folder written from its JSON.

use crate::common;

use std::path::Path;

use common::{data_dir, promptdex, sample_tsv, stderr, stdout};
use promptdex::report::plots::WIDTH;

fn run_ok(args: &[&str], cwd: &Path) -> String {
    let out = promptdex(args, cwd);
    assert!(
        out.status.success(),
        "promptdex {args:?} failed: {}",
        stderr(&out)
    );
    stdout(&out)
}

#[test]
fn a_report_shows_every_method_and_image_and_survives_bad_images() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("corpus.tsv"), sample_tsv(300)).unwrap();
    run_ok(&["import", "corpus.tsv", "--index", "idx"], dir);
    let set = data_dir().join("eval/kaggle_sample");
    let labels = set.join("prompts.csv");
    run_ok(
        &[
            "index",
            set.join("images").to_str().unwrap(),
            "--index",
            "idx",
            "--prompts",
            labels.to_str().unwrap(),
        ],
        dir,
    );
    let json = run_ok(
        &[
            "eval",
            labels.to_str().unwrap(),
            "--index",
            "idx",
            "--leave-one-out",
            "--json",
        ],
        dir,
    );
    let mut eval: serde_json::Value = serde_json::from_str(&json).expect("eval --json");
    let images = eval["per_image"].as_array().unwrap().len();
    assert_eq!(images, 7);
    // One image moved away, one broken (relative to the JSON's folder): both still rows.
    std::fs::write(dir.join("broken.png"), b"not a png").unwrap();
    eval["per_image"][0]["image"] = "gone/missing.png".into();
    eval["per_image"][1]["image"] = "broken.png".into();
    std::fs::write(dir.join("eval.json"), eval.to_string()).unwrap();

    let out = promptdex(
        &["report", "eval.json", "--index", "idx", "--out", "rep"],
        dir,
    );
    assert!(out.status.success(), "report failed: {}", stderr(&out));
    assert!(stdout(&out).contains("index.html"), "{}", stdout(&out));
    assert!(stderr(&out).contains("missing.png"), "{}", stderr(&out));

    let rep = dir.join("rep");
    let html = std::fs::read_to_string(rep.join("index.html")).unwrap();
    for method in eval["methods"].as_array().unwrap() {
        let name = method["method"].as_str().unwrap();
        assert!(html.contains(&format!("<td>{name}</td>")), "method {name}");
    }
    for row in eval["per_image"].as_array().unwrap() {
        let file = Path::new(row["image"].as_str().unwrap())
            .file_name()
            .unwrap();
        assert!(html.contains(file.to_str().unwrap()), "image {file:?}");
    }
    assert_eq!(html.matches("class=\"missing\"").count(), 2);
    assert!(html.contains("<h2>Index</h2>"));
    assert!(
        html.contains("307 prompts"),
        "300 imported + 7 indexed images"
    );

    for (plot, height) in [
        ("scores.png", None),
        ("pca.png", Some(760)),
        ("lengths.png", Some(520)),
        ("terms.png", None),
    ] {
        let decoded = image::open(rep.join(plot)).unwrap_or_else(|e| panic!("{plot}: {e}"));
        assert_eq!(decoded.width(), WIDTH, "{plot}");
        if let Some(h) = height {
            assert_eq!(decoded.height(), h, "{plot}");
        }
        assert!(
            html.contains(&format!("src=\"{plot}\"")),
            "{plot} on the page"
        );
    }
    let thumbs: Vec<_> = std::fs::read_dir(rep.join("thumbs")).unwrap().collect();
    assert_eq!(thumbs.len(), images - 2);
    for entry in thumbs {
        let thumb = image::open(entry.unwrap().path()).unwrap();
        assert!(thumb.width() <= 128 && thumb.height() <= 128);
    }

    // Without an index: no index section, the rest as before.
    run_ok(&["report", "eval.json", "--out", "bare"], dir);
    let bare = std::fs::read_to_string(dir.join("bare/index.html")).unwrap();
    assert!(!bare.contains("<h2>Index</h2>") && bare.contains("lengths.png"));
    assert!(!dir.join("bare/terms.png").exists());
}

#[test]
fn a_bad_eval_file_is_a_clear_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("bad.json"), "{\"images\": 3, \"oops\": [").unwrap();
    std::fs::write(dir.join("other.json"), "{\"prompt\": \"a cat\"}").unwrap();
    for (file, needle) in [
        ("bad.json", "eval --json"),
        ("other.json", "eval --json"),
        ("absent.json", "absent.json"),
    ] {
        let out = promptdex(&["report", file, "--out", "rep"], dir);
        assert!(!out.status.success(), "{file} was accepted");
        let err = stderr(&out);
        assert!(err.contains(file) && err.contains(needle), "{file}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // A folder that is no index is refused by name.
    std::fs::write(
        dir.join("empty.json"),
        r#"{"images":0,"evaluated":0,"leave_one_out":false,"methods":[],
            "latency_p50_ms":0.0,"missing":[],"per_image":[]}"#,
    )
    .unwrap();
    let out = promptdex(&["report", "empty.json", "--index", "nowhere"], dir);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nowhere"), "{}", stderr(&out));
    // An empty evaluation still makes a page.
    run_ok(&["report", "empty.json", "--out", "empty"], dir);
    assert!(dir.join("empty/index.html").is_file());
}
