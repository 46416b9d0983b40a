//! Property tests (`proptest`, seeded, with the runner of `fuzz_ingest`) of the readers added
//! for Draw Things' XMP, the A1111 extras (`Hashes`, `Lora hashes`, `TI hashes`, `Civitai
//! resources`), the GIF comment and `to_infotext`: no panic, every input within the per-input
//! time, structures within their bounds, and a well-formed Draw Things packet always gives its
//! prompt back.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::{json, Value};

use crate::common::png::png_chunk as chunk;
use crate::fuzz_ingest::{check_read, fuzz, text_soup};
use promptdex::ingest::metadata::{parse_a1111_parameters, read_metadata_bytes, to_infotext};
use promptdex::ingest::MAX_PROMPT_BYTES;

/// A 1x1 PNG with an uncompressed iTXt `XML:com.adobe.xmp` chunk holding `xmp`.
fn png_xmp(xmp: &str) -> Vec<u8> {
    let ihdr = [0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0];
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(chunk(b"IHDR", &ihdr));
    let itxt = [b"XML:com.adobe.xmp\0\0\0\0\0".as_slice(), xmp.as_bytes()].concat();
    out.extend(chunk(b"iTXt", &itxt));
    out.extend(chunk(b"IEND", b""));
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\n', "&#xA;")
}

/// Markup pieces of XMP packets: the elements Draw Things writes, others, entities, text.
fn xmp_soup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("<rdf:Description xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\" xmlns:exif=\"http://ns.adobe.com/exif/1.0/\" xmlns:xmp=\"http://ns.adobe.com/xap/1.0/\">".to_string()),
        Just("</rdf:Description>".to_string()),
        Just("<dc:description>".to_string()),
        Just("</dc:description>".to_string()),
        Just("<exif:UserComment>".to_string()),
        Just("</exif:UserComment>".to_string()),
        Just("<xmp:CreatorTool>Draw Things</xmp:CreatorTool>".to_string()),
        Just("<rdf:Alt><rdf:li xml:lang=\"x-default\">".to_string()),
        Just("</rdf:li></rdf:Alt>".to_string()),
        Just("<a>".to_string()),
        Just("</a>".to_string()),
        Just("<b x=\"1\"/>".to_string()),
        Just("&amp;".to_string()),
        Just("&#xA;".to_string()),
        Just("&#0;".to_string()),
        Just("&bogus;".to_string()),
        Just("<![CDATA[{\"c\":\"x\"}]]>".to_string()),
        Just("<!DOCTYPE x [<!ENTITY e \"eeeeeeee\">]>".to_string()),
        Just("{\"c\":\"".to_string()),
        Just("\",\"uc\":\"".to_string()),
        Just("\",\"steps\":20}".to_string()),
        text_soup(),
    ];
    prop::collection::vec(piece, 0..48).prop_map(|p| p.concat())
}

#[test]
fn fuzz_xmp_packets() {
    fuzz("xmp packets", 3000, xmp_soup(), |xmp| {
        check_read(&read_metadata_bytes("fuzz.png", &png_xmp(&xmp)));
    });
}

#[test]
fn fuzz_draw_things_packets_give_their_prompt_back() {
    let packet = (text_soup(), text_soup(), 0u64..u64::MAX, 0usize..70);
    fuzz(
        "draw things packets",
        1000,
        packet,
        |(prompt, negative, seed, depth)| {
            let config = json!({"c": prompt, "uc": negative, "seed": seed, "steps": 20,
            "size": "512x768", "scale": 4.5});
            // Nested inside `depth` unrelated elements: past the depth limit it is a warning.
            let xmp = format!(
                "{}<rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">\
             <rdf:Description xmlns:exif=\"http://ns.adobe.com/exif/1.0/\">\
             <exif:UserComment><rdf:Alt><rdf:li>{}</rdf:li></rdf:Alt></exif:UserComment>\
             </rdf:Description></rdf:RDF>{}",
                "<a>".repeat(depth),
                escape(&config.to_string()),
                "</a>".repeat(depth)
            );
            let read = read_metadata_bytes("fuzz.png", &png_xmp(&xmp));
            check_read(&read);
            if depth + 5 > 64 {
                assert!(read.prompt.is_none() && !read.warnings.is_empty());
                return;
            }
            match read.prompt {
                Some(found) => {
                    assert_eq!(found.prompt, prompt.trim());
                    assert_eq!(found.parameters["seed"], json!(seed));
                    assert_eq!(found.parameters["cfg_scale"], json!(4.5));
                }
                None => assert!(prompt.trim().is_empty() && negative.trim().is_empty()),
            }
        },
    );
}

