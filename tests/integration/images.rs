//! Indexing image folders end to end: embedded prompts, incremental runs, bad files, and
//! same-artist retrieval with the real EfficientNet-Lite0.

use crate::common;

use std::path::Path;

use common::{data_dir, promptdex, stderr, stdout};
use promptdex::store::{exact_search, Catalog, Record};

fn index_json(folder: &Path, index: &Path) -> serde_json::Value {
    let out = promptdex(
        &[
            "index",
            folder.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
            "--json",
        ],
        index.parent().unwrap(),
    );
    assert!(out.status.success(), "index failed: {}", stderr(&out));
    serde_json::from_str(stdout(&out).lines().last().unwrap()).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn a_folder_is_indexed_incrementally_and_its_prompts_are_searchable() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("cats");
    copy_dir(&data_dir().join("eval/sdcpp_lovely_cat/images"), &folder);
    std::fs::write(folder.join("notes.md"), "not an image").unwrap();
    let index = tmp.path().join("index");

    let first = index_json(&folder, &index);
    assert_eq!(first["found"], 13);
    assert_eq!(first["added"], 13);
    assert_eq!(first["skipped_other"], 1);
    assert!(first["with_prompt"].as_u64().unwrap() >= 3, "{first}");

    let again = index_json(&folder, &index);
    assert_eq!(again["added"], 0);
    assert_eq!(again["unchanged"], 13);

    // Text search finds images by their embedded prompt.
    let out = promptdex(
        &[
            "search",
            "a lovely cat",
            "--index",
            index.to_str().unwrap(),
            "--json",
            "-k",
            "3",
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let hits: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(hits[0]["metadata"]["kind"], "image");
    assert!(hits[0]["prompt"].as_str().unwrap().contains("cat"));

    // Change one file, delete another: one re-embedded, one withdrawn.
    let changed = folder.join("f16.png");
    let mut bytes = std::fs::read(folder.join("f32.png")).unwrap();
    bytes.extend_from_slice(b"trailing bytes after IEND");
    std::fs::write(&changed, bytes).unwrap();
    std::fs::remove_file(folder.join("q4_0.png")).unwrap();
    let third = index_json(&folder, &index);
    assert_eq!(third["changed"], 1, "{third}");
    assert_eq!(third["vanished"], 1, "{third}");
    assert_eq!(third["unchanged"], 11, "{third}");

    // Search by image: the query file itself comes first; the deleted one never appears.
    let query = folder.join("sd3.5_large.png");
    let out = promptdex(
        &[
            "search",
            "--image",
            query.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
            "--json",
            "-k",
            "12",
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let found: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let images = found["images"].as_array().unwrap();
    assert!(images[0]["path"]
        .as_str()
        .unwrap()
        .ends_with("sd3.5_large.png"));
    assert!(images[0]["similarity"].as_f64().unwrap() > 0.999);
    assert_eq!(images.len(), 12, "12 live images");
    assert!(images
        .iter()
        .all(|i| !i["path"].as_str().unwrap().ends_with("q4_0.png")));
    assert!(found["note"].as_str().unwrap().contains("not text-aligned"));
    assert!(found["prompts"].as_array().unwrap().is_empty());
}

#[test]
fn bad_files_are_reported_with_their_path_and_the_run_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("mixed");
    std::fs::create_dir_all(&folder).unwrap();
    let good = data_dir().join("eval/sdcpp_lovely_cat/images/f32.png");
    let png = std::fs::read(&good).unwrap();
    std::fs::copy(&good, folder.join("good.png")).unwrap();
    std::fs::write(folder.join("zero.png"), b"").unwrap();
    std::fs::write(folder.join("truncated.png"), &png[..png.len() / 3]).unwrap();
    std::fs::write(folder.join("text.jpg"), b"this is not a JPEG at all").unwrap();
    // A PNG header that claims 100000 x 100000 pixels (a decompression bomb).
    let mut bomb = png[..33].to_vec();
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    bomb.extend_from_slice(&png[33..]);
    std::fs::write(folder.join("bomb.png"), bomb).unwrap();
    // A dangling link stands for an unreadable file (root reads any file mode).
    std::os::unix::fs::symlink(folder.join("nowhere.png"), folder.join("dangling.png")).unwrap();
    // A symlink loop and a file name that is not UTF-8.
    std::os::unix::fs::symlink(&folder, folder.join("loop")).unwrap();
    use std::os::unix::ffi::OsStrExt;
    let odd = folder.join(std::ffi::OsStr::from_bytes(b"caf\xe9.png"));
    std::fs::copy(&good, &odd).unwrap();

    let index = tmp.path().join("index");
    let out = promptdex(
        &[
            "index",
            folder.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
            "--json",
        ],
        tmp.path(),
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for name in [
        "zero.png",
        "truncated.png",
        "text.jpg",
        "bomb.png",
        "dangling.png",
        "loop",
    ] {
        assert!(err.contains(name), "no report naming {name}: {err}");
    }
    let report: serde_json::Value =
        serde_json::from_str(stdout(&out).lines().last().unwrap()).unwrap();
    assert_eq!(
        report["added"], 2,
        "good.png and the non-UTF-8 name: {report}"
    );
    assert!(report["errors"].as_array().unwrap().len() >= 6, "{report}");
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn same_artist_tiles_are_found_far_above_chance() {
    let tmp = tempfile::tempdir().unwrap();
    let tiles = data_dir().join("styles/sd14_artist_tiles/images");
    let index = tmp.path().join("index");
    let report = index_json(&tiles, &index);
    assert_eq!(report["added"], 464);
    let catalog = Catalog::open(&index.join("catalog")).unwrap();
    let next = catalog.next_id().unwrap();
    let artist_of = |id: u64| match catalog.get(id).unwrap() {
        Some(Record::Image(i)) => {
            let name = Path::new(&i.path)
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            name.rsplit_once('_').unwrap().0.to_string()
        }
        _ => panic!("record {id} is not an image"),
    };
    let vectors: Vec<(u64, Vec<f32>)> = catalog
        .image_vectors(0, next)
        .collect::<Result<_, _>>()
        .unwrap();
    let artists: Vec<String> = vectors.iter().map(|(id, _)| artist_of(*id)).collect();
    let mut top1 = 0;
    for (i, (id, v)) in vectors.iter().enumerate() {
        let hits = exact_search(&vectors, v, 2);
        let best = hits.iter().find(|h| h.id != *id).unwrap();
        let j = vectors.iter().position(|(x, _)| *x == best.id).unwrap();
        if artists[i] == artists[j] {
            top1 += 1;
        }
    }
    let rate = top1 as f64 / vectors.len() as f64;
    eprintln!("same-artist top-1 (leave-one-out): {rate:.3}; chance is 7/463 = 0.015");
    assert!(rate > 0.5, "same-artist top-1 {rate}");
}

#[test]
fn a_killed_index_run_resumes_without_loss_or_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let tiles = data_dir().join("styles/sd14_artist_tiles/images");
    let index = tmp.path().join("index");
    let args = [
        "index",
        tiles.to_str().unwrap(),
        "--index",
        index.to_str().unwrap(),
        "--batch",
        "16",
    ];
    let kills = common::kill_until_done(&args, 900, 700);
    assert!(kills >= 1, "the run should have been killed at least once");
    let last = index_json(&tiles, &index);
    assert_eq!(last["added"], 0);
    assert_eq!(last["unchanged"], 464);
    let catalog = Catalog::open(&index.join("catalog")).unwrap();
    assert_eq!(
        catalog.len(),
        464,
        "one record per tile, none lost or doubled"
    );
    assert_eq!(catalog.image_paths().count(), 464);
}

#[test]
fn images_from_another_encoder_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("one");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(
        data_dir().join("eval/sdcpp_lovely_cat/images/f32.png"),
        folder.join("a.png"),
    )
    .unwrap();
    let index = tmp.path().join("index");
    index_json(&folder, &index);
    let out = promptdex(
        &[
            "index",
            folder.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
            "--model",
            "efficientnet-lite2",
        ],
        tmp.path(),
    );
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("efficientnet-lite0") && err.contains("efficientnet-lite2"),
        "{err}"
    );
}
