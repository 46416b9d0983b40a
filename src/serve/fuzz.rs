//! The fuzzing budget of the server's parser tests (query strings, uploads): a few hundred
//! generated cases each in `cargo test`, as many as `PROMPTDEX_FUZZ_CASES` says for a longer
//! run (`PROMPTDEX_FUZZ_CASES=100000 cargo test --release --lib serve::`), and a time limit per
//! case that a parser must stay under.

use std::time::{Duration, Instant};

use proptest::test_runner::Config;

/// Longest one generated input may take to parse.
pub const PER_CASE: Duration = Duration::from_secs(1);

/// `proptest`'s configuration: `PROMPTDEX_FUZZ_CASES` cases, else `default_cases`.
pub fn config(default_cases: u32) -> Config {
    let cases = std::env::var("PROMPTDEX_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        // Failures are reported with their shrunk input; no files are written beside the code.
        failure_persistence: None,
        ..Config::default()
    }
}

/// Runs `f`, failing when it takes longer than [`PER_CASE`].
pub fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    assert!(took <= PER_CASE, "{what} took {took:?}");
    out
}
