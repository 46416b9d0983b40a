//! Issue 10, indexing and the command line: re-indexing never withdraws what it did not walk,
//! labels reach images already indexed, an empty run pins no model, names need not be UTF-8,
//! leave-one-out never offers an image its own record, and small command-line failures end
//! plainly. Real images, the real models, the real binary.

use crate::common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::server::Server;
use common::{
    data_dir, models_dir, promptdex, run_json, sample_tsv, stderr, stdout, tiny_clip_dir,
};
use promptdex::store::{Catalog, Manifest, Record};
use serde_json::Value;

/// The seven Kaggle sample images and their `image,prompt` CSV.
fn kaggle() -> PathBuf {
    data_dir().join("eval/kaggle_sample")
}

fn kaggle_images() -> Vec<PathBuf> {
    let mut images: Vec<PathBuf> = std::fs::read_dir(kaggle().join("images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    images.sort();
    images
}

fn copy_into(files: &[PathBuf], dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for f in files {
        std::fs::copy(f, dir.join(f.file_name().unwrap())).unwrap();
    }
}

fn index_json(folder: &Path, index: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "index",
        folder.to_str().unwrap(),
        "--index",
        index.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    run_json(&args, index.parent().unwrap())
}

/// Live image records (path -> record), as the catalog holds them.
fn live_images(index: &Path) -> Vec<(u64, promptdex::store::ImageRecord)> {
    let catalog = Catalog::open(&index.join("catalog")).unwrap();
    let ids: Vec<u64> = catalog.image_paths().map(|item| item.unwrap().1).collect();
    ids.into_iter()
        .map(|id| match catalog.get(id).unwrap() {
            Some(Record::Image(i)) => (id, i),
            other => panic!("record {id} is not an image: {other:?}"),
        })
        .collect()
}

/// `index img`, `index img2`, `index img`: the second folder's images stay (`/data/img` is a
/// byte prefix of `/data/img2`, not a parent).
#[test]
fn reindexing_a_folder_keeps_a_sibling_folder_with_a_longer_name() {
    let tmp = tempfile::tempdir().unwrap();
    let images = kaggle_images();
    let (img, img2) = (tmp.path().join("img"), tmp.path().join("img2"));
    copy_into(&images[..3], &img);
    copy_into(&images[3..], &img2);
    let index = tmp.path().join("index");
    assert_eq!(index_json(&img, &index, &[])["added"], 3);
    assert_eq!(index_json(&img2, &index, &[])["added"], 4);
    let again = index_json(&img, &index, &[]);
    assert_eq!(again["vanished"], 0, "{again}");
    assert_eq!(again["unchanged"], 3, "{again}");
    assert_eq!(live_images(&index).len(), 7);

    // A file really gone from `img` is still withdrawn, and only that one.
    std::fs::remove_file(img.join(images[0].file_name().unwrap())).unwrap();
    let after = index_json(&img, &index, &[]);
    assert_eq!(after["vanished"], 1, "{after}");
    assert_eq!(live_images(&index).len(), 6);
}

/// A folder the walk cannot read (here a link that now loops) is reported, and the images
/// indexed under it are kept, not withdrawn as vanished.
#[test]
fn images_under_a_folder_the_walk_cannot_read_are_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let images = kaggle_images();
    let folder = tmp.path().join("photos");
    copy_into(&images[..2], &folder);
    let elsewhere = tmp.path().join("elsewhere");
    copy_into(&images[2..4], &elsewhere);
    let sub = folder.join("sub");
    std::os::unix::fs::symlink(&elsewhere, &sub).unwrap();
    let index = tmp.path().join("index");
    assert_eq!(index_json(&folder, &index, &[])["added"], 4);

    std::fs::remove_file(&sub).unwrap();
    std::os::unix::fs::symlink(&folder, &sub).unwrap();
    let again = index_json(&folder, &index, &[]);
    let errors = again["errors"].to_string();
    assert!(
        errors.contains("sub"),
        "the unreadable folder is reported: {again}"
    );
    assert_eq!(again["vanished"], 0, "{again}");
    assert_eq!(live_images(&index).len(), 4);
}

/// A label CSV given for a folder already indexed attaches its prompts to the records:
/// counted, searchable by BM25 and by meaning, image vectors kept as they were; a row naming
/// no file is listed.
#[test]
fn labels_attach_to_images_already_indexed() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("set");
    copy_into(&kaggle_images(), &folder.join("images"));
    let mut csv = std::fs::read_to_string(kaggle().join("prompts.csv")).unwrap();
    csv.push_str("images/not_there.png,a prompt for a file that does not exist\n");
    let labels = folder.join("prompts.csv");
    std::fs::write(&labels, &csv).unwrap();
    let index = tmp.path().join("index");

    let first = index_json(&folder, &index, &[]);
    assert_eq!(first["added"], 7);
    assert_eq!(first["with_prompt"], 0, "the Kaggle images carry no prompt");
    let before: Vec<(u64, Vec<f32>)> = {
        let catalog = Catalog::open(&index.join("catalog")).unwrap();
        let next = catalog.next_id().unwrap();
        catalog.image_vectors(0, next).map(|v| v.unwrap()).collect()
    };

    let labelled = index_json(&folder, &index, &["--prompts", labels.to_str().unwrap()]);
    assert_eq!(labelled["unchanged"], 7, "{labelled}");
    assert_eq!(labelled["labels_applied"], 7, "{labelled}");
    let unmatched = labelled["labels_unmatched"].as_array().unwrap();
    assert_eq!(unmatched.len(), 1, "{labelled}");
    assert!(unmatched[0].as_str().unwrap().ends_with("not_there.png"));

    // Every live record now has its label, and the same image vector as before.
    let truth: Vec<(String, String)> = csv
        .lines()
        .skip(1)
        .take(7)
        .map(|l| {
            let mut r = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(l.as_bytes());
            let row = r.records().next().unwrap().unwrap();
            (row[0].to_string(), row[1].to_string())
        })
        .collect();
    let live = live_images(&index);
    assert_eq!(live.len(), 7);
    let catalog = Catalog::open(&index.join("catalog")).unwrap();
    for (id, record) in &live {
        let name = Path::new(&record.path)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        let (_, label) = truth.iter().find(|(p, _)| p.ends_with(name)).unwrap();
        assert_eq!(record.prompt.as_deref(), Some(label.as_str()), "{name}");
        assert_eq!(record.provenance.as_deref(), Some("label_file"));
        let vector = catalog
            .image_vectors(*id, id + 1)
            .next()
            .unwrap()
            .unwrap()
            .1;
        assert!(
            before.iter().any(|(_, v)| *v == vector),
            "{name}: the image vector was copied, not recomputed"
        );
    }
    drop(catalog);

    // Both text indexes follow: the exact label is BM25's and the semantic search's first hit.
    let (_, label) = &truth[1];
    for mode in ["bm25", "semantic"] {
        let hits = run_json(
            &[
                "search",
                label,
                "--index",
                index.to_str().unwrap(),
                "--mode",
                mode,
                "--json",
                "-k",
                "3",
            ],
            tmp.path(),
        );
        assert_eq!(hits[0]["prompt"], label.as_str(), "{mode}: {hits}");
        assert_eq!(hits[0]["metadata"]["kind"], "image", "{mode}");
    }

    // The same labels again change nothing; the human report says what happened.
    let out = promptdex(
        &[
            "index",
            folder.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
            "--prompts",
            labels.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("labels: 0 applied, 1 matching no image file"),
        "{text}"
    );
    assert!(text.contains("not_there.png"), "{text}");
    assert_eq!(live_images(&index).len(), 7);
}

/// `index` on an empty folder records no image model, so CLIP can still be used; once an
/// image is committed, another model is refused.
#[test]
fn an_empty_folder_pins_no_image_model() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let index = tmp.path().join("index");
    assert_eq!(index_json(&empty, &index, &[])["found"], 0);
    let manifest = Manifest::read(&index).unwrap().unwrap();
    assert_eq!(manifest.image_model, None, "no image, no model");

    let folder = tmp.path().join("one");
    copy_into(&kaggle_images()[..1], &folder);
    let clip = tiny_clip_dir();
    let clip_args = [
        "--model",
        "clip-vit-b-32",
        "--model-dir",
        clip.to_str().unwrap(),
    ];
    assert_eq!(index_json(&folder, &index, &clip_args)["added"], 1);
    let manifest = Manifest::read(&index).unwrap().unwrap();
    assert_eq!(manifest.image_model.unwrap().name, "clip-vit-b-32");

    let out = promptdex(
        &[
            "index",
            folder.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(
        !out.status.success(),
        "another model after an image is refused"
    );
    assert!(stderr(&out).contains("clip-vit-b-32"), "{}", stderr(&out));
}

/// A file name that is not UTF-8 is indexed with its exact bytes, `generate` handles it (exit
/// 0, no panic), search shows it, and the server serves the file by record id.
#[test]
fn a_file_name_that_is_not_utf8_works_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("odd");
    std::fs::create_dir_all(&folder).unwrap();
    let source = data_dir().join("eval/sdcpp_lovely_cat/images/cat_with_sd_cpp_42.png");
    let odd = folder.join(OsStr::from_bytes(b"caf\xe9.png"));
    std::fs::copy(&source, &odd).unwrap();
    let index = tmp.path().join("index");
    let report = index_json(&folder, &index, &[]);
    assert_eq!(report["added"], 1, "{report}");
    let exact = |index: &Path| {
        let live = live_images(index);
        assert_eq!(live.len(), 1);
        assert_eq!(
            Path::new(&live[0].1.path).as_os_str().as_bytes(),
            odd.as_os_str().as_bytes()
        );
    };
    exact(&index);

    // A record from an older build held the name lossily: the next run stores it exactly.
    {
        let catalog = Catalog::open(&index.join("catalog")).unwrap();
        let (key, id) = catalog.image_paths().next().unwrap().unwrap();
        let Some(Record::Image(mut record)) = catalog.get(id).unwrap() else {
            panic!("not an image");
        };
        record.path = PathBuf::from(record.path.to_string_lossy().into_owned());
        catalog.update_image(id, &record, &key).unwrap();
    }
    let again = index_json(&folder, &index, &[]);
    assert_eq!(again["unchanged"], 1, "{again}");
    exact(&index);

    for json in [false, true] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_promptdex"));
        cmd.arg("generate")
            .arg(&odd)
            .args(["--index", index.to_str().unwrap()])
            .env("PROMPTDEX_MODELS", models_dir());
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "generate (json: {json}): {:?} {}",
            out.status,
            stderr(&out)
        );
        assert!(stdout(&out).contains("caf"), "{}", stdout(&out));
    }

    let hits = run_json(
        &[
            "search",
            "a lovely cat",
            "--index",
            index.to_str().unwrap(),
            "--json",
            "-k",
            "1",
        ],
        tmp.path(),
    );
    assert!(hits[0]["metadata"]["path"]
        .as_str()
        .unwrap()
        .contains("caf"));
    let id = hits[0]["id"].as_u64().unwrap();

    let server = Server::start(&index, &[]);
    let reply = server.get(&format!("/api/images/{id}"));
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.body, std::fs::read(&odd).unwrap());
    let thumb = server.get(&format!("/api/images/{id}?thumb=1"));
    assert_eq!(thumb.status, 200);
}

