//! Size limits shared by every source of prompts: corpus files, label files and the metadata
//! embedded in images.

/// Longest prompt accepted, in bytes, from any source. Real SD prompts stay far below (the
/// text encoder sees 77 tokens); a longer text is almost always a broken file. A corpus row
/// over it is rejected; an embedded prompt over it is cut with a warning.
pub const MAX_PROMPT_BYTES: usize = 16 * 1024;

/// Most bytes of settings (their keys and string values) kept with one embedded prompt; the
/// settings past it are dropped with a warning, so raw chunk text never bloats a record.
pub const MAX_PARAMETERS_BYTES: usize = 4 * MAX_PROMPT_BYTES;

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
pub fn cut_at_char_boundary(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_fall_on_character_boundaries() {
        assert_eq!(cut_at_char_boundary("abc", 5), "abc");
        assert_eq!(cut_at_char_boundary("abc", 2), "ab");
        // "é" is two bytes, "猫" three: a cut inside one drops the whole character.
        assert_eq!(cut_at_char_boundary("aé", 2), "a");
        assert_eq!(cut_at_char_boundary("猫猫", 5), "猫");
        assert_eq!(cut_at_char_boundary("猫", 0), "");
    }
}
