//! Fuzzing, on stable Rust with `proptest`, of every parser in `src/ingest/` that reads user
//! bytes: the PNG chunk walk, EXIF/TIFF (in PNG, JPEG and WebP), A1111 `parameters`, InvokeAI,
//! ComfyUI `prompt` graphs and `workflow`s (structure-aware: random node graphs with cycles,
//! fan-out and deep chains), NovelAI, SwarmUI and Fooocus JSON, sidecars, and corpus lines /
//! CSV / TSV. The stealth pixel reader has its own properties (`ingest::metadata::stealth`).
//!
//! Every input must finish within [`PER_INPUT`] without a panic, and a prompt read must be
//! within the shared limit. The runs are seeded (reproducible): `PROMPTDEX_FUZZ_SEED` picks
//! another seed, and `PROMPTDEX_FUZZ_CASES` sets the cases per parser for a longer run than
//! the few seconds per parser `cargo test` spends, e.g.
//! `PROMPTDEX_FUZZ_CASES=20000 cargo test --release --test integration fuzz_ingest -- --nocapture`.

use crate::common::png;

use png::png_chunk as chunk;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{json, Map, Value};

use promptdex::ingest::{
    parse_a1111_parameters, read_metadata, read_metadata_bytes, CorpusReader, EmbeddedPrompt,
    Metadata, Row, MAX_PROMPT_BYTES,
};

/// The most one input may cost (real inputs take microseconds to milliseconds; this leaves
/// room for a loaded machine).
const PER_INPUT: Duration = Duration::from_secs(2);

/// Runs `check` on `default_cases` inputs drawn from `strategy` (or `PROMPTDEX_FUZZ_CASES`),
/// each within [`PER_INPUT`], and prints the count and the time.
pub(crate) fn fuzz<S: Strategy>(
    name: &str,
    default_cases: u32,
    strategy: S,
    check: impl Fn(S::Value),
) where
    S::Value: std::fmt::Debug,
{
    let cases = std::env::var("PROMPTDEX_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    let seed: u64 = std::env::var("PROMPTDEX_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let start = Instant::now();
    let result = runner.run(&strategy, |value| {
        let one = Instant::now();
        check(value);
        let took = one.elapsed();
        prop_assert!(took < PER_INPUT, "one input took {took:?}");
        Ok(())
    });
    eprintln!(
        "fuzz {name}: {cases} cases in {:.2} s (seed {seed})",
        start.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        panic!("fuzz {name}: {e}");
    }
}

/// A read's prompt keeps to the shared limit.
fn check_prompt(found: Option<&EmbeddedPrompt>) {
    if let Some(found) = found {
        assert!(
            found.prompt.len() <= MAX_PROMPT_BYTES,
            "{}",
            found.prompt.len()
        );
        let negative = found.negative_prompt.as_deref().unwrap_or("");
        assert!(negative.len() <= MAX_PROMPT_BYTES);
    }
}

pub(crate) fn check_read(read: &Metadata) {
    check_prompt(read.prompt.as_ref());
    for w in &read.warnings {
        assert!(
            w.to_string().contains("fuzz"),
            "warnings name the file: {w}"
        );
    }
}

// --- containers ------------------------------------------------------------------------

const IHDR: [u8; 13] = [0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0];

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A PNG holding one text chunk `keyword` = `text`.
pub(crate) fn png_text(keyword: &str, text: &str) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(chunk(b"IHDR", &IHDR));
    out.extend(chunk(
        b"tEXt",
        &[keyword.as_bytes(), b"\0", text.as_bytes()].concat(),
    ));
    out.extend(chunk(b"IDAT", &zlib(&[0, 1, 2, 3])));
    out.extend(chunk(b"IEND", b""));
    out
}