/// Leave-one-out with a label other than the prompt the image stores: the image's own record
/// (similarity 1.0) is never among its neighbours.
#[test]
fn leave_one_out_never_offers_an_image_its_own_record() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("set");
    copy_into(&kaggle_images(), &folder.join("images"));
    std::fs::copy(kaggle().join("prompts.csv"), folder.join("prompts.csv")).unwrap();
    let index = tmp.path().join("index");
    let labels_a = folder.join("prompts.csv");
    index_json(&folder, &index, &["--prompts", labels_a.to_str().unwrap()]);

    // Labels B: the same images, other prompts.
    let mut csv = String::from("image,prompt\n");
    for image in kaggle_images() {
        let name = image.file_name().unwrap().to_str().unwrap();
        csv.push_str(&format!("images/{name},an unrelated label for {name}\n"));
    }
    let labels_b = folder.join("other.csv");
    std::fs::write(&labels_b, csv).unwrap();
    let report = run_json(
        &[
            "eval",
            labels_b.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
            "--leave-one-out",
            "--methods",
            "nearest_image,ensemble",
            "--json",
        ],
        tmp.path(),
    );
    let per_image = report["per_image"].as_array().unwrap();
    assert_eq!(per_image.len(), 7);
    for row in per_image {
        assert!(row["error"].is_null(), "{row}");
        let similarity = row["neighbour_similarity"].as_f64().unwrap();
        assert!(
            similarity < 0.999,
            "{}: its own record came back as a neighbour ({similarity})",
            row["image"]
        );
    }
}

