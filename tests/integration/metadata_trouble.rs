//! Metadata trouble never loses an image: PNGs (written here with the `image` crate) whose
//! `workflow` chunk is over the metadata limit, whose `parameters` are malformed JSON, whose
//! text chunk has a bad CRC or bad zlib data, and one with a 900 KB prompt, are all indexed
//! by the real CLI and models; each problem is a warning naming the file and the chunk, and
//! `generate` works on each file.

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};

use common::png::png_chunk as chunk;
use common::{promptdex, stderr, stdout};
use promptdex::ingest::MAX_PROMPT_BYTES;
use promptdex::store::{path_key, Catalog};
use serde_json::Value;

/// A real 96x64 PNG (a gradient, tinted by `seed`) with `extra` chunks before its `IEND`.
fn png(seed: u8, extra: &[Vec<u8>]) -> Vec<u8> {
    let image = image::RgbImage::from_fn(96, 64, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 3) as u8, seed.wrapping_mul(40)])
    });
    let mut bytes = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    let iend = bytes.len() - 12;
    let mut out = bytes[..iend].to_vec();
    for c in extra {
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&bytes[iend..]);
    out
}

fn text(keyword: &str, text: &str) -> Vec<u8> {
    chunk(
        b"tEXt",
        &[keyword.as_bytes(), b"\0", text.as_bytes()].concat(),
    )
}

/// The troubled files, by name, with what their warning must say.
fn write_files(folder: &Path) -> Vec<(&'static str, &'static str)> {
    std::fs::create_dir_all(folder).unwrap();
    let huge = format!("{{\"nodes\": [], \"pad\": \"{}\"}}", "x".repeat(2 << 20));
    let write = |name: &str, bytes: Vec<u8>| std::fs::write(folder.join(name), bytes).unwrap();
    write("huge_workflow.png", png(1, &[text("workflow", &huge)]));
    write(
        "bad_json.png",
        png(2, &[text("parameters", "{\"prompt\": \"a cat\", ")]),
    );
    let mut bad_crc = text(
        "parameters",
        "a cat on a mat\nSteps: 20, Sampler: Euler, Seed: 1",
    );
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xFF;
    write("bad_crc.png", png(3, &[bad_crc]));
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    zlib.write_all(b"a lovely cat in the sun, long enough to be cut")
        .unwrap();
    let compressed = zlib.finish().unwrap();
    let cut = [
        b"prompt\0\0".as_slice(),
        &compressed[..compressed.len() / 2],
    ]
    .concat();
    write("bad_zlib.png", png(4, &[chunk(b"zTXt", &cut)]));
    let long = format!(
        "{}\nSteps: 20, Sampler: Euler, Seed: 1",
        "a lighthouse on a cliff, ".repeat(36_000)
    );
    write("long_prompt.png", png(5, &[text("parameters", &long)]));
    vec![
        ("huge_workflow.png", "\"workflow\""),
        ("bad_json.png", "\"parameters\""),
        ("bad_crc.png", "CRC"),
        ("bad_zlib.png", "zlib"),
        ("long_prompt.png", "cut"),
    ]
}

fn run_json(args: &[&str], cwd: &Path) -> (Value, String) {
    let out = promptdex(args, cwd);
    let err = stderr(&out);
    assert!(out.status.success(), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let text = stdout(&out);
    let json = serde_json::from_str(text.lines().last().unwrap_or(""))
        .or_else(|_| serde_json::from_str(&text))
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"));
    (json, err)
}

#[test]
fn images_with_broken_or_huge_metadata_are_indexed_and_generate_works() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("troubled");
    let files = write_files(&folder);
    let index = tmp.path().join("index");
    let (report, err) = run_json(
        &[
            "index",
            folder.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
            "--json",
        ],
        tmp.path(),
    );
    assert_eq!(report["added"], 5, "{report}\n{err}");
    assert_eq!(report["errors"].as_array().unwrap().len(), 0, "{report}");
    let warnings = report["warnings"].as_array().expect("a warnings list");
    for (name, says) in &files {
        let line = warnings
            .iter()
            .map(|w| w[1].as_str().unwrap())
            .find(|w| w.contains(name))
            .unwrap_or_else(|| panic!("no warning for {name}: {report}"));
        assert!(line.contains(says), "{name}: {line:?} should say {says:?}");
        assert!(err.contains(name), "no progress message for {name}: {err}");
    }

    // Every record is there; only the long prompt survives, cut to the limit.
    let catalog = Catalog::open(&index.join("catalog")).unwrap();
    let record = |name: &str| {
        let path: PathBuf = folder.join(name).canonicalize().unwrap();
        catalog
            .image_by_path(&path_key(&path))
            .unwrap()
            .unwrap_or_else(|| panic!("no record for {name}"))
            .1
    };
    for (name, _) in &files[..4] {
        let r = record(name);
        assert_eq!(r.prompt, None, "{name}");
        assert_eq!((r.width, r.height), (96, 64), "{name}");
    }
    let long = record("long_prompt.png");
    let prompt = long.prompt.expect("the cut prompt");
    assert!(prompt.len() <= MAX_PROMPT_BYTES && prompt.starts_with("a lighthouse on a cliff"));
    assert_eq!(long.parameters["steps"], 20);
    drop(catalog);

    // generate works on each: from the pixels where the metadata was unreadable.
    for (name, says) in &files {
        let path = folder.join(name);
        let (list, _) = run_json(
            &[
                "generate",
                path.to_str().unwrap(),
                "--index",
                index.to_str().unwrap(),
                "--json",
            ],
            tmp.path(),
        );
        let result = &list[0]["result"];
        assert!(
            result["prompt"].as_str().is_some_and(|p| !p.is_empty()),
            "{name}: {list}"
        );
        let expected = if *name == "long_prompt.png" {
            "embedded"
        } else {
            "ensemble"
        };
        assert_eq!(result["source"], expected, "{name}: {list}");
        let warnings = result["warnings"].as_array().unwrap();
        assert!(
            warnings.iter().any(|w| w.as_str().unwrap().contains(says)),
            "{name}: {list}"
        );
    }
}
