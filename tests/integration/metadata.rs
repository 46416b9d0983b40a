//! Prompts embedded in image files: the real stable-diffusion.cpp outputs in the shared data,
//! one small fixture per format (written by `scripts/make_metadata_fixtures.py`), malformed
//! files built here, ComfyUI graphs (real shapes and pathological ones), the shared prompt
//! limit, and the A1111 `parameters` parser on its own.
use crate::common::png;

use png::png_chunk;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use promptdex::ingest::metadata::{
    parse_a1111_parameters, read_embedded_prompt, read_embedded_prompt_bytes, EmbeddedPrompt,
    Provenance, MAX_TEXT_BYTES,
};
use promptdex::Error;
use serde_json::{json, Value};

use crate::common::data_dir;

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

// --- ComfyUI graphs: pass-through nodes to the text encoder ------------------------------

/// A 1x1 PNG with one `tEXt` chunk `keyword` holding `text`.
fn png_text(keyword: &str, text: &str) -> Vec<u8> {
    let data = [keyword.as_bytes(), b"\0", text.as_bytes()].concat();
    png_with(png_chunk(b"tEXt", &data))
}

/// Reads `bytes` written as `name` (strictly), in a thread given `seconds` to answer, so that
/// a reader that hangs fails the test instead of hanging it.
fn read_within(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    seconds: u64,
) -> promptdex::Result<Option<EmbeddedPrompt>> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(read_embedded_prompt(&path));
    });
    let start = std::time::Instant::now();
    let read = receive
        .recv_timeout(std::time::Duration::from_secs(seconds))
        .unwrap_or_else(|_| panic!("{name}: no answer within {seconds} s"));
    eprintln!("{name}: {:.1} ms", start.elapsed().as_secs_f64() * 1e3);
    read
}

fn comfy(dir: &Path, name: &str, keyword: &str, graph: &Value) -> EmbeddedPrompt {
    match read_within(dir, name, &png_text(keyword, &graph.to_string()), 20) {
        Ok(Some(found)) => found,
        other => panic!("{name}: expected a prompt, got {other:?}"),
    }
}

