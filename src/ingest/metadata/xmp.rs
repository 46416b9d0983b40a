//! Draw Things' XMP packet (PNG `iTXt "XML:com.adobe.xmp"`), read with `quick-xml`.
//!
//! Draw Things writes one `rdf:Description` holding `xmp:CreatorTool` (`Draw Things`),
//! `dc:description` (A1111-like text: the prompt, `-` and the negative prompt, then a settings
//! line with its own names, `Guidance Scale: 4.0`) and `exif:UserComment`, whose
//! `rdf:Alt`/`rdf:li` holds JSON: `c` the prompt, `uc` the negative prompt, `size` (`WxH`),
//! `model`, `sampler`, `seed`, `scale` (the guidance scale), `steps`, `strength`, `shift`, ...
//! (layout as the open readers stable-diffusion-prompt-reader and sd-image-info read it).
//!
//! The JSON is preferred; the description is the fallback. Only a packet from Draw Things, or
//! whose user comment is such JSON, or whose description carries an A1111 settings line, gives
//! a prompt: an ordinary photo's XMP gives none. Elements are matched by namespace, not by
//! prefix; properties written as attributes are read too. The packet is at most
//! [`MAX_TEXT_BYTES`] (the chunk limit) and may nest [`MAX_DEPTH`] elements deep; deeper, or
//! XML that does not parse, is an error naming the problem.
//!
//! [`MAX_TEXT_BYTES`]: super::MAX_TEXT_BYTES

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::{NsReader, XmlVersion};
use serde_json::{Map, Value};

use super::params::{copy_scalars, json_object};
use super::{a1111, EmbeddedPrompt, Provenance};

type Detail = String;

/// Deepest element nesting accepted (real packets nest 6 deep).
pub(super) const MAX_DEPTH: usize = 64;

const DC: &str = "http://purl.org/dc/elements/1.1/";
const EXIF: &str = "http://ns.adobe.com/exif/1.0/";
const XMP: &str = "http://ns.adobe.com/xap/1.0/";

/// The properties of the packet this reader looks at.
#[derive(Default)]
struct Properties {
    creator_tool: String,
    description: String,
    user_comment: String,
}

/// Which property an element's text belongs to.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    CreatorTool,
    Description,
    UserComment,
}

/// The prompt in an XMP packet; `Ok(None)` for XMP that holds none (see the module
/// documentation), `Err` for XML that does not parse or nests too deep.
pub(super) fn parse_xmp(text: &str) -> Result<Option<EmbeddedPrompt>, Detail> {
    let props = read_properties(text)?;
    let from_draw_things = props.creator_tool.contains("Draw Things");
    let comment = props.user_comment.trim();
    if comment.starts_with('{') {
        match user_comment_prompt(comment) {
            Ok(found) => return Ok(Some(found).filter(EmbeddedPrompt::has_text)),
            Err(detail) if from_draw_things => return Err(detail),
            Err(_) => {}
        }
    }
    let Some(mut found) = description_prompt(&props.description) else {
        return Ok(None);
    };
    if !from_draw_things && found.parameters.is_empty() {
        return Ok(None);
    }
    if from_draw_things {
        // Draw Things' own setting names: written anew from `parameters` by `to_infotext`.
        found.provenance = Provenance::DrawThings;
        found.settings_line = None;
    }
    Ok(Some(found))
}

/// The three properties' text (the first `rdf:li` of an `rdf:Alt`, or the element's own
/// text).
fn read_properties(text: &str) -> Result<Properties, Detail> {
    let mut reader = NsReader::from_str(text);
    let mut props = Properties::default();
    // The open elements: the property each belongs to, if any.
    let mut open: Vec<Option<Target>> = Vec::new();
    let mut done: Vec<Target> = Vec::new();
    loop {
        let position = reader.buffer_position();
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| format!("XMP is not well-formed XML (near byte {position}): {e}"))?;
        match event {
            Event::Start(start) => {
                if open.len() >= MAX_DEPTH {
                    return Err(format!("XMP nests over {MAX_DEPTH} elements deep"));
                }
                let target = target_of(&ns, &start).or(open.last().copied().flatten());
                attributes(&reader, &start, &mut props)?;
                open.push(target);
            }
            Event::Empty(start) => attributes(&reader, &start, &mut props)?,
            Event::End(_) => {
                // The first element to close inside a property ends its value: the first
                // `rdf:li` of an `rdf:Alt` (later ones are other languages), or the property.
                if let Some(Some(target)) = open.pop() {
                    if !done.contains(&target) {
                        done.push(target);
                    }
                }
            }
            Event::Text(t) => append(&mut props, &open, &done, &t.xml10_content()),
            Event::CData(t) => append(&mut props, &open, &done, &t.xml10_content()),
            Event::GeneralRef(r) => {
                if let Some(c) = r.resolve_char_ref().ok().flatten() {
                    append(&mut props, &open, &done, c.encode_utf8(&mut [0; 4]));
                } else {
                    let name: &str = &r;
                    let entity = quick_xml::escape::resolve_predefined_entity(name)
                        .ok_or_else(|| format!("XMP uses an unknown entity &{name};"))?;
                    append(&mut props, &open, &done, entity);
                }
            }
            Event::Eof if open.is_empty() => return Ok(props),
            Event::Eof => return Err("XMP ends inside an element".into()),
            _ => {}
        }
    }
}

