//! Prompts embedded in image files: the real stable-diffusion.cpp outputs in the shared data,
//! one small fixture per format (written by `scripts/make_metadata_fixtures.py`), malformed
//! files built here, and the A1111 `parameters` parser on its own.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use promptdex::ingest::metadata::{
    parse_a1111_parameters, read_embedded_prompt, read_embedded_prompt_bytes, EmbeddedPrompt,
    Provenance, MAX_TEXT_BYTES,
};
use promptdex::Error;
use serde_json::{json, Value};

/// The shared real data: `$PROMPTDEX_DATA`, else `../shared/data` beside the repository.
fn data_dir() -> PathBuf {
    std::env::var_os("PROMPTDEX_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/metadata")
        .join(name)
}

/// The prompt of a fixture that must have one.
fn read(name: &str) -> EmbeddedPrompt {
    match read_embedded_prompt(&fixture(name)) {
        Ok(Some(found)) => found,
        other => panic!("{name}: expected a prompt, got {other:?}"),
    }
}

fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn param<'a>(found: &'a EmbeddedPrompt, key: &str) -> &'a Value {
    found
        .parameters
        .get(key)
        .unwrap_or_else(|| panic!("no {key:?} in {:?}", found.parameters))
}

// --- real files --------------------------------------------------------------------------

struct Row {
    prompt: String,
    width: u64,
    height: u64,
    embedded: String,
}