#[test]
fn comfyui_api_graph_is_followed_through_guiders_and_pass_through_nodes() {
    let dir = tempfile::tempdir().unwrap();
    // SamplerCustomAdvanced -> CFGGuider -> ControlNetApplyAdvanced -> timestep range ->
    // combine of an advanced encoder (with mode widgets) and an SDXL encoder.
    let graph = json!({
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
        "2": {"class_type": "BNK_CLIPTextEncodeAdvanced", "inputs": {"text": "a red fox", "clip": ["1", 1],
              "token_normalization": "none", "weight_interpretation": "comfy"}},
        "3": {"class_type": "CLIPTextEncodeSDXL", "inputs": {"text_g": "in the snow", "text_l": "in the snow",
              "clip": ["1", 1], "width": 1024, "height": 1024, "crop_w": 0, "crop_h": 0,
              "target_width": 1024, "target_height": 1024}},
        "4": {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["2", 0], "conditioning_2": ["3", 0]}},
        "5": {"class_type": "ConditioningSetTimestepRange", "inputs": {"conditioning": ["4", 0], "start": 0.0, "end": 1.0}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "7": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "canny.safetensors"}},
        "8": {"class_type": "ControlNetApplyAdvanced", "inputs": {"positive": ["5", 0], "negative": ["6", 0],
              "control_net": ["7", 0], "image": ["9", 0], "strength": 1.0}},
        "9": {"class_type": "LoadImage", "inputs": {"image": "pose.png"}},
        "10": {"class_type": "CFGGuider", "inputs": {"model": ["1", 0], "positive": ["8", 0], "negative": ["8", 1], "cfg": 5.5}},
        "11": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "12": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "simple", "steps": 30, "denoise": 1.0}},
        "13": {"class_type": "RandomNoise", "inputs": {"noise_seed": 77}},
        "14": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["13", 0], "guider": ["10", 0],
               "sampler": ["11", 0], "sigmas": ["12", 0], "latent_image": ["15", 0]}},
        "15": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 768, "batch_size": 1}}
    });
    let found = comfy(dir.path(), "guided.png", "prompt", &graph);
    assert_eq!(found.provenance, Provenance::ComfyUi);
    assert_eq!(found.prompt, "a red fox, in the snow");
    assert_eq!(found.negative_prompt.as_deref(), Some("blurry"));
    let p = &found.parameters;
    assert_eq!(p["steps"], json!(30), "{p:?}");
    assert_eq!(p["seed"], json!(77));
    assert_eq!(p["sampler"], json!("euler"));
    assert_eq!(p["cfg_scale"], json!(5.5));
    assert_eq!(p["model"], json!("sdxl.safetensors"));
    assert_eq!(p["size"], json!("1024x768"));

    // DualCFGGuider over video conditioning, a style model, set-area and concat nodes.
    let graph = json!({
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a dancer on a rooftop", "clip": ["17", 0]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "at sunset", "clip": ["17", 0]}},
        "4": {"class_type": "ConditioningConcat", "inputs": {"conditioning_to": ["2", 0], "conditioning_from": ["3", 0]}},
        "5": {"class_type": "StyleModelApply", "inputs": {"conditioning": ["4", 0], "style_model": ["6", 0],
              "clip_vision_output": ["7", 0], "strength": 1.0, "strength_type": "multiply"}},
        "6": {"class_type": "StyleModelLoader", "inputs": {"style_model_name": "redux.safetensors"}},
        "7": {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": ["8", 0], "image": ["9", 0], "crop": "center"}},
        "8": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "vision.safetensors"}},
        "9": {"class_type": "LoadImage", "inputs": {"image": "start.png"}},
        "10": {"class_type": "CLIPTextEncode", "inputs": {"text": "low quality", "clip": ["17", 0]}},
        "11": {"class_type": "WanImageToVideo", "inputs": {"positive": ["5", 0], "negative": ["10", 0],
               "vae": ["18", 0], "start_image": ["9", 0], "width": 832, "height": 480, "length": 81, "batch_size": 1}},
        "12": {"class_type": "ConditioningSetArea", "inputs": {"conditioning": ["11", 0], "width": 512,
               "height": 512, "x": 0, "y": 0, "strength": 1.0}},
        "13": {"class_type": "DualCFGGuider", "inputs": {"model": ["1", 0], "cond1": ["12", 0], "cond2": ["14", 0],
               "negative": ["11", 1], "cfg_conds": 4.0, "cfg_cond2_negative": 1.5}},
        "14": {"class_type": "CLIPTextEncode", "inputs": {"text": "cinematic", "clip": ["17", 0]}},
        "15": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["16", 0], "guider": ["13", 0],
               "sampler": ["19", 0], "sigmas": ["20", 0], "latent_image": ["11", 2]}},
        "16": {"class_type": "RandomNoise", "inputs": {"noise_seed": 5}},
        "17": {"class_type": "CLIPLoader", "inputs": {"clip_name": "umt5.safetensors", "type": "wan"}},
        "18": {"class_type": "VAELoader", "inputs": {"vae_name": "wan_vae.safetensors"}},
        "19": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "uni_pc"}},
        "20": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "simple", "steps": 20, "denoise": 1.0}}
    });
    let found = comfy(dir.path(), "video.png", "prompt", &graph);
    assert_eq!(found.prompt, "a dancer on a rooftop, at sunset, cinematic");
    assert_eq!(found.negative_prompt.as_deref(), Some("low quality"));
    assert_eq!(found.parameters["seed"], json!(5));
    assert_eq!(found.parameters["model"], json!("wan.safetensors"));
    assert_eq!(found.parameters["sampler"], json!("uni_pc"));

    // BasicGuider over FluxGuidance over a Flux encoder.
    let graph = json!({
        "1": {"class_type": "CLIPTextEncodeFlux", "inputs": {"clip_l": "a lighthouse",
              "t5xxl": "a lighthouse on a cliff at night", "guidance": 3.5, "clip": ["5", 0]}},
        "2": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["1", 0], "guidance": 3.5}},
        "3": {"class_type": "BasicGuider", "inputs": {"model": ["6", 0], "conditioning": ["2", 0]}},
        "4": {"class_type": "SamplerCustomAdvanced", "inputs": {"guider": ["3", 0], "noise": ["7", 0]}},
        "5": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "clip_l.safetensors", "clip_name2": "t5.safetensors"}},
        "6": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors"}},
        "7": {"class_type": "RandomNoise", "inputs": {"noise_seed": 9}}
    });
    let found = comfy(dir.path(), "flux.png", "prompt", &graph);
    assert_eq!(
        found.prompt,
        "a lighthouse, a lighthouse on a cliff at night"
    );
    assert_eq!(found.negative_prompt, None);
    assert_eq!(found.parameters["model"], json!("flux1-dev.safetensors"));
}