/// The property an element is, by namespace and local name.
fn target_of(ns: &ResolveResult, start: &BytesStart) -> Option<Target> {
    let ResolveResult::Bound(Namespace(uri)) = ns else {
        return None;
    };
    match (*uri, start.local_name().as_ref()) {
        (XMP, "CreatorTool") => Some(Target::CreatorTool),
        (DC, "description") => Some(Target::Description),
        (EXIF, "UserComment") => Some(Target::UserComment),
        _ => None,
    }
}

/// Properties written as attributes (`<rdf:Description xmp:CreatorTool="Draw Things">`).
fn attributes(
    reader: &NsReader<&[u8]>,
    start: &BytesStart,
    props: &mut Properties,
) -> Result<(), Detail> {
    for attr in start.attributes() {
        let attr = attr.map_err(|e| format!("XMP attribute: {e}"))?;
        let (ns, local) = reader.resolver().resolve_attribute(attr.key);
        let ResolveResult::Bound(Namespace(uri)) = ns else {
            continue;
        };
        let slot = match (uri, local.as_ref()) {
            (XMP, "CreatorTool") => &mut props.creator_tool,
            (DC, "description") => &mut props.description,
            (EXIF, "UserComment") => &mut props.user_comment,
            _ => continue,
        };
        if slot.is_empty() {
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|e| format!("XMP attribute: {e}"))?;
            slot.push_str(&value);
        }
    }
    Ok(())
}

/// Adds text inside an open property that has no value yet.
fn append(props: &mut Properties, open: &[Option<Target>], done: &[Target], text: &str) {
    let Some(Some(target)) = open.last() else {
        return;
    };
    if done.contains(target) {
        return;
    }
    match target {
        Target::CreatorTool => props.creator_tool.push_str(text),
        Target::Description => props.description.push_str(text),
        Target::UserComment => props.user_comment.push_str(text),
    }
}

/// The prompt of Draw Things' user-comment JSON.
fn user_comment_prompt(json: &str) -> Result<EmbeddedPrompt, Detail> {
    let object = json_object(json, "the XMP exif:UserComment")?;
    let text = |key: &str| object.get(key).and_then(Value::as_str);
    let prompt = text("c").ok_or("the XMP exif:UserComment JSON has no \"c\" (prompt)")?;
    let mut found = EmbeddedPrompt::new(Provenance::DrawThings, prompt).negative(text("uc"));
    let params = &mut found.parameters;
    copy_scalars(
        &object,
        params,
        &["c", "uc", "size"],
        &[("scale", "cfg_scale")],
    );
    if let Some(size) = text("size") {
        add_size(params, size);
    }
    Ok(found)
}

/// `size` as written, plus `width` and `height` when it reads `WxH`.
fn add_size(params: &mut Map<String, Value>, size: &str) {
    params.insert("size".into(), size.into());
    if let Some((w, h)) = size.split_once('x') {
        if let (Ok(w), Ok(h)) = (w.trim().parse::<u64>(), h.trim().parse::<u64>()) {
            params.insert("width".into(), w.into());
            params.insert("height".into(), h.into());
        }
    }
}