#[test]
fn sdcpp_lovely_cat_images_match_their_prompts() {
    let dir = data_dir().join("eval/sdcpp_lovely_cat");
    let csv_path = dir.join("prompts.csv");
    let mut reader = csv::Reader::from_path(&csv_path)
        .unwrap_or_else(|e| panic!("{}: {e} (set PROMPTDEX_DATA)", csv_path.display()));
    let mut rows = HashMap::new();
    for record in reader.records() {
        let r = record.expect("prompts.csv row");
        let row = Row {
            prompt: r[1].to_string(),
            width: r[3].parse().expect("width"),
            height: r[4].parse().expect("height"),
            embedded: r[6].to_string(),
        };
        rows.insert(r[0].to_string(), row);
    }
    let mut names: Vec<String> = std::fs::read_dir(dir.join("images"))
        .expect("images folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".png"))
        .collect();
    names.sort();
    let (mut with, mut without) = (0, 0);
    for name in &names {
        let path = dir.join("images").join(name);
        let row = &rows[&format!("images/{name}")];
        let found = read_embedded_prompt(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        if row.embedded.is_empty() {
            assert!(
                found.is_none(),
                "{name}: no parameters expected, got {found:?}"
            );
            without += 1;
            continue;
        }
        let found = found.unwrap_or_else(|| panic!("{name}: parameters chunk not found"));
        assert_eq!(found.provenance, Provenance::A1111Parameters, "{name}");
        assert_eq!(found.location, r#"tEXt "parameters""#, "{name}");
        assert!(!found.prompt.is_empty(), "{name}");
        assert_eq!(squash(&found.prompt), squash(&row.prompt), "{name}");
        assert_eq!(found.negative_prompt, None, "{name}");
        // The expected settings, from the CSV's own copy: "prompt | Key: value, ...".
        let (_, settings) = row.embedded.rsplit_once(" | ").expect("prompt | settings");
        let expected: HashMap<&str, &str> = settings
            .split(", ")
            .filter_map(|pair| pair.split_once(": "))
            .collect();
        let number = |key: &str| expected[key].parse::<f64>().expect("number");
        assert_eq!(
            param(&found, "steps").as_u64(),
            Some(number("Steps") as u64),
            "{name}"
        );
        assert_eq!(
            param(&found, "seed").as_u64(),
            Some(number("Seed") as u64),
            "{name}"
        );
        assert_eq!(
            param(&found, "cfg_scale").as_f64(),
            Some(number("CFG scale")),
            "{name}"
        );
        assert_eq!(
            param(&found, "size"),
            &json!(format!("{}x{}", row.width, row.height))
        );
        assert_eq!(param(&found, "width").as_u64(), Some(row.width), "{name}");
        assert_eq!(param(&found, "height").as_u64(), Some(row.height), "{name}");
        assert_eq!(
            param(&found, "sampler"),
            &json!(expected["Sampler"]),
            "{name}"
        );
        assert_eq!(param(&found, "model"), &json!(expected["Model"]), "{name}");
        with += 1;
    }
    let expected_with = rows.values().filter(|r| !r.embedded.is_empty()).count();
    assert_eq!(with, expected_with, "images with parameters");
    assert_eq!(with + without, rows.len(), "every listed image read");
    assert!(with >= 5 && without >= 8, "with {with}, without {without}");
}

// --- one fixture per format --------------------------------------------------------------

#[test]
fn a1111_text_chunk() {
    let found = read("a1111_text.png");
    assert_eq!(found.provenance, Provenance::A1111Parameters);
    assert_eq!(found.location, r#"tEXt "parameters""#);
    assert_eq!(
        found.prompt,
        "masterpiece, a lovely cat\nsitting on a windowsill, <lora:catstyle:0.8>"
    );
    assert_eq!(
        found.negative_prompt.as_deref(),
        Some("blurry, lowres,\nbad anatomy")
    );
    let p = &found.parameters;
    assert_eq!(p["steps"], json!(28));
    assert_eq!(p["sampler"], json!("DPM++ 2M"));
    assert_eq!(p["schedule_type"], json!("Karras"));
    assert_eq!(p["cfg_scale"], json!(6.5));
    assert_eq!(p["seed"], json!(3141592653u64));
    assert_eq!(p["size"], json!("768x512"));
    assert_eq!(
        (p["width"].clone(), p["height"].clone()),
        (json!(768), json!(512))
    );
    assert_eq!(p["model_hash"], json!("0123abcd"));
    assert_eq!(p["model"], json!("sd_xl_base_1.0"));
    assert_eq!(
        p["lora_hashes"],
        json!("catstyle: 9f8e7d6c5b4a, other: 0011")
    );
    assert_eq!(p["version"], json!("v1.10.1"));
}

#[test]
fn a1111_compressed_itxt_and_ztxt() {
    let found = read("a1111_itxt_compressed.png");
    assert_eq!(found.location, r#"iTXt "parameters""#);
    assert_eq!(found.prompt, "un café, 猫 au soleil — ünïcode");
    assert_eq!(found.negative_prompt.as_deref(), Some("低品質"));
    assert_eq!(found.parameters["sampler"], json!("Euler a"));
    assert_eq!(found.parameters["cfg_scale"], json!(7));

    let found = read("a1111_ztxt.png");
    assert_eq!(found.location, r#"zTXt "parameters""#);
    assert_eq!(found.prompt, "a red fox in snow");
    assert_eq!(found.parameters["seed"], json!(7));

    // Text chunks after IDAT are found too.
    let found = read("a1111_after_idat.png");
    assert_eq!(found.prompt, "a red fox in snow");
    assert_eq!(found.location, r#"iTXt "parameters""#);
}

#[test]
fn invokeai_three_generations() {
    let found = read("invokeai.png");
    assert_eq!(found.provenance, Provenance::InvokeAi);
    assert_eq!(found.prompt, "a castle on a hill, golden hour");
    assert_eq!(found.negative_prompt.as_deref(), Some("fog, people"));
    let p = &found.parameters;
    assert_eq!(p["seed"], json!(1234567));
    assert_eq!(p["steps"], json!(30));
    assert_eq!(p["cfg_scale"], json!(7.5));
    assert_eq!(p["sampler"], json!("dpmpp_2m_k"));
    assert_eq!(p["model"], json!("dreamshaper-8"));
    assert_eq!(p["model_hash"], json!("blake3:ff00"));
    assert_eq!(
        (p["width"].clone(), p["height"].clone()),
        (json!(512), json!(768))
    );

    // sd-metadata wins over the Dream line next to it.
    let found = read("invokeai_sd_metadata.png");
    assert_eq!(found.provenance, Provenance::InvokeAiLegacy);
    assert_eq!(found.prompt, "a lighthouse at dusk");
    assert_eq!(found.negative_prompt.as_deref(), Some("rain, fog"));
    assert_eq!(found.parameters["sampler"], json!("k_lms"));
    assert_eq!(found.parameters["model"], json!("stable-diffusion-1.5"));
    assert_eq!(found.parameters["model_hash"], json!("cc6cb27103"));

    let found = read("invokeai_dream.png");
    assert_eq!(found.provenance, Provenance::InvokeAiDream);
    assert_eq!(found.prompt, r#"a watercolor "otter""#);
    assert_eq!(found.negative_prompt.as_deref(), Some("ugly, blurry"));
    let p = &found.parameters;
    assert_eq!(p["steps"], json!(50));
    assert_eq!(p["seed"], json!(42));
    assert_eq!(p["cfg_scale"], json!(7.5));
    assert_eq!(p["sampler"], json!("k_lms"));
    assert_eq!(p["size"], json!("512x576"));
}

#[test]
fn comfyui_prompt_graph_follows_links() {
    let found = read("comfyui_prompt.png");
    assert_eq!(found.provenance, Provenance::ComfyUi);
    assert_eq!(found.location, r#"tEXt "prompt""#);
    assert_eq!(found.prompt, "a fluffy orange cat, sitting in a sunbeam");
    assert_eq!(found.negative_prompt.as_deref(), Some("watermark, text"));
    let p = &found.parameters;
    assert_eq!(p["seed"], json!(156680208700286u64));
    assert_eq!(p["steps"], json!(25));
    assert_eq!(p["cfg_scale"], json!(6.0));
    assert_eq!(p["sampler"], json!("dpmpp_2m"));
    assert_eq!(p["scheduler"], json!("karras"));
    assert_eq!(p["model"], json!("sd_xl_base_1.0.safetensors"));
    assert_eq!(p["size"], json!("1024x768"));
}

#[test]
fn comfyui_workflow_only() {
    let found = read("comfyui_workflow.png");
    assert_eq!(found.provenance, Provenance::ComfyUiWorkflow);
    assert_eq!(found.prompt, "a misty forest, volumetric light");
    assert_eq!(found.negative_prompt.as_deref(), Some("cartoon"));
    assert_eq!(found.parameters["seed"], json!(8566257));
    assert_eq!(found.parameters["steps"], json!(20));
    assert_eq!(found.parameters["sampler"], json!("euler"));
}

#[test]
fn novelai_description_and_comment() {
    let found = read("novelai.png");
    assert_eq!(found.provenance, Provenance::NovelAi);
    assert_eq!(found.prompt, "1girl, silver hair, starry sky");
    assert_eq!(found.negative_prompt.as_deref(), Some("lowres, bad hands"));
    let p = &found.parameters;
    assert_eq!(p["steps"], json!(28));
    assert_eq!(p["cfg_scale"], json!(5.0));
    assert_eq!(p["seed"], json!(2718281828u64));
    assert_eq!(p["sampler"], json!("k_euler_ancestral"));
    assert_eq!(p["size"], json!("832x1216"));
    assert_eq!(p["model"], json!("Stable Diffusion XL C1E1DE52"));
}

#[test]
fn fooocus_and_easy_diffusion() {
    let found = read("fooocus.png");
    assert_eq!(found.provenance, Provenance::JsonParameters);
    assert_eq!(found.prompt, "a cozy cabin in the woods");
    assert_eq!(found.negative_prompt.as_deref(), Some("people"));
    assert_eq!(found.parameters["cfg_scale"], json!(4));
    assert_eq!(
        found.parameters["model"],
        json!("juggernautXL_v8Rundiffusion")
    );

    let found = read("easydiffusion.png");
    assert_eq!(found.provenance, Provenance::PlainPrompt);
    assert_eq!(found.prompt, "{red|blue} balloon over a city");
    assert_eq!(found.negative_prompt.as_deref(), Some("clouds"));
    assert_eq!(found.parameters["seed"], json!(31337));
    assert_eq!(found.parameters["steps"], json!(25));
    assert_eq!(found.parameters["cfg_scale"], json!(7.5));
    assert_eq!(found.parameters["model"], json!("sd-v1-5"));
}

fn assert_exif_text(found: &EmbeddedPrompt) {
    assert_eq!(found.provenance, Provenance::ExifUserComment);
    assert_eq!(found.prompt, "a paper boat on a pond");
    assert_eq!(found.negative_prompt.as_deref(), Some("dark"));
    assert_eq!(found.parameters["seed"], json!(99));
    assert_eq!(found.parameters["size"], json!("8x8"));
}

#[test]
fn exif_user_comment_in_jpeg_webp_and_png() {
    // UTF-16 big-endian, then little-endian in a big-endian TIFF: the order is detected.
    for name in ["a1111_utf16be.jpg", "a1111_utf16le.jpg"] {
        let found = read(name);
        assert_exif_text(&found);
        assert_eq!(found.location, "JPEG EXIF UserComment", "{name}");
    }
    let found = read("a1111_exif.webp");
    assert_exif_text(&found);
    assert_eq!(found.location, "WebP EXIF UserComment");
    let found = read("png_exif.png");
    assert_exif_text(&found);
    assert_eq!(found.location, "PNG eXIf UserComment");

    // ComfyUI's WebP saver: the API graph in the EXIF Model tag.
    let found = read("comfyui_exif.webp");
    assert_eq!(found.provenance, Provenance::ComfyUi);
    assert_eq!(found.prompt, "a fluffy orange cat, sitting in a sunbeam");
    assert_eq!(found.location, "WebP EXIF Model");
}

#[test]
fn bytes_in_memory_read_like_files_without_sidecars() {
    let files = std::fs::read_dir(fixture("")).unwrap();
    let mut compared = 0;
    for entry in files {
        let path = entry.unwrap().path();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        if !["png", "jpg", "webp"].contains(&ext) {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let from_bytes = read_embedded_prompt_bytes(name, &bytes).unwrap();
        let from_file = read_embedded_prompt(&path).unwrap();
        // Sidecars belong to files on disk: an upload has none.
        let expected = from_file.filter(|f| f.provenance != Provenance::Sidecar);
        assert_eq!(from_bytes, expected, "{name}");
        compared += 1;
    }
    assert!(compared >= 20, "{compared} fixtures");
    for (bytes, detail) in [
        (&b""[..], "empty"),
        (&b"GET / HTTP/1.1"[..], "not an image"),
        (&b"\x89PNG\r\n"[..], "truncated"),
    ] {
        let err = read_embedded_prompt_bytes("upload", bytes).unwrap_err();
        assert!(matches!(err, Error::Input { .. }), "{err:?}");
        assert!(err.to_string().contains(detail), "{err}");
    }
}

#[test]
fn images_without_prompts() {
    for name in ["no_prompt.png", "no_prompt.jpg", "no_prompt.webp"] {
        let found = read_embedded_prompt(&fixture(name)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(found, None, "{name}");
    }
}

#[test]
fn sidecars() {
    let found = read("sidecar.png");
    assert_eq!(found.provenance, Provenance::Sidecar);
    assert_eq!(found.location, "sidecar.txt");
    assert_eq!(found.prompt, "a snowy mountain village at night");
    assert_eq!(found.negative_prompt.as_deref(), Some("daylight"));
    assert_eq!(found.parameters["steps"], json!(30));

    let found = read("caption.png");
    assert_eq!(found.provenance, Provenance::Sidecar);
    assert_eq!(found.location, "caption.caption");
    assert_eq!(found.prompt, "1girl, solo, red scarf, winter");
    assert!(found.parameters.is_empty());

    // Embedded metadata wins over the sidecar.
    let found = read("embedded_wins.png");
    assert_eq!(found.provenance, Provenance::A1111Parameters);
    assert_eq!(found.prompt, "a red fox in snow");
}

// --- malformed files ---------------------------------------------------------------------

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
    out
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A 1x1 PNG whose only metadata is `chunk`.
fn png_with(chunk: Vec<u8>) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(png_chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]));
    out.extend(chunk);
    out.extend(png_chunk(b"IDAT", &zlib(&[0, 255, 128, 0])));
    out.extend(png_chunk(b"IEND", b""));
    out
}

/// Writes `bytes` as `name` in `dir` and expects an input error naming that file.
fn expect_input_error(dir: &Path, name: &str, bytes: &[u8], detail_has: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    match read_embedded_prompt(&path) {
        Err(Error::Input { path: p, detail }) => {
            assert_eq!(p, path, "{name}: the error names the file");
            eprintln!("{name}: {detail}");
            assert!(
                detail.to_lowercase().contains(detail_has),
                "{name}: {detail:?} should mention {detail_has:?}"
            );
            detail
        }
        other => panic!("{name}: expected an input error, got {other:?}"),
    }
}

#[test]
fn malformed_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let good = std::fs::read(fixture("a1111_text.png")).unwrap();

    expect_input_error(dir, "empty.png", b"", "empty");
    expect_input_error(
        dir,
        "text.png",
        b"a lovely cat\nSteps: 20\n",
        "not an image",
    );
    expect_input_error(dir, "random.jpg", &[0xAB; 64], "not a png, jpeg or webp");
    expect_input_error(dir, "short.png", &good[..5], "truncated");
    expect_input_error(dir, "cut.png", &good[..good.len() / 2], "truncated");
    expect_input_error(dir, "no_iend.png", &good[..good.len() - 12], "truncated");

    let mut bad_crc = good.clone();
    let at = bad_crc
        .windows(10)
        .position(|w| w == b"parameters")
        .unwrap();
    bad_crc[at + 12] ^= 0x20;
    expect_input_error(dir, "bad_crc.png", &bad_crc, "crc");

    let garbage = b"parameters\0\0this is not zlib data".to_vec();
    expect_input_error(
        dir,
        "bad_zlib.png",
        &png_with(png_chunk(b"zTXt", &garbage)),
        "zlib",
    );
    let mut cut_zlib = b"parameters\0\x01\0\0\0".to_vec();
    let compressed = zlib(b"a lovely cat, and a long enough prompt to cut in half");
    cut_zlib.extend_from_slice(&compressed[..compressed.len() / 2]);
    expect_input_error(
        dir,
        "cut_zlib.png",
        &png_with(png_chunk(b"iTXt", &cut_zlib)),
        "zlib",
    );

    let mut bad_utf8 = b"parameters\0\0\0\0\0a lovely ".to_vec();
    bad_utf8.extend_from_slice(&[0xFF, 0xFE, 0xC3]);
    expect_input_error(
        dir,
        "bad_utf8.png",
        &png_with(png_chunk(b"iTXt", &bad_utf8)),
        "utf-8",
    );

    let mut huge = b"parameters\0".to_vec();
    huge.resize(2 << 20, b'a');
    expect_input_error(
        dir,
        "huge.png",
        &png_with(png_chunk(b"tEXt", &huge)),
        "limit",
    );
    let bomb = [b"parameters\0\0".as_slice(), &zlib(&vec![b'a'; 2 << 20])].concat();
    assert!(bomb.len() < MAX_TEXT_BYTES);
    expect_input_error(
        dir,
        "bomb.png",
        &png_with(png_chunk(b"zTXt", &bomb)),
        "limit",
    );

    let jpeg = std::fs::read(fixture("a1111_utf16be.jpg")).unwrap();
    expect_input_error(dir, "cut.jpg", &jpeg[..60], "truncated");
    let riff = [b"RIFF".as_slice(), &4u32.to_le_bytes(), b"WEBP"].concat();
    expect_input_error(dir, "empty_riff.webp", &riff, "no vp8");
    let webp = std::fs::read(fixture("a1111_exif.webp")).unwrap();
    expect_input_error(dir, "cut.webp", &webp[..webp.len() - 10], "truncated");
}

#[test]
fn every_truncation_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "a1111_itxt_compressed.png",
        "comfyui_prompt.png",
        "a1111_exif.webp",
    ] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        for len in 0..bytes.len() {
            let path = dir.path().join(format!("{len}_{name}"));
            std::fs::write(&path, &bytes[..len]).unwrap();
            match read_embedded_prompt(&path) {
                Err(Error::Input { path: p, .. }) => assert_eq!(p, path),
                other => panic!("{name} cut to {len} bytes: {other:?}"),
            }
        }
    }
    // A JPEG is read up to its EXIF: cuts before its end must fail, none may panic.
    let jpeg = std::fs::read(fixture("a1111_utf16be.jpg")).unwrap();
    let exif_end = 2 + 18 + 2 + u16::from_be_bytes([jpeg[22], jpeg[23]]) as usize;
    for len in 0..jpeg.len() {
        let path = dir.path().join(format!("{len}.jpg"));
        std::fs::write(&path, &jpeg[..len]).unwrap();
        let result = read_embedded_prompt(&path);
        if len < exif_end {
            assert!(
                matches!(result, Err(Error::Input { .. })),
                "cut to {len}: {result:?}"
            );
        }
    }
}

#[test]
fn corrupted_bytes_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flipped.png");
    let mut names: Vec<String> = std::fs::read_dir(fixture(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".png") || n.ends_with(".jpg") || n.ends_with(".webp"))
        .collect();
    names.sort();
    let mut errors = 0;
    for name in &names {
        let good = std::fs::read(fixture(name)).unwrap();
        for at in 0..good.len() {
            let flip = [0x01u8, 0x80, 0xFF][at % 3];
            let mut bytes = good.clone();
            bytes[at] ^= flip;
            std::fs::write(&path, &bytes).unwrap();
            // Any answer but a panic; errors must be about the file.
            match read_embedded_prompt(&path) {
                Err(Error::Input { path: p, .. }) => {
                    assert_eq!(p, path);
                    errors += 1;
                }
                Err(other) => panic!("{name} byte {at} ^ {flip:#x}: {other}"),
                Ok(_) => {}
            }
        }
    }
    assert!(errors > 0);
}

#[test]
fn missing_file_is_an_io_error() {
    let err = read_embedded_prompt(Path::new("/nonexistent/promptdex/cat.png")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
}

// --- parse_a1111_parameters --------------------------------------------------------------

#[test]
fn a1111_without_negative_prompt() {
    let found = parse_a1111_parameters(
        "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x768",
    )
    .unwrap();
    assert_eq!(found.prompt, "a cat");
    assert_eq!(found.negative_prompt, None);
    assert_eq!(found.parameters["steps"], json!(20));
    assert_eq!(found.parameters["width"], json!(512));
    assert_eq!(found.parameters["height"], json!(768));
    assert_eq!(found.location, "");
}

#[test]
fn a1111_multi_line_prompt_and_negative() {
    let text =
        "line one,\nline two\r\nNegative prompt: bad,\nworse\nSteps: 5, Sampler: Euler, Seed: 3";
    let found = parse_a1111_parameters(text).unwrap();
    assert_eq!(found.prompt, "line one,\nline two");
    assert_eq!(found.negative_prompt.as_deref(), Some("bad,\nworse"));
    assert_eq!(found.parameters.len(), 3);
}

#[test]
fn a1111_quoted_values_with_commas() {
    let text = r#"a cat
Steps: 20, Lora hashes: "a: 1, b: 2", TI hashes: "emb: \"x\", y", Model hash: 01234567, Denoising strength: 0.45, Hires upscale: 2"#;
    let p = parse_a1111_parameters(text).unwrap().parameters;
    assert_eq!(p["lora_hashes"], json!("a: 1, b: 2"));
    assert_eq!(p["ti_hashes"], json!(r#"emb: "x", y"#));
    assert_eq!(p["model_hash"], json!("01234567"));
    assert_eq!(p["denoising_strength"], json!(0.45));
    assert_eq!(p["hires_upscale"], json!(2));
}

#[test]
fn a1111_without_settings_line() {
    let found = parse_a1111_parameters("  just a prompt, with: a colon\n").unwrap();
    assert_eq!(found.prompt, "just a prompt, with: a colon");
    assert!(found.parameters.is_empty());
    // One line of key: value pairs is a prompt unless it starts with Steps.
    let found = parse_a1111_parameters("style: anime, mood: dark, light: soft").unwrap();
    assert_eq!(found.prompt, "style: anime, mood: dark, light: soft");
    let found = parse_a1111_parameters("a cat\nNegative prompt: dog").unwrap();
    assert_eq!(found.prompt, "a cat");
    assert_eq!(found.negative_prompt.as_deref(), Some("dog"));
    assert!(parse_a1111_parameters(" \n\t").is_none());
}

#[test]
fn a1111_settings_only_and_trailing_lines() {
    let found = parse_a1111_parameters("Steps: 20, Sampler: Euler, Seed: 9").unwrap();
    assert_eq!(found.prompt, "");
    assert_eq!(found.parameters["seed"], json!(9));
    // Dynamic Prompts appends Template lines after the settings.
    let text = "a red cat\nSteps: 20, Sampler: Euler, Seed: 9\nTemplate: a {red|blue} cat\nNegative Template: dog";
    let found = parse_a1111_parameters(text).unwrap();
    assert_eq!(found.prompt, "a red cat");
    assert_eq!(found.parameters["template"], json!("a {red|blue} cat"));
    assert_eq!(found.parameters["negative_template"], json!("dog"));
}
