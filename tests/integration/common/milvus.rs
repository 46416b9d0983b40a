//! A real Milvus server for the tests: milvus-lite (PyPI `milvus-lite==3.2.2`, Milvus's own
//! development server, same gRPC API) on a loopback port.
//!
//! Which server: `PROMPTDEX_MILVUS` (`HOST:PORT` of a running one, as `.ci/run` starts it);
//! else one started here from the `milvus-lite` executable `PROMPTDEX_MILVUS_LITE` names;
//! else from a virtual environment this module creates under `target/milvus-venv` (`pip
//! install`, like the models the tests fetch themselves). Never skipped: without Python or
//! the package the tests fail saying so.
//!
//! A server started here is shared by every test of the binary (each test uses an index name
//! of its own, [`index_url`], so they run in parallel) and stopped when the binary exits,
//! however it exits (a panic, a failed test, a kill): a watchdog shell started with it waits
//! for this process to end, then kills it. Its data folder is a fresh temporary one.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The PyPI packages the server needs (milvus-lite's gRPC adapter imports pymilvus).
const PACKAGES: [&str; 2] = ["milvus-lite==3.2.2", "pymilvus==3.0.2"];

/// A Milvus server the tests can reach.
pub struct MilvusServer {
    /// `HOST:PORT`.
    pub addr: String,
    /// The process, its watchdog and its data folder, when the tests started it.
    _started: Option<(Child, Child, tempfile::TempDir)>,
}

/// The server (started on first use unless `PROMPTDEX_MILVUS` names one).
pub fn server() -> &'static MilvusServer {
    static SERVER: OnceLock<MilvusServer> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var("PROMPTDEX_MILVUS") {
        Ok(addr) if !addr.is_empty() => MilvusServer {
            addr,
            _started: None,
        },
        _ => start(),
    })
}

/// `milvus://HOST:PORT/NAME` for a fresh index of test `name` (unique to this process: the
/// server may outlive it, as `.ci/run`'s does).
pub fn index_url(name: &str) -> String {
    format!("milvus://{}/t_{name}_{}", server().addr, std::process::id())
}

/// The `milvus-lite` executable: `PROMPTDEX_MILVUS_LITE`, else the test venv's, made once.
fn executable() -> PathBuf {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        if let Some(exe) = std::env::var_os("PROMPTDEX_MILVUS_LITE") {
            return PathBuf::from(exe);
        }
        super::python::venv_executable("milvus-venv", &PACKAGES, "milvus-lite")
    })
    .clone()
}

/// Starts milvus-lite on a free loopback port with a fresh data folder and waits until it
/// accepts connections.
fn start() -> MilvusServer {
    let exe = executable();
    let data = tempfile::Builder::new()
        .prefix("milvus-data-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(&exe)
        .args(["server", "--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--data-dir")
        .arg(data.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", exe.display()));
    let watchdog = super::watchdog(child.id(), "TERM");
    let addr = format!("127.0.0.1:{port}");
    let clock = Instant::now();
    while TcpStream::connect(&addr).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{} exited with {status} before listening", exe.display());
        }
        assert!(
            clock.elapsed() < Duration::from_secs(90),
            "milvus-lite did not listen on {addr} within 90 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    MilvusServer {
        addr,
        _started: Some((child, watchdog, data)),
    }
}