/// One raw PNG chunk: a kind (real or not), data, and whether its CRC and length are honest.
fn png_chunk() -> impl Strategy<Value = Vec<u8>> {
    let kinds = prop_oneof![
        Just(b"tEXt".to_vec()),
        Just(b"zTXt".to_vec()),
        Just(b"iTXt".to_vec()),
        Just(b"eXIf".to_vec()),
        Just(b"IDAT".to_vec()),
        Just(b"IEND".to_vec()),
        prop::collection::vec(any::<u8>(), 4),
    ];
    let data = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        (keyword(), text_soup()).prop_map(|(k, t)| [k.as_bytes(), b"\0", t.as_bytes()].concat()),
        (keyword(), text_soup())
            .prop_map(|(k, t)| [k.as_bytes(), b"\0\0", &zlib(t.as_bytes())].concat()),
        (keyword(), text_soup(), any::<bool>()).prop_map(|(k, t, z)| {
            let body = if z {
                zlib(t.as_bytes())
            } else {
                t.into_bytes()
            };
            [k.as_bytes(), b"\0", &[z as u8, 0], b"en\0\0", &body].concat()
        }),
    ];
    (kinds, data, 0u8..8, any::<u32>()).prop_map(|(kind, data, lie, noise)| {
        let mut c = chunk(&kind, &data);
        match lie {
            0 => c[..4].copy_from_slice(&noise.to_be_bytes()),
            1 => *c.last_mut().unwrap() ^= 1,
            _ => {}
        }
        c
    })
}

fn keyword() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("parameters".to_string()),
        Just("prompt".to_string()),
        Just("workflow".to_string()),
        Just("invokeai_metadata".to_string()),
        Just("sd-metadata".to_string()),
        Just("Dream".to_string()),
        Just("Description".to_string()),
        Just("Comment".to_string()),
        Just("Software".to_string()),
        "[A-Za-z ]{0,90}",
    ]
}

/// Text made of the characters the text parsers split on.
pub(crate) fn text_soup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("Steps: ".to_string()),
        Just("Negative prompt: ".to_string()),
        Just(", ".to_string()),
        Just(": ".to_string()),
        Just("\"".to_string()),
        Just("\\".to_string()),
        Just("\n".to_string()),
        Just("\r\n".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("{\"".to_string()),
        Just(" -s ".to_string()),
        Just("'".to_string()),
        Just("Size: 512x".to_string()),
        "[a-z0-9 ]{0,12}",
        "\\PC{0,4}",
    ];
    prop::collection::vec(piece, 0..64).prop_map(|p| p.concat())
}

#[test]
fn fuzz_png_chunk_walk() {
    let file = prop::collection::vec(png_chunk(), 0..12).prop_map(|chunks| {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        out.extend(chunk(b"IHDR", &IHDR));
        for c in chunks {
            out.extend(c);
        }
        out.extend(chunk(b"IEND", b""));
        out
    });
    let mutated = (
        file,
        prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        any::<usize>(),
    )
        .prop_map(|(mut bytes, flips, cut)| {
            for (at, x) in flips {
                let len = bytes.len();
                bytes[at % len] ^= x;
            }
            if cut % 4 == 0 {
                bytes.truncate(cut % (bytes.len() + 1));
            }
            bytes
        });
    fuzz("png chunk walk", 3000, mutated, |bytes| {
        check_read(&read_metadata_bytes("fuzz.png", &bytes));
    });
}

/// A TIFF block: a real header of either byte order, then IFD entries of random tags, types,
/// counts and offsets, then random bytes.
fn tiff() -> impl Strategy<Value = Vec<u8>> {
    let entry = (
        prop_oneof![
            Just(0x9286u16),
            Just(0x010E),
            Just(0x0110),
            Just(0x8769),
            Just(0x927C),
            any::<u16>()
        ],
        1u16..13,
        any::<u32>(),
        any::<u32>(),
    );
    (
        any::<bool>(),
        prop::collection::vec(entry, 0..8),
        prop::collection::vec(any::<u8>(), 0..200),
        prop_oneof![
            Just(b"UNICODE\0".to_vec()),
            Just(b"ASCII\0\0\0".to_vec()),
            Just(Vec::new()),
            // Fooocus and SwarmUI: JSON, no character code.
            Just(b"{\"sui_image_params\": {\"prompt\": \"".to_vec()),
            Just(b"{\"prompt\": \"".to_vec())
        ],
        text_soup(),
    )
        .prop_map(|(little, entries, tail, code, text)| {
            let u16b = |v: u16| {
                if little {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                }
            };
            let u32b = |v: u32| {
                if little {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                }
            };
            let mut out = if little {
                b"II".to_vec()
            } else {
                b"MM".to_vec()
            };
            out.extend(u16b(42));
            out.extend(u32b(8));
            out.extend(u16b(entries.len() as u16));
            let data_at = 8 + 2 + 12 * entries.len() as u32 + 4;
            for (tag, kind, count, offset) in entries {
                out.extend(u16b(tag));
                out.extend(u16b(kind));
                out.extend(u32b(count % 512));
                let offset = if offset % 2 == 0 { data_at } else { offset };
                out.extend(u32b(offset));
            }
            out.extend(u32b(0));
            out.extend(code);
            out.extend(text.as_bytes());
            out.extend(tail);
            out
        })
}

