//! Query strings, decoded strictly: percent-escapes must decode to UTF-8 (a lossy decoder
//! would search for U+FFFD instead of saying the request is broken).

use std::collections::HashMap;

use percent_encoding::percent_decode;

use super::error::{ApiError, ApiResult};

/// The decoded `name=value` pairs of a query string (the last of a repeated name wins).
#[derive(Debug, Default)]
pub struct Query {
    pairs: HashMap<String, String>,
}

impl Query {
    /// Parses `raw` (the part after `?`, if any).
    pub fn parse(raw: Option<&str>) -> ApiResult<Self> {
        let mut pairs = HashMap::new();
        for item in raw.unwrap_or_default().split('&').filter(|s| !s.is_empty()) {
            let (name, value) = item.split_once('=').unwrap_or((item, ""));
            let name = decode(name)?;
            let value = decode(value)?;
            pairs.insert(name, value);
        }
        Ok(Self { pairs })
    }

    /// The value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.get(name).map(String::as_str)
    }

    /// `name` as a whole number in `min..=max`, or `default` when absent.
    pub fn number(&self, name: &str, default: usize, min: usize, max: usize) -> ApiResult<usize> {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        raw.trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`{name}` must be a whole number from {min} to {max}, not `{}`",
                    clip(raw)
                ))
            })
    }

    /// `name` as a flag: `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`.
    pub fn flag(&self, name: &str, default: bool) -> ApiResult<bool> {
        match self.get(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if ["1", "true", "yes", "on", ""].contains(&v.as_str()) => Ok(true),
            Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => Ok(false),
            Some(v) => Err(ApiError::bad_request(format!(
                "`{name}` must be 1 or 0, not `{}`",
                clip(&v)
            ))),
        }
    }
}

/// Decodes one component: `+` is a space, `%XX` a byte; the bytes must be UTF-8.
fn decode(component: &str) -> ApiResult<String> {
    let spaced = component.replace('+', " ");
    percent_decode(spaced.as_bytes())
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::bad_request("the query string is not valid UTF-8"))
}

/// At most 40 characters of `text`, for error messages.
fn clip(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_percent_and_utf8() {
        let q = Query::parse(Some("q=a+cat%2C+%E2%9C%93&k=5&empty")).unwrap();
        assert_eq!(q.get("q"), Some("a cat, ✓"));
        assert_eq!(q.number("k", 10, 1, 100).unwrap(), 5);
        assert_eq!(q.get("empty"), Some(""));
        assert_eq!(q.number("missing", 10, 1, 100).unwrap(), 10);
    }

    #[test]
    fn refuses_bad_utf8_and_out_of_range_numbers() {
        let err = Query::parse(Some("q=%FF%FE")).unwrap_err();
        assert_eq!(err.status, 400);
        let q = Query::parse(Some("k=100000&j=-1&f=maybe")).unwrap();
        assert!(q.number("k", 10, 1, 1000).is_err());
        assert!(q.number("j", 10, 1, 1000).is_err());
        assert!(q.flag("f", false).is_err());
    }

    mod fuzz {
        use std::collections::BTreeMap;

        use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
        use proptest::prelude::*;

        use super::super::Query;
        use crate::serve::fuzz::{config, timed};

        /// Query-string-ish text: the characters that mean something (`&`, `=`, `+`, `%`,
        /// hex digits) far more often than chance would give them, plus any character.
        fn query_text() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                Just("&".to_string()),
                Just("=".to_string()),
                Just("+".to_string()),
                "%[0-9a-fA-F]{0,2}",
                "%[cdefCDEF][0-9a-fA-F]%[89abAB][0-9a-fA-F]",
                "[a-z0-9]{1,6}",
                any::<char>().prop_map(String::from),
            ];
            proptest::collection::vec(piece, 0..40).prop_map(|p| p.concat())
        }

        proptest! {
            #![proptest_config(config(1000))]

            /// Any query string parses or is refused as a 400; the values it gives can be
            /// asked for as numbers and flags without a panic.
            #[test]
            fn any_query_string_is_parsed_or_refused(raw in query_text()) {
                timed("a query string", || match Query::parse(Some(&raw)) {
                    Ok(q) => {
                        for name in q.pairs.keys() {
                            let _ = q.number(name, 10, 1, 1000);
                            let _ = q.flag(name, true);
                        }
                    }
                    Err(e) => assert_eq!(e.status, 400),
                });
            }

            /// Pairs encoded as a browser would come back exactly.
            #[test]
            fn encoded_pairs_round_trip(
                pairs in proptest::collection::btree_map(".{1,12}", ".{0,40}", 0..8)
            ) {
                let encode = |t: &str| utf8_percent_encode(t, NON_ALPHANUMERIC).to_string();
                let raw: Vec<String> = pairs
                    .iter()
                    .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                    .collect();
                let q = Query::parse(Some(&raw.join("&"))).unwrap();
                let got: BTreeMap<String, String> = q.pairs.into_iter().collect();
                prop_assert_eq!(got, pairs);
            }

            /// Escaped bytes are accepted exactly when they are UTF-8.
            #[test]
            fn escaped_bytes_must_be_utf8(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
                let escaped: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
                let parsed = Query::parse(Some(&format!("q={escaped}")));
                match std::str::from_utf8(&bytes) {
                    Ok(text) => prop_assert_eq!(parsed.unwrap().get("q").map(str::to_owned), Some(text.to_owned())),
                    Err(_) => prop_assert_eq!(parsed.unwrap_err().status, 400),
                }
            }
        }
    }
}