/// A UI-format node: `inputs` as (name, type, link).
fn ui_node(id: u64, kind: &str, inputs: &[(&str, &str, Option<u64>)], widgets: Value) -> Value {
    let inputs: Vec<Value> = inputs
        .iter()
        .map(|(name, ty, link)| json!({"name": name, "type": ty, "link": link}))
        .collect();
    json!({"id": id, "type": kind, "inputs": inputs, "widgets_values": widgets})
}

#[test]
fn comfyui_workflow_is_followed_through_reroutes_and_reads_only_text_widgets() {
    let dir = tempfile::tempdir().unwrap();
    let c = "CONDITIONING";
    let nodes = vec![
        ui_node(
            1,
            "CheckpointLoaderSimple",
            &[],
            json!(["sdxl.safetensors"]),
        ),
        // An encoder with mode widgets: only its text is the prompt.
        ui_node(
            2,
            "BNK_CLIPTextEncodeAdvanced",
            &[("clip", "CLIP", Some(1))],
            json!(["a koi pond in autumn", "none", "comfy"]),
        ),
        ui_node(3, "Reroute", &[("", "*", Some(2))], json!([])),
        ui_node(
            4,
            "ConditioningCombine",
            &[
                ("conditioning_1", c, Some(3)),
                ("conditioning_2", c, Some(4)),
            ],
            json!([]),
        ),
        // An unknown encoder whose first string widget is a model name.
        ui_node(
            5,
            "MyCustomTextEncode",
            &[],
            json!(["t5xxl_fp16.safetensors", "falling leaves", 1.0]),
        ),
        ui_node(6, "CLIPTextEncode", &[], json!(["murky water"])),
        ui_node(
            7,
            "ControlNetApplyAdvanced",
            &[
                ("positive", c, Some(5)),
                ("negative", c, Some(6)),
                ("control_net", "CONTROL_NET", None),
            ],
            json!([0.8, 0.0, 1.0]),
        ),
        ui_node(
            8,
            "KSampler",
            &[
                ("model", "MODEL", None),
                ("positive", c, Some(10)),
                ("negative", c, Some(11)),
            ],
            json!([42, "randomize", 25, 6.5, "dpmpp_2m", "karras", 1.0]),
        ),
        ui_node(9, "Reroute", &[("", "*", Some(13))], json!([])),
    ];
    let links = json!([
        [1, 1, 1, 2, 0, "CLIP"],
        [2, 2, 0, 3, 0, c],
        [3, 3, 0, 4, 0, c],
        [4, 5, 0, 4, 1, c],
        [5, 4, 0, 7, 0, c],
        [6, 9, 0, 7, 1, c],
        [10, 7, 0, 8, 1, c],
        [11, 7, 1, 8, 2, c],
        [13, 6, 0, 9, 0, c]
    ]);
    let workflow = json!({"nodes": nodes, "links": links});
    let found = comfy(dir.path(), "rerouted.png", "workflow", &workflow);
    assert_eq!(found.provenance, Provenance::ComfyUiWorkflow);
    assert_eq!(found.prompt, "a koi pond in autumn, falling leaves");
    assert_eq!(found.negative_prompt.as_deref(), Some("murky water"));
    assert_eq!(found.parameters["seed"], json!(42));
    assert_eq!(found.parameters["steps"], json!(25));
    assert_eq!(found.parameters["sampler"], json!("dpmpp_2m"));

    // SamplerCustomAdvanced through a CFGGuider, a style model and a timestep range; an SD3
    // encoder whose last widget is a padding mode.
    let nodes = vec![
        ui_node(
            1,
            "CLIPTextEncodeSD3",
            &[],
            json!(["a glass", "a glass of water", "a glass of water", "none"]),
        ),
        ui_node(
            2,
            "StyleModelApply",
            &[
                ("conditioning", c, Some(1)),
                ("style_model", "STYLE_MODEL", None),
            ],
            json!([1.0, "multiply"]),
        ),
        ui_node(
            3,
            "ConditioningSetTimestepRange",
            &[("conditioning", c, Some(2))],
            json!([0.0, 1.0]),
        ),
        ui_node(4, "CLIPTextEncode", &[], json!(["text, watermark"])),
        ui_node(
            5,
            "CFGGuider",
            &[
                ("model", "MODEL", None),
                ("positive", c, Some(3)),
                ("negative", c, Some(4)),
            ],
            json!([4.5]),
        ),
        ui_node(
            6,
            "SamplerCustomAdvanced",
            &[("noise", "NOISE", None), ("guider", "GUIDER", Some(5))],
            json!([]),
        ),
    ];
    let links = json!([
        [1, 1, 0, 2, 0, c],
        [2, 2, 0, 3, 0, c],
        [3, 3, 0, 5, 1, c],
        [4, 4, 0, 5, 2, c],
        [5, 5, 0, 6, 1, "GUIDER"]
    ]);
    let workflow = json!({"nodes": nodes, "links": links});
    let found = comfy(dir.path(), "guided_ui.png", "workflow", &workflow);
    assert_eq!(found.prompt, "a glass, a glass of water");
    assert_eq!(found.negative_prompt.as_deref(), Some("text, watermark"));
}