#[test]
fn fuzz_exif_in_png_jpeg_and_webp() {
    let file = (tiff(), 0u8..3).prop_map(|(tiff, container)| match container {
        0 => {
            let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
            out.extend(chunk(b"IHDR", &IHDR));
            out.extend(chunk(b"eXIf", &tiff));
            out.extend(chunk(b"IEND", b""));
            out
        }
        1 => {
            let body = [b"Exif\0\0".as_slice(), &tiff].concat();
            let len = (body.len() + 2).min(0xFFFF) as u16;
            let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
            out.extend(len.to_be_bytes());
            out.extend(&body[..len as usize - 2]);
            out.extend([0xFF, 0xD9]);
            out
        }
        _ => {
            let mut chunks = b"VP8L".to_vec();
            chunks.extend(4u32.to_le_bytes());
            chunks.extend([0x2f, 0, 0, 0]);
            chunks.extend(b"EXIF");
            chunks.extend((tiff.len() as u32).to_le_bytes());
            chunks.extend(&tiff);
            if tiff.len() % 2 == 1 {
                chunks.push(0);
            }
            let mut out = b"RIFF".to_vec();
            out.extend((chunks.len() as u32 + 4).to_le_bytes());
            out.extend(b"WEBP");
            out.extend(chunks);
            out
        }
    });
    fuzz("exif/tiff", 3000, file, |bytes| {
        check_read(&read_metadata_bytes("fuzz.img", &bytes));
    });
}

#[test]
fn fuzz_a1111_parameters() {
    fuzz("a1111 parameters", 5000, text_soup(), |text| {
        check_prompt(parse_a1111_parameters(&text).as_ref());
        check_read(&read_metadata_bytes(
            "fuzz.png",
            &png_text("parameters", &text),
        ));
    });
}

/// JSON of the shapes the metadata conventions use, with their keys.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(Value::from),
        text_soup().prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 96, 8, |inner| {
        let key = prop_oneof![
            Just("positive_prompt"),
            Just("negative_prompt"),
            Just("prompt"),
            Just("model"),
            Just("image"),
            Just("uc"),
            Just("steps"),
            Just("scale"),
            Just("seed"),
            Just("v4_prompt"),
            Just("caption"),
            Just("base_caption"),
            Just("weight"),
            Just("width"),
            Just("height"),
            Just("x"),
            // SwarmUI and Fooocus.
            Just("sui_image_params"),
            Just("negativeprompt"),
            Just("cfgscale"),
            Just("resolution"),
        ]
        .prop_map(str::to_string);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..8)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

#[test]
fn fuzz_invokeai_novelai_and_json_parameters() {
    let keyword = prop_oneof![
        Just("invokeai_metadata"),
        Just("sd-metadata"),
        Just("Dream"),
        Just("parameters"),
        Just("Comment"),
    ];
    let input = (
        keyword,
        json_value(),
        text_soup(),
        any::<bool>(),
        any::<bool>(),
    );
    fuzz(
        "invokeai / novelai / json parameters",
        3000,
        input,
        |(keyword, value, text, as_text, novelai)| {
            let body = if as_text {
                text.clone()
            } else {
                value.to_string()
            };
            let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
            out.extend(chunk(b"IHDR", &IHDR));
            out.extend(chunk(b"tEXt", format!("{keyword}\0{body}").as_bytes()));
            if novelai {
                out.extend(chunk(b"tEXt", b"Software\0NovelAI"));
                out.extend(chunk(b"tEXt", format!("Description\0{text}").as_bytes()));
            }
            out.extend(chunk(b"IEND", b""));
            check_read(&read_metadata_bytes("fuzz.png", &out));
        },
    );
}

