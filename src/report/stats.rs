//! Statistics of a prompt collection: lengths, the most common words and the most common
//! comma-separated phrases (the "modifiers" of Stable Diffusion prompts).

use std::collections::{HashMap, HashSet};

/// English function words, and the bits of markup prompts are full of, left out of the top
/// terms.
const STOP_WORDS: &[&str] = &[
    "a", "about", "above", "after", "all", "also", "an", "and", "any", "are", "as", "at", "be",
    "been", "but", "by", "can", "could", "do", "does", "each", "for", "from", "has", "have", "he",
    "her", "his", "how", "i", "if", "in", "into", "is", "it", "its", "like", "made", "me", "more",
    "my", "no", "not", "of", "off", "on", "one", "or", "other", "our", "out", "over", "she", "so",
    "some", "such", "than", "that", "the", "their", "them", "then", "there", "these", "they",
    "this", "those", "through", "to", "under", "up", "very", "was", "we", "were", "what", "when",
    "where", "which", "while", "who", "will", "with", "you", "your",
];

/// Words of a prompt: lower-cased runs of letters, digits and apostrophes, not all digits
/// (so the weight in `(castle:1.2)` is no word, but `8k` is).
pub fn words(prompt: &str) -> impl Iterator<Item = String> + '_ {
    prompt
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\'').to_lowercase())
        .filter(|w| !w.is_empty() && !w.chars().all(|c| c.is_ascii_digit()))
}

/// Comma-separated phrases of a prompt, lower-cased, whitespace collapsed, weights markup
/// (`(...)`, `[...]`, `{...}`, `:1.2`) stripped.
pub fn phrases(prompt: &str) -> impl Iterator<Item = String> + '_ {
    prompt.split([',', '|', ';']).filter_map(|part| {
        let part = part.split(':').next().unwrap_or_default();
        let cleaned: String = part
            .chars()
            .filter(|c| !matches!(c, '(' | ')' | '[' | ']' | '{' | '}' | '"'))
            .collect();
        let phrase = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
        let phrase = phrase.to_lowercase();
        (!phrase.is_empty()).then_some(phrase)
    })
}

/// What [`PromptStats::add`] has seen.
#[derive(Debug, Clone, Default)]
pub struct PromptStats {
    /// Prompts seen.
    pub prompts: usize,
    /// Words per prompt, one entry per prompt.
    pub word_counts: Vec<usize>,
    /// Characters per prompt, one entry per prompt.
    pub char_counts: Vec<usize>,
    /// In how many prompts each (non-stop) word occurs.
    word_df: HashMap<String, usize>,
    /// In how many prompts each phrase occurs.
    phrase_df: HashMap<String, usize>,
}

/// A summary of counts: mean and quantiles.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Spread {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub median: usize,
    /// 95th percentile.
    pub p95: usize,
    /// Largest.
    pub max: usize,
}

impl Spread {
    /// Summarises `values` (all zero when empty).
    pub fn of(values: &[usize]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        let at = |q: f64| sorted[(q * (sorted.len() - 1) as f64).round() as usize];
        Self {
            mean: values.iter().sum::<usize>() as f64 / values.len() as f64,
            median: at(0.5),
            p95: at(0.95),
            max: sorted[sorted.len() - 1],
        }
    }
}

impl PromptStats {
    /// Counts one prompt.
    pub fn add(&mut self, prompt: &str) {
        self.prompts += 1;
        let words: Vec<String> = words(prompt).collect();
        self.word_counts.push(words.len());
        self.char_counts.push(prompt.chars().count());
        let unique: HashSet<String> = words
            .into_iter()
            .filter(|w| w.chars().count() > 1 && !STOP_WORDS.contains(&w.as_str()))
            .collect();
        for word in unique {
            *self.word_df.entry(word).or_default() += 1;
        }
        let unique: HashSet<String> = phrases(prompt).collect();
        for phrase in unique {
            *self.phrase_df.entry(phrase).or_default() += 1;
        }
    }

    /// The `k` words in most prompts, with their prompt counts (ties by word).
    pub fn top_words(&self, k: usize) -> Vec<(String, usize)> {
        top(&self.word_df, k)
    }

    /// The `k` phrases in most prompts, with their prompt counts; only phrases of more than
    /// one word that occur in more than one prompt (single words are in [`Self::top_words`]).
    pub fn top_phrases(&self, k: usize) -> Vec<(String, usize)> {
        let multi: HashMap<String, usize> = self
            .phrase_df
            .iter()
            .filter(|(p, &n)| n > 1 && p.contains(' '))
            .map(|(p, &n)| (p.clone(), n))
            .collect();
        top(&multi, k)
    }

    /// Words per prompt.
    pub fn words(&self) -> Spread {
        Spread::of(&self.word_counts)
    }

    /// Characters per prompt.
    pub fn chars(&self) -> Spread {
        Spread::of(&self.char_counts)
    }
}

fn top(counts: &HashMap<String, usize>, k: usize) -> Vec<(String, usize)> {
    let mut all: Vec<(String, usize)> = counts.iter().map(|(w, &n)| (w.clone(), n)).collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_words_phrases_and_lengths() {
        let mut stats = PromptStats::default();
        for p in [
            "A castle on a hill, (highly detailed:1.2), trending on artstation",
            "portrait of a cat, highly detailed, octane render",
            "the cat's castle, Highly  Detailed",
        ] {
            stats.add(p);
        }
        assert_eq!(stats.prompts, 3);
        assert_eq!(stats.word_counts, vec![10, 8, 5]);
        let top = stats.top_words(3);
        assert_eq!(top[0], ("detailed".to_string(), 3));
        assert_eq!(top[1], ("highly".to_string(), 3));
        assert_eq!(top[2], ("castle".to_string(), 2));
        assert!(stats
            .top_words(100)
            .iter()
            .all(|(w, _)| w != "a" && w != "on"));
        assert_eq!(
            stats.top_phrases(10),
            vec![("highly detailed".to_string(), 3)]
        );
        let words = stats.words();
        assert_eq!((words.median, words.max), (8, 10));
        assert!((words.mean - 23.0 / 3.0).abs() < 1e-9);
        assert_eq!(Spread::of(&[]), Spread::default());
    }
}