// --- ComfyUI graphs built to blow up -------------------------------------------------------

#[test]
fn pathological_comfyui_graphs_cost_milliseconds_and_give_no_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let every_text_input = |target: &str| {
        let mut inputs = serde_json::Map::new();
        for key in [
            "text",
            "prompt",
            "string",
            "value",
            "text_positive",
            "text_g",
            "text_l",
            "clip_l",
            "t5xxl",
            "string_a",
            "string_b",
        ] {
            inputs.insert(key.into(), json!([target, 0]));
        }
        Value::Object(inputs)
    };
    // A string node whose every text input points back at itself (fan-out 11, forever).
    let graph = json!({
        "1": {"class_type": "KSampler", "inputs": {"positive": ["2", 0], "negative": ["2", 0]}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": ["3", 0]}},
        "3": {"class_type": "StringFunction", "inputs": every_text_input("3")}
    });
    let read = read_within(
        dir,
        "self_loop.png",
        &png_text("prompt", &graph.to_string()),
        20,
    );
    assert_eq!(read.unwrap(), None);

    // A chain of string nodes each reading the next one twice (2^depth paths).
    let mut graph = serde_json::Map::new();
    graph.insert(
        "s".into(),
        json!({"class_type": "KSampler", "inputs": {"positive": ["e", 0]}}),
    );
    graph.insert(
        "e".into(),
        json!({"class_type": "CLIPTextEncode", "inputs": {"text": ["0", 0]}}),
    );
    for i in 0..2000 {
        let next = (i + 1).to_string();
        graph.insert(
            i.to_string(),
            json!({"class_type": "StringConcatenate", "inputs": every_text_input(&next)}),
        );
    }
    let bytes = png_text("prompt", &Value::Object(graph).to_string());
    assert_eq!(read_within(dir, "doubling.png", &bytes, 20).unwrap(), None);

    // A conditioning node with a thousand inputs all pointing back at itself, in a cycle with
    // a second one, in both formats.
    let mut inputs = serde_json::Map::new();
    for i in 0..1000 {
        let target = if i % 2 == 0 { "2" } else { "3" };
        inputs.insert(format!("conditioning_{i}"), json!([target, 0]));
    }
    let graph = json!({
        "1": {"class_type": "KSampler", "inputs": {"positive": ["2", 0], "negative": ["3", 0]}},
        "2": {"class_type": "ConditioningCombine", "inputs": inputs.clone()},
        "3": {"class_type": "ConditioningCombine", "inputs": inputs}
    });
    let bytes = png_text("prompt", &graph.to_string());
    assert_eq!(read_within(dir, "fan_out.png", &bytes, 20).unwrap(), None);
    let c = "CONDITIONING";
    let fan: Vec<(&str, &str, Option<u64>)> =
        (0..1000).map(|_| ("conditioning", c, Some(1))).collect();
    let workflow = json!({
        "nodes": [
            ui_node(1, "ConditioningCombine", &fan, json!([])),
            ui_node(2, "KSampler", &[("positive", c, Some(1)), ("negative", c, Some(1))], json!([])),
        ],
        "links": [[1, 1, 0, 1, 0, c]]
    });
    let bytes = png_text("workflow", &workflow.to_string());
    assert_eq!(
        read_within(dir, "fan_out_ui.png", &bytes, 20).unwrap(),
        None
    );

    // A chain far deeper than any real graph.
    let mut graph = serde_json::Map::new();
    graph.insert(
        "s".into(),
        json!({"class_type": "KSampler", "inputs": {"positive": ["0", 0]}}),
    );
    for i in 0..10_000 {
        let next = (i + 1).to_string();
        graph.insert(
            i.to_string(),
            json!({"class_type": "R", "inputs": {"conditioning": [next, 0]}}),
        );
    }
    graph.insert(
        "10000".into(),
        json!({"class_type": "CLIPTextEncode", "inputs": {"text": "too deep to matter"}}),
    );
    let bytes = png_text("prompt", &Value::Object(graph).to_string());
    assert!(bytes.len() < MAX_TEXT_BYTES);
    assert_eq!(read_within(dir, "deep.png", &bytes, 20).unwrap(), None);
}

