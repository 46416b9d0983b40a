//! Text bytes as metadata writers leave them: Latin-1 by the letter of PNG and EXIF, UTF-8 in
//! practice, decoded so that neither ever fails.

/// Each byte as the Latin-1 character of that code.
pub(super) fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// The bytes as UTF-8 when they are valid UTF-8, else as Latin-1.
pub(super) fn latin1_or_utf8(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => latin1(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_wins_and_latin1_takes_the_rest() {
        assert_eq!(latin1_or_utf8("chat à".as_bytes()), "chat à");
        assert_eq!(latin1_or_utf8(b"chat \xE0"), "chat à");
        assert_eq!(latin1(b"\xE9t\xE9"), "été");
        assert_eq!(latin1_or_utf8(b""), "");
    }
}