fn assert_said_once(out: &std::process::Output, needle: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "expected a failure: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.matches(needle).count(), 1, "{needle:?} once: {err}");
}

/// An index path that is a regular file: "not a directory", said once, for writers and
/// readers; an I/O error's cause is not repeated either.
#[test]
fn an_index_path_that_is_a_file_is_said_once() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("index");
    std::fs::write(&file, "not an index").unwrap();
    let corpus = tmp.path().join("c.tsv");
    std::fs::write(&corpus, sample_tsv(5)).unwrap();
    let index = file.to_str().unwrap();
    for args in [
        vec!["import", corpus.to_str().unwrap(), "--index", index],
        vec!["search", "a cat", "--index", index],
    ] {
        let out = promptdex(&args, tmp.path());
        assert_said_once(&out, "not a directory");
        assert!(!stderr(&out).contains("os error"), "{}", stderr(&out));
    }
    let out = promptdex(&["import", "missing.tsv", "--index", "fresh"], tmp.path());
    assert_said_once(&out, "No such file or directory");
}

/// A first import that fails stores nothing and leaves no index folder; an index that
/// existed before is kept.
#[test]
fn a_failed_first_import_leaves_no_index_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty.tsv");
    std::fs::write(&empty, b"").unwrap();
    let index = tmp.path().join("index");
    let out = promptdex(
        &[
            "import",
            empty.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(!index.exists(), "an empty index folder was left behind");

    let corpus = tmp.path().join("c.tsv");
    std::fs::write(&corpus, sample_tsv(5)).unwrap();
    let out = promptdex(
        &[
            "import",
            corpus.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = promptdex(
        &[
            "import",
            empty.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(!out.status.success());
    assert!(
        index.join("manifest.json").is_file(),
        "an existing index is kept"
    );
}

/// `promptdex search ... | head`: a reader that closes the pipe ends the run quietly with
/// status 0, for the table and for JSON.
#[test]
fn a_closed_pipe_ends_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("c.tsv");
    std::fs::write(&corpus, sample_tsv(50)).unwrap();
    let index = tmp.path().join("index");
    let out = promptdex(
        &[
            "import",
            corpus.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for extra in [&[][..], &["--json"][..]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_promptdex"))
            .args(["search", "a painting of a cat", "--index"])
            .arg(&index)
            .args(extra)
            .env("PROMPTDEX_MODELS", models_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close the read end before the search has written anything.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert!(out.status.success(), "{extra:?}: {:?} {err}", out.status);
        assert!(
            !err.contains("Broken pipe") && !err.contains("panicked"),
            "{err}"
        );
    }
}