#[test]
fn a_graph_that_spends_the_step_budget_gives_up_with_an_error_naming_the_chunk() {
    let dir = tempfile::tempdir().unwrap();
    // Thousands of samplers, each reading a long chain that leads to no text.
    let mut graph = serde_json::Map::new();
    for i in 0..60 {
        let next = (i + 1).to_string();
        graph.insert(
            format!("c{i}"),
            json!({"class_type": "ConditioningSetArea", "inputs": {"conditioning": [format!("c{next}"), 0]}}),
        );
    }
    for i in 0..8000 {
        graph.insert(
            format!("k{i}"),
            json!({"class_type": "KSampler", "inputs": {"positive": ["c0", 0], "negative": ["c0", 0]}}),
        );
    }
    let bytes = png_text("prompt", &Value::Object(graph).to_string());
    let err = read_within(dir.path(), "samplers.png", &bytes, 20).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Input { .. }), "{err:?}");
    assert!(
        text.contains("samplers.png")
            && text.contains("\"prompt\"")
            && text.contains("too complex"),
        "{text}"
    );
}

// --- one prompt size limit ---------------------------------------------------------------

#[test]
fn embedded_prompts_are_cut_to_the_shared_limit() {
    use promptdex::ingest::MAX_PROMPT_BYTES;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // 900 KB of parameters, multi-byte characters, a long negative prompt and settings.
    let prompt = "猫, a cat, ".repeat(900_000 / 13);
    let negative = "ugly, ".repeat(5000);
    let text = format!("{prompt}\nNegative prompt: {negative}\nSteps: 20, Sampler: Euler, Seed: 1");
    let found = read_within(dir, "long.png", &png_text("parameters", &text), 20)
        .unwrap()
        .unwrap();
    assert!(
        found.prompt.len() <= MAX_PROMPT_BYTES,
        "{}",
        found.prompt.len()
    );
    assert!(found.prompt.len() > MAX_PROMPT_BYTES - 16);
    assert!(found.prompt.starts_with("猫, a cat, 猫"));
    let neg = found.negative_prompt.as_deref().unwrap();
    assert!(neg.len() <= MAX_PROMPT_BYTES && neg.starts_with("ugly, "));
    assert_eq!(found.parameters["steps"], json!(20));
    assert_eq!(
        found.parameters["prompt_cut_from_bytes"],
        json!(prompt.trim().len())
    );

    // The same limit for a ComfyUI encoder's text and for a sidecar.
    let graph = json!({
        "1": {"class_type": "KSampler", "inputs": {"positive": ["2", 0]}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "é".repeat(40_000)}}
    });
    let found = read_within(
        dir,
        "comfy_long.png",
        &png_text("prompt", &graph.to_string()),
        20,
    )
    .unwrap()
    .unwrap();
    assert_eq!(found.prompt, "é".repeat(MAX_PROMPT_BYTES / 2));
    let image = dir.join("side.png");
    std::fs::copy(fixture("no_prompt.png"), &image).unwrap();
    std::fs::write(dir.join("side.txt"), "a snowy hill, ".repeat(10_000)).unwrap();
    let found = read_embedded_prompt(&image).unwrap().unwrap();
    assert_eq!(found.provenance, Provenance::Sidecar);
    assert!(found.prompt.len() <= MAX_PROMPT_BYTES && found.prompt.starts_with("a snowy hill"));
}

// --- metadata problems are warnings ----------------------------------------------------