// --- ComfyUI graphs ----------------------------------------------------------------------

const CLASSES: [&str; 20] = [
    "KSampler",
    "KSamplerAdvanced",
    "SamplerCustomAdvanced",
    "CFGGuider",
    "BasicGuider",
    "DualCFGGuider",
    "CLIPTextEncode",
    "CLIPTextEncodeSDXL",
    "BNK_CLIPTextEncodeAdvanced",
    "ConditioningCombine",
    "ConditioningConcat",
    "ConditioningSetArea",
    "ControlNetApplyAdvanced",
    "StyleModelApply",
    "WanImageToVideo",
    "Reroute",
    "StringConcatenate",
    "ConditioningZeroOut",
    "CheckpointLoaderSimple",
    "Anything",
];

const INPUTS: [&str; 20] = [
    "positive",
    "negative",
    "guider",
    "cond1",
    "cond2",
    "conditioning",
    "conditioning_1",
    "conditioning_2",
    "conditioning_to",
    "text",
    "text_g",
    "text_l",
    "clip_l",
    "t5xxl",
    "string_a",
    "string_b",
    "seed",
    "steps",
    "ckpt_name",
    "",
];

/// One input of a generated node.
#[derive(Debug, Clone)]
enum Input {
    /// A link to node `.0` (an index into the graph), output `.1`.
    Link(usize, u64),
    Text(String),
    Number(i64),
}

#[derive(Debug, Clone)]
struct GenNode {
    class: &'static str,
    inputs: Vec<(&'static str, Input)>,
}

fn input(nodes: usize) -> impl Strategy<Value = Input> {
    prop_oneof![
        6 => (0..nodes, 0u64..3).prop_map(|(n, s)| Input::Link(n, s)),
        2 => text_soup().prop_map(Input::Text),
        1 => any::<i64>().prop_map(Input::Number),
    ]
}

/// Random graphs: any node may link to any other, itself included (cycles, fan-out).
fn random_graph() -> impl Strategy<Value = Vec<GenNode>> {
    (1usize..150).prop_flat_map(|n| {
        let node = (
            prop::sample::select(&CLASSES[..]),
            prop::collection::vec((prop::sample::select(&INPUTS[..]), input(n)), 0..14),
        )
            .prop_map(|(class, inputs)| GenNode { class, inputs });
        prop::collection::vec(node, n)
    })
}

/// Deep chains: node i feeds on node i+1 through `fan` inputs, with back links (cycles) here
/// and there, ending at an encoder.
fn chain_graph() -> impl Strategy<Value = Vec<GenNode>> {
    // Up to 1500 nodes keeps both formats under the metadata limit, so both are walked.
    (1usize..1500, 1usize..6, any::<u64>()).prop_map(|(len, fan, salt)| {
        let mut nodes = vec![GenNode {
            class: "KSampler",
            inputs: vec![
                ("positive", Input::Link(1, 0)),
                ("negative", Input::Link(1, 1)),
            ],
        }];
        for i in 1..len {
            let pick = (salt.wrapping_mul(i as u64 + 7) >> 7) as usize;
            let class = CLASSES[9 + pick % 9];
            let mut inputs: Vec<(&'static str, Input)> = (0..fan)
                .map(|f| (INPUTS[(pick + f) % 16], Input::Link(i + 1, (f % 2) as u64)))
                .collect();
            if pick.is_multiple_of(5) {
                inputs.push(("conditioning_2", Input::Link(pick % (i + 1), 0)));
            }
            nodes.push(GenNode { class, inputs });
        }
        nodes.push(GenNode {
            class: "CLIPTextEncode",
            inputs: vec![("text", Input::Text("the end of the chain".into()))],
        });
        nodes
    })
}

/// The graph in ComfyUI's API format.
fn api_json(nodes: &[GenNode]) -> String {
    let mut graph = Map::new();
    for (i, node) in nodes.iter().enumerate() {
        let mut inputs = Map::new();
        for (name, input) in &node.inputs {
            let value = match input {
                Input::Link(n, slot) => json!([n.to_string(), slot]),
                Input::Text(t) => json!(t),
                Input::Number(x) => json!(x),
            };
            inputs.insert(name.to_string(), value);
        }
        graph.insert(
            i.to_string(),
            json!({"class_type": node.class, "inputs": inputs}),
        );
    }
    Value::Object(graph).to_string()
}

/// The graph in ComfyUI's UI (`workflow`) format: links become link records, literals
/// become widgets.
fn ui_json(nodes: &[GenNode]) -> String {
    let mut links = Vec::new();
    let mut list = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let mut inputs = Vec::new();
        let mut widgets = Vec::new();
        for (slot, (name, input)) in node.inputs.iter().enumerate() {
            match input {
                Input::Link(n, out) => {
                    let id = links.len();
                    let kind = if name.contains("text") {
                        "STRING"
                    } else {
                        "CONDITIONING"
                    };
                    links.push(json!([id, n, out, i, slot, kind]));
                    inputs.push(json!({"name": name, "type": kind, "link": id}));
                }
                Input::Text(t) => widgets.push(json!(t)),
                Input::Number(x) => widgets.push(json!(x)),
            }
        }
        list.push(
            json!({"id": i, "type": node.class, "inputs": inputs, "widgets_values": widgets}),
        );
    }
    json!({"nodes": list, "links": links}).to_string()
}

fn check_graph(nodes: &[GenNode]) {
    for (keyword, text) in [("prompt", api_json(nodes)), ("workflow", ui_json(nodes))] {
        check_read(&read_metadata_bytes("fuzz.png", &png_text(keyword, &text)));
    }
}

#[test]
fn fuzz_comfyui_random_graphs() {
    fuzz("comfyui random graphs", 200, random_graph(), |nodes| {
        check_graph(&nodes)
    });
}

#[test]
fn fuzz_comfyui_deep_chains() {
    fuzz("comfyui deep chains", 60, chain_graph(), |nodes| {
        check_graph(&nodes)
    });
}

// --- files: sidecars and corpora -----------------------------------------------------------

/// Bytes that look like text: words, separators, quotes, NULs, stray high bytes.
fn corpus_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b",".to_vec()),
        Just(b"\t".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"prompt".to_vec()),
        Just(b"\0".to_vec()),
        Just(vec![0xFF, 0xC3]),
        Just(vec![b'a'; 20_000]),
        "[a-z ]{0,16}".prop_map(String::into_bytes),
        "\\PC{0,3}".prop_map(String::into_bytes),
    ];
    prop::collection::vec(piece, 0..48).prop_map(|p| p.concat())
}

