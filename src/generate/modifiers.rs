//! Style modifiers: CLIP Interrogator's vocabularies, and the phrases of them that an image's
//! neighbours used.
//!
//! The lists (the registry's `clip-interrogator-vocab`) are artists (written `by A`), flavors,
//! mediums and movements, plus the interrogator's "trending" list built from a fixed set of
//! sites. [`Vocabulary::mine`] finds these phrases in prompts and weighs each by the prompts'
//! weights, which works with any image encoder: what the nearest images' prompts said about
//! style is what this image probably had.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use crate::{Error, Result};

/// Sites of the interrogator's trending list.
const SITES: &[&str] = &[
    "Artstation",
    "behance",
    "cg society",
    "cgsociety",
    "deviantart",
    "dribble",
    "flickr",
    "instagram",
    "pexels",
    "pinterest",
    "pixabay",
    "pixiv",
    "polycount",
    "reddit",
    "shutterstock",
    "tumblr",
    "unsplash",
    "zbrush central",
];

/// Which list a modifier comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// `a 3D render`, `an oil painting`.
    Medium,
    /// `by Greg Rutkowski`.
    Artist,
    /// `art nouveau`.
    Movement,
    /// `trending on artstation`.
    Trending,
    /// Everything else: `highly detailed`, `sharp focus`.
    Flavor,
}

/// A modifier chosen for an image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Modifier {
    /// The phrase as it goes into a prompt.
    pub phrase: String,
    /// Its list.
    pub category: Category,
    /// Summed weight of the prompts that used it.
    pub score: f32,
}

/// How modifiers are picked, like the interrogator's modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModifierMode {
    /// The best-scoring modifiers, whatever their list.
    #[default]
    Fast,
    /// One medium, one artist, one movement, one trending phrase, then flavors.
    Classic,
}

/// The style vocabularies, indexed for lookup.
#[derive(Debug, Clone)]
pub struct Vocabulary {
    /// Lower-cased lookup form -> (phrase as written in prompts, category).
    lookup: HashMap<String, (String, Category)>,
    /// Every phrase, per category, as written in prompts (for ranking against an image).
    phrases: Vec<(String, Category)>,
}

impl Vocabulary {
    /// Loads the lists from the folder `promptdex models fetch clip-interrogator-vocab` fills.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let read = |name: &str| -> Result<Vec<String>> {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            Ok(text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect())
        };
        let mut phrases = Vec::new();
        for medium in read("mediums.txt")? {
            phrases.push((medium, Category::Medium));
        }
        for artist in read("artists.txt")? {
            phrases.push((format!("by {artist}"), Category::Artist));
        }
        for movement in read("movements.txt")? {
            phrases.push((movement, Category::Movement));
        }
        for site in SITES {
            for phrase in [
                site.to_string(),
                format!("trending on {site}"),
                format!("featured on {site}"),
                format!("{site} contest winner"),
            ] {
                phrases.push((phrase, Category::Trending));
            }
        }
        for flavor in read("flavors.txt")? {
            phrases.push((flavor, Category::Flavor));
        }
        Ok(Self::from_phrases(phrases))
    }

    /// A vocabulary of these phrases (the first occurrence of a phrase decides its category).
    pub fn from_phrases(phrases: Vec<(String, Category)>) -> Self {
        let mut lookup = HashMap::with_capacity(phrases.len() * 2);
        for (phrase, category) in &phrases {
            for key in lookup_keys(phrase, *category) {
                lookup
                    .entry(key)
                    .or_insert_with(|| (phrase.clone(), *category));
            }
        }
        Self { lookup, phrases }
    }

    /// Every phrase with its category.
    pub fn phrases(&self) -> &[(String, Category)] {
        &self.phrases
    }

    /// The vocabulary phrases used in `prompts`, each scored by the summed weight of the
    /// prompts that use it, best first.
    pub fn mine(&self, prompts: &[(&str, f32)]) -> Vec<Modifier> {
        let mut scores: HashMap<&str, (Category, f32)> = HashMap::new();
        for (prompt, weight) in prompts {
            let mut seen = std::collections::HashSet::new();
            for piece in pieces(prompt) {
                if let Some((phrase, category)) = self.lookup.get(&piece) {
                    if seen.insert(phrase.as_str()) {
                        scores.entry(phrase).or_insert((*category, 0.0)).1 += weight;
                    }
                }
            }
        }
        let mut found: Vec<Modifier> = scores
            .into_iter()
            .map(|(phrase, (category, score))| Modifier {
                phrase: phrase.to_string(),
                category,
                score,
            })
            .collect();
        found.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.phrase.cmp(&b.phrase))
        });
        found
    }
}

impl Vocabulary {
    /// Every phrase scored by its similarity to `image` (a text-aligned encoder's image vector;
    /// `vectors` are the phrases' vectors in that space, in [`Vocabulary::phrases`] order),
    /// best first: the interrogator's ranking.
    pub fn rank(&self, vectors: &[Vec<f32>], image: &[f32]) -> Vec<Modifier> {
        let mut ranked: Vec<Modifier> = self
            .phrases
            .iter()
            .zip(vectors)
            .map(|((phrase, category), v)| Modifier {
                phrase: phrase.clone(),
                category: *category,
                score: crate::store::dot(v, image),
            })
            .collect();
        ranked.sort_by(|a, b| b.score.total_cmp(&a.score));
        ranked
    }
}