/// Settings lines full of the extras' keys, JSON fragments and separators.
fn extras_soup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("Hashes: {".to_string()),
        Just("Civitai resources: [".to_string()),
        Just("Lora hashes: \"".to_string()),
        Just("TI hashes: \"".to_string()),
        Just("{\"type\":\"lora\",\"modelVersionId\":".to_string()),
        Just("\"weight\":0.5}".to_string()),
        Just("\"model\": \"abc\"".to_string()),
        Just("}".to_string()),
        Just("]".to_string()),
        Just(", ".to_string()),
        Just(": ".to_string()),
        Just("\"".to_string()),
        Just("\\".to_string()),
        Just("Steps: 1, Seed: 2, ".to_string()),
        text_soup(),
    ];
    prop::collection::vec(piece, 0..48).prop_map(|p| format!("a prompt\n{}", p.concat()))
}

#[test]
fn fuzz_a1111_extras_and_infotext() {
    fuzz("a1111 extras", 3000, extras_soup(), |text| {
        let Some(found) = parse_a1111_parameters(&text) else {
            return;
        };
        let p = &found.parameters;
        for key in ["loras", "embeddings", "hashes"] {
            if let Some(v) = p.get(key) {
                let object = v.as_object().unwrap_or_else(|| panic!("{key}: {v}"));
                assert!((1..=256).contains(&object.len()));
                assert!(object.values().all(Value::is_string));
            }
        }
        if let Some(list) = p.get("civitai_resources") {
            let list = list.as_array().expect("civitai_resources is a list");
            assert!((1..=256).contains(&list.len()));
            for entry in list {
                assert!(entry["modelVersionId"].is_u64() && entry["type"].is_string());
            }
        }
        let mut written = found.clone();
        written.settings_line = None;
        for text in [to_infotext(&found), to_infotext(&written)] {
            let _ = parse_a1111_parameters(&text);
        }
    });
}

/// GIF block lists: real blocks, comments holding text soup, junk, cut anywhere.
fn gif_bytes() -> impl Strategy<Value = Vec<u8>> {
    let block = prop_oneof![
        text_soup().prop_map(|t| {
            let mut out = vec![0x21, 0xFE];
            for piece in t.as_bytes().chunks(255) {
                out.push(piece.len() as u8);
                out.extend(piece);
            }
            out.push(0);
            out
        }),
        Just(b"\x21\xf9\x04\x00\x00\x00\x00\x00".to_vec()),
        Just(
            b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x81\x00\x00\x00\x00\x00\x00\x02\x02\x44\x01\x00"
                .to_vec()
        ),
        prop::collection::vec(any::<u8>(), 0..40),
    ];
    let blocks = prop::collection::vec(block, 0..8);
    (blocks, any::<bool>(), any::<usize>()).prop_map(|(blocks, palette, cut)| {
        let flags = if palette { 0x80 } else { 0 };
        let mut out = b"GIF89a\x01\x00\x01\x00".to_vec();
        out.extend([flags, 0, 0]);
        if palette {
            out.extend([0, 0, 0, 255, 255, 255]);
        }
        out.extend(blocks.concat());
        out.push(0x3B);
        let cut = 6 + cut % (out.len() - 5);
        out.truncate(cut);
        out
    })
}

#[test]
fn fuzz_gif_comments() {
    fuzz("gif comments", 3000, gif_bytes(), |bytes| {
        check_read(&read_metadata_bytes("fuzz.gif", &bytes));
    });
}

#[test]
fn hostile_settings_lines_and_packets_cost_little() {
    let line = |piece: &str| format!("a\nSteps: 1, {}", piece.repeat((1 << 20) / piece.len()));
    for text in [
        line("k: [, "),
        line("k: {\"a\": \"[, "),
        line("Lora hashes: \"a: b, "),
    ] {
        let start = Instant::now();
        let found = parse_a1111_parameters(&text).unwrap();
        let _ = to_infotext(&found);
        let took = start.elapsed();
        eprintln!("1 MiB settings line {:?}...: {took:?}", &text[..16]);
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
    let deep = "<a>".repeat(300_000);
    let start = Instant::now();
    let read = read_metadata_bytes("deep.png", &png_xmp(&deep));
    assert!(read.prompt.is_none() && read.warnings[0].detail.contains("deep"));
    let took = start.elapsed();
    eprintln!("XMP 300,000 elements deep: {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    let big = format!(
        "<xmp:CreatorTool xmlns:xmp=\"http://ns.adobe.com/xap/1.0/\">Draw Things</xmp:CreatorTool>\
         <exif:UserComment xmlns:exif=\"http://ns.adobe.com/exif/1.0/\">{{\"c\":\"{}\"}}</exif:UserComment>",
        "x".repeat(MAX_PROMPT_BYTES * 4)
    );
    let read = read_metadata_bytes("big.png", &png_xmp(&big));
    assert_eq!(read.prompt.unwrap().prompt.len(), MAX_PROMPT_BYTES);
}
