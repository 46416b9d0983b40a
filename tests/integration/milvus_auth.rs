//! Credentials against a real Milvus that checks them (`common::milvus_auth`): a wrong token,
//! in the URL or in `MILVUS_TOKEN`, and a missing one are each refused by name, quickly, for
//! readers and writers, without the token in the message; the right token gets past the check
//! and meets the next one: this server (2.3.5) is older than the schema needs.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::milvus_auth::{server, ADDR, ROOT_TOKEN};

const WRONG: &str = "root:not-the-password";

/// Runs the binary in the server's namespace; checks it failed within a few seconds.
fn fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let server = server(); // started before the clock: a first start takes a while
    let models = common::models_dir();
    let mut env = env.to_vec();
    env.push(("PROMPTDEX_MODELS", models.to_str().unwrap()));
    let clock = Instant::now();
    let out: Output = server.run(Path::new(env!("CARGO_BIN_EXE_promptdex")), args, &env);
    let took = clock.elapsed();
    let err = common::stderr(&out);
    assert!(!out.status.success(), "{args:?} succeeded: {err}");
    assert!(took < Duration::from_secs(10), "{args:?} took {took:?}");
    err
}

fn assert_refused(err: &str) {
    assert!(
        err.contains(&format!(
            "the server at {ADDR} refused the credentials (check ?token= or MILVUS_TOKEN)"
        )),
        "{err}"
    );
    assert!(err.contains(&format!("milvus://{ADDR}/pdx")), "{err}");
    assert!(!err.contains("not-the-password"), "the token leaked: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn milvus_with_authentication_refuses_a_wrong_or_missing_token_by_name() {
    common::minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus.tsv");
    std::fs::write(&corpus, common::sample_tsv(20)).unwrap();
    let corpus = corpus.to_str().unwrap();
    let in_url = format!("milvus://{ADDR}/pdx?token={WRONG}");
    let bare = format!("milvus://{ADDR}/pdx");

    // A reader and a writer, the token in the URL.
    assert_refused(&fails(&["stats", "--index", &in_url], &[]));
    assert_refused(&fails(&["import", corpus, "--index", &in_url], &[]));
    // The token from the environment.
    let env = [("MILVUS_TOKEN", WRONG)];
    assert_refused(&fails(&["search", "a cat", "--index", &bare], &env));
    assert_refused(&fails(&["import", corpus, "--index", &bare], &env));
    // No token at all.
    assert_refused(&fails(&["stats", "--index", &bare], &[]));

    // The right token passes the check; then this server is found too old for the schema
    // (BM25 functions came in Milvus 2.5), for a reader and a writer, before any collection
    // is made.
    let right = format!("milvus://{ADDR}/pdx?token={ROOT_TOKEN}");
    for args in [
        &["stats", "--index", &right][..],
        &["import", corpus, "--index", &right][..],
    ] {
        let err = fails(args, &[]);
        assert!(!err.contains("refused"), "{err}");
        assert!(
            err.contains(&format!(
                "the server at {ADDR} runs Milvus v2.3.5-lite; promptdex needs Milvus 2.5 or newer"
            )),
            "{err}"
        );
    }
}