/// Picks `count` modifiers from `ranked` (best first) the way `mode` says.
pub fn pick(ranked: &[Modifier], mode: ModifierMode, count: usize) -> Vec<Modifier> {
    match mode {
        ModifierMode::Fast => ranked.iter().take(count).cloned().collect(),
        ModifierMode::Classic => {
            let mut picked: Vec<Modifier> = Vec::new();
            for category in [
                Category::Medium,
                Category::Artist,
                Category::Movement,
                Category::Trending,
            ] {
                if let Some(best) = ranked.iter().find(|m| m.category == category) {
                    picked.push(best.clone());
                }
            }
            let flavors = count.saturating_sub(picked.len());
            picked.extend(
                ranked
                    .iter()
                    .filter(|m| m.category == Category::Flavor)
                    .take(flavors)
                    .cloned(),
            );
            picked.truncate(count.max(1));
            picked
        }
    }
}

/// The lower-cased forms under which a phrase is recognised in prompts: mediums also without
/// their article ("3d render"), artists also without "by".
fn lookup_keys(phrase: &str, category: Category) -> Vec<String> {
    let lower = phrase.to_lowercase();
    let mut keys = vec![lower.clone()];
    match category {
        Category::Medium => {
            for article in ["a ", "an "] {
                if let Some(rest) = lower.strip_prefix(article) {
                    keys.push(rest.to_string());
                }
            }
        }
        Category::Artist => {
            if let Some(rest) = lower.strip_prefix("by ") {
                keys.push(rest.to_string());
            }
        }
        _ => {}
    }
    keys
}

/// The comma-separated parts of a prompt, lower-cased, with emphasis syntax `(x:1.2)`, `[x]`
/// and lead-ins such as "by", "art by", "in the style of" taken off; lists of artists joined by
/// "and" are split.
fn pieces(prompt: &str) -> Vec<String> {
    let lower = prompt.to_lowercase();
    let mut out = Vec::new();
    for part in lower.split([',', ';', '|', '\n', '(', ')', '[', ']', '{', '}']) {
        let part = part.split(':').next().unwrap_or_default().trim();
        if part.is_empty() {
            continue;
        }
        out.push(part.to_string());
        let mut rest = part;
        for lead in [
            "in the style of ",
            "art by ",
            "painted by ",
            "style of ",
            "by ",
        ] {
            if let Some(pos) = rest.find(lead) {
                rest = &rest[pos + lead.len()..];
                out.push(rest.trim().to_string());
                break;
            }
        }
        if rest.contains(" and ") {
            out.extend(rest.split(" and ").map(|s| s.trim().to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> Vocabulary {
        Vocabulary::from_phrases(vec![
            ("an oil painting".into(), Category::Medium),
            ("by Greg Rutkowski".into(), Category::Artist),
            ("by Alphonse Mucha".into(), Category::Artist),
            ("art nouveau".into(), Category::Movement),
            ("trending on artstation".into(), Category::Trending),
            ("highly detailed".into(), Category::Flavor),
        ])
    }

    #[test]
    fn mines_weighted_phrases() {
        let found = vocab().mine(&[
            (
                "portrait of a knight, oil painting, art by greg rutkowski and alphonse mucha, (highly detailed:1.2)",
                0.75,
            ),
            ("a castle, Trending on ArtStation, by Greg Rutkowski", 0.25),
            ("highly detailed, highly detailed", 0.5),
        ]);
        let score = |p: &str| found.iter().find(|m| m.phrase == p).map(|m| m.score);
        assert_eq!(score("by Greg Rutkowski"), Some(1.0));
        assert_eq!(score("by Alphonse Mucha"), Some(0.75));
        assert_eq!(score("an oil painting"), Some(0.75));
        assert_eq!(score("trending on artstation"), Some(0.25));
        // Counted once per prompt.
        assert_eq!(score("highly detailed"), Some(1.25));
        assert_eq!(score("art nouveau"), None);
        assert_eq!(found[0].phrase, "highly detailed");
    }

    #[test]
    fn classic_takes_one_per_list_then_flavors() {
        let v = vocab();
        let ranked = v.mine(&[
            ("highly detailed, by greg rutkowski, by alphonse mucha", 1.0),
            ("art nouveau, by greg rutkowski", 0.5),
        ]);
        let classic = pick(&ranked, ModifierMode::Classic, 3);
        let phrases: Vec<&str> = classic.iter().map(|m| m.phrase.as_str()).collect();
        assert_eq!(
            phrases,
            ["by Greg Rutkowski", "art nouveau", "highly detailed"]
        );
        let fast = pick(&ranked, ModifierMode::Fast, 2);
        assert_eq!(fast[0].phrase, "by Greg Rutkowski");
        assert_eq!(fast.len(), 2);
    }
}