#[test]
fn metadata_problems_are_warnings_naming_the_file_and_the_chunk_and_the_rest_is_read() {
    use promptdex::ingest::metadata::{read_metadata, read_metadata_bytes, Effect};
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: Vec<u8>| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    // Malformed `parameters` JSON next to a readable ComfyUI workflow: the workflow's prompt,
    // and a warning for the parameters chunk.
    let workflow = std::fs::read(fixture("comfyui_workflow.png")).unwrap();
    let mut bytes = workflow[..workflow.len() - 12].to_vec();
    bytes.extend(png_chunk(b"tEXt", b"parameters\0{\"prompt\": \"a cat\", "));
    bytes.extend_from_slice(&workflow[workflow.len() - 12..]);
    let path = write("both.png", bytes);
    let read = read_metadata(&path).unwrap();
    assert_eq!(
        read.prompt.as_ref().map(|f| f.prompt.as_str()),
        Some("a misty forest, volumetric light")
    );
    assert_eq!(read.warnings.len(), 1, "{:?}", read.warnings);
    let w = &read.warnings[0];
    assert_eq!(
        (w.path.as_path(), w.effect),
        (path.as_path(), Effect::Ignored)
    );
    assert_eq!(w.location, r#"tEXt "parameters""#);
    let line = w.to_string();
    assert!(
        line.contains("both.png") && line.contains("not valid JSON"),
        "{line}"
    );

    // A chunk over the limit, one with a bad CRC, bad zlib: each named, none fatal.
    let mut huge = b"workflow\0".to_vec();
    huge.resize(2 << 20, b'a');
    let mut bad_crc = png_chunk(b"tEXt", b"parameters\0a cat\nSteps: 2");
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 1;
    let chunks = [
        png_chunk(b"tEXt", &huge),
        bad_crc,
        png_chunk(b"zTXt", b"prompt\0\0not zlib"),
        png_chunk(b"tEXt", b"Dream\0\"a red boat\" -s 5"),
    ]
    .concat();
    let read = read_metadata(&write("many.png", png_with(chunks))).unwrap();
    let found = read.prompt.expect("the Dream chunk is still read");
    assert_eq!(found.prompt, "a red boat");
    let located: Vec<(&str, &str)> = read
        .warnings
        .iter()
        .map(|w| (w.location.as_str(), w.detail.as_str()))
        .collect();
    assert_eq!(located.len(), 3, "{located:?}");
    assert_eq!(located[0].0, r#"tEXt "workflow""#);
    assert!(located[0].1.contains("limit"));
    assert_eq!(located[1], (r#"tEXt "parameters""#, "CRC mismatch"));
    assert_eq!(located[2].0, r#"zTXt "prompt""#);
    assert!(located[2].1.contains("zlib"));

    // Not an image at all, or cut short: warnings for the file as a whole, never an error.
    let read = read_metadata_bytes("upload.png", b"GET / HTTP/1.1");
    assert_eq!(read.prompt, None);
    assert_eq!(read.warnings[0].location, "");
    assert!(read.warnings[0]
        .to_string()
        .starts_with("upload.png: not an image"));
    let good = std::fs::read(fixture("a1111_text.png")).unwrap();
    let read = read_metadata_bytes("cut.png", &good[..good.len() - 12]);
    assert!(read.prompt.is_some(), "chunks before the cut are read");
    assert!(read.warnings[0].detail.contains("truncated"));

    // An over-long prompt is a warning of its own kind, and the strict reader accepts it.
    let long = format!("{}\nSteps: 3", "a cat, ".repeat(10_000));
    let read = read_metadata_bytes("long.png", &png_text("parameters", &long));
    assert_eq!(read.warnings.len(), 1);
    assert_eq!(read.warnings[0].effect, Effect::Cut);
    assert_eq!(read.warnings[0].location, r#"tEXt "parameters""#);
    assert!(read_embedded_prompt_bytes("long.png", &png_text("parameters", &long)).is_ok());

    // Settings too big to keep are dropped, the rest kept.
    let big = json!({"prompt": "a cat", "seed": 1, "notes": "x".repeat(40_000)});
    let read = read_metadata_bytes("fooocus.png", &png_text("parameters", &big.to_string()));
    let found = read.prompt.unwrap();
    assert_eq!(found.parameters.get("seed"), Some(&json!(1)));
    assert!(!found.parameters.contains_key("notes"));
    assert!(
        read.warnings[0].detail.contains("notes"),
        "{:?}",
        read.warnings
    );
}