#[test]
fn fuzz_corpus_lines_csv_and_tsv() {
    let dir = tempfile::tempdir().unwrap();
    let input = (corpus_bytes(), 0usize..4, any::<bool>());
    fuzz(
        "corpus lines / csv / tsv",
        1500,
        input,
        |(bytes, ext, gz)| {
            let name = ["c.txt", "c.csv", "c.tsv", "c.csv.gz"][ext];
            let path = dir.path().join(name);
            let bytes = if gz || ext == 3 {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(&bytes).unwrap();
                enc.finish().unwrap()
            } else {
                bytes
            };
            std::fs::write(&path, &bytes).unwrap();
            let Ok(reader) = CorpusReader::open(&path) else {
                return;
            };
            for row in reader {
                match row {
                    Ok(Row::Prompt(entry)) => assert!(entry.prompt.len() <= MAX_PROMPT_BYTES),
                    Ok(Row::Rejected { .. }) => {}
                    Err(e) => {
                        assert!(e.to_string().contains(name), "{e}");
                        break;
                    }
                }
            }
        },
    );
}

#[test]
fn fuzz_sidecars() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("fuzz.png");
    let png = png_text("Software", "none");
    std::fs::write(&image, &png).unwrap();
    fuzz("sidecar", 1500, corpus_bytes(), |bytes| {
        std::fs::write(image.with_extension("txt"), &bytes).unwrap();
        let read = read_metadata(&image).unwrap();
        check_read(&read);
        if let Some(found) = &read.prompt {
            assert!(sidecar_named(&found.location, &image));
        }
    });
}

fn sidecar_named(location: &str, image: &Path) -> bool {
    location
        == image
            .with_extension("txt")
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
}