/// The description as A1111 text; Draw Things marks the negative prompt with a leading `-`
/// on the line before the settings line.
fn description_prompt(text: &str) -> Option<EmbeddedPrompt> {
    let text = text.replace("\r\n", "\n");
    let mut lines: Vec<String> = text.trim().lines().map(str::to_string).collect();
    let has_settings = lines.last().is_some_and(|l| l.starts_with("Steps:"));
    if has_settings && lines.len() >= 3 && !text.contains("\nNegative prompt:") {
        let at = lines.len() - 2;
        if let Some(negative) = lines[at].strip_prefix('-') {
            lines[at] = format!("Negative prompt: {negative}");
        }
    }
    a1111::parse_a1111_parameters(&lines.join("\n")).filter(|f| f.has_text())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn packet(body: &str) -> String {
        format!(
            r#"<?xpacket begin="﻿" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 6.0.0">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:exif="http://ns.adobe.com/exif/1.0/">
{body}
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"#
        )
    }

    fn alt(tag: &str, text: &str) -> String {
        format!("<{tag}><rdf:Alt><rdf:li xml:lang=\"x-default\">{text}</rdf:li><rdf:li xml:lang=\"fr\">autre</rdf:li></rdf:Alt></{tag}>")
    }

    #[test]
    fn the_user_comment_json_wins_and_entities_are_resolved() {
        let json = r#"{"c":"a &lt;red&gt; fox &amp; hare\nat dusk","uc":"blurry","size":"640x448","model":"sd_xl.ckpt","sampler":"DPM++ 2M Karras","seed":42,"scale":5.5,"steps":30,"v2":{"x":1}}"#;
        let body = format!(
            "<xmp:CreatorTool>Draw Things</xmp:CreatorTool>{}{}",
            alt("dc:description", "wrong&#xA;Steps: 1, Sampler: x"),
            alt("exif:UserComment", json)
        );
        let found = parse_xmp(&packet(&body)).unwrap().unwrap();
        assert_eq!(found.prompt, "a <red> fox & hare\nat dusk");
        assert_eq!(found.negative_prompt.as_deref(), Some("blurry"));
        assert_eq!(found.provenance, Provenance::DrawThings);
        let expected = json!({"size": "640x448", "width": 640, "height": 448,
            "model": "sd_xl.ckpt", "sampler": "DPM++ 2M Karras", "seed": 42,
            "cfg_scale": 5.5, "steps": 30});
        assert_eq!(Value::Object(found.parameters), expected);
    }

    #[test]
    fn the_description_is_the_fallback() {
        let text = "a cat&#xA;on a mat&#xA;-lowres&#xA;Steps: 8, Sampler: Euler A, Guidance Scale: 4.0, Seed: 7";
        let body = format!(
            r#"<rdf:Description xmp:CreatorTool="Draw Things"/>{}"#,
            alt("dc:description", text)
        );
        let found = parse_xmp(&packet(&body)).unwrap().unwrap();
        assert_eq!(found.prompt, "a cat\non a mat");
        assert_eq!(found.negative_prompt.as_deref(), Some("lowres"));
        assert_eq!(found.parameters["guidance_scale"], json!(4.0));
        assert_eq!(found.provenance, Provenance::DrawThings);
        assert!(found.settings_line.is_none());
    }

    #[test]
    fn ordinary_xmp_gives_no_prompt() {
        let body = format!(
            "<xmp:CreatorTool>Adobe Photoshop</xmp:CreatorTool>{}",
            alt("dc:description", "Holiday at the lake, 2019")
        );
        assert!(parse_xmp(&packet(&body)).unwrap().is_none());
        assert!(parse_xmp(&packet("")).unwrap().is_none());
        // Prefixes do not matter, namespaces do.
        let other = packet(&alt(
            "dc:description",
            "x&#xA;Steps: 1, Seed: 2, Sampler: y",
        ))
        .replace("http://purl.org/dc/elements/1.1/", "urn:other");
        assert!(parse_xmp(&other).unwrap().is_none());
    }

    #[test]
    fn broken_or_deep_xml_is_an_error() {
        for bad in ["<a><b></a>", "<x:a>", "<a>&bogus;</a>", "<a b='1' b='2'/>"] {
            assert!(parse_xmp(bad).is_err(), "{bad}");
        }
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(parse_xmp(&deep).unwrap_err().contains("deep"));
        let fine = "<a>".repeat(MAX_DEPTH) + &"</a>".repeat(MAX_DEPTH);
        assert!(parse_xmp(&fine).unwrap().is_none());
        let body = format!(
            "<xmp:CreatorTool>Draw Things</xmp:CreatorTool>{}",
            alt("exif:UserComment", "{not json")
        );
        assert!(parse_xmp(&packet(&body)).is_err());
    }
}
