//! A real Milvus that checks credentials, for the token tests: Milvus 2.3.5 standalone as PyPI
//! `milvus==2.3.5` packages it (the proxy, coordinators and nodes in one process, with embedded
//! etcd and local storage), started with `common.security.authorizationEnabled`. milvus-lite
//! has no authentication, so only this server can refuse a wrong token.
//!
//! Milvus binds its ports on every interface and has no setting for loopback alone, so the
//! server runs in a network namespace of its own whose only interface is loopback (`unshare
//! --net`, inside a user namespace so that no privilege is needed where the kernel allows
//! unprivileged ones): nothing outside can reach it, and its fixed ports clash with nothing.
//! The binary under test joins that namespace (`nsenter`). A PID namespace holds the server's
//! processes: when `unshare` dies (`--kill-child`), all of them die with it.
//!
//! One server per test binary, started on first use and killed when the binary exits,
//! however it exits, by a watchdog shell started with it.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The package: the last release of PyPI's "embedded Milvus".
const PACKAGES: [&str; 1] = ["milvus==2.3.5"];

/// Where the proxy listens inside the namespace (Milvus's default port).
pub const ADDR: &str = "127.0.0.1:19530";

/// The password every new Milvus gives its `root` user.
pub const ROOT_TOKEN: &str = "root:Milvus";

/// How long a first start may take (it unpacks its binaries, then waits for its components).
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// The running server.
pub struct AuthMilvus {
    /// `unshare`: its PID names the namespaces to join.
    unshare: Child,
    _watchdog: Child,
    _data: tempfile::TempDir,
}

/// The server, started on first use.
pub fn server() -> &'static AuthMilvus {
    static SERVER: OnceLock<AuthMilvus> = OnceLock::new();
    SERVER.get_or_init(start)
}

impl AuthMilvus {
    /// Runs `program` with `args` and `env` inside the server's network namespace.
    pub fn run(&self, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new("nsenter")
            .args(["--target", &self.unshare.id().to_string()])
            .args(["--net", "--user", "--preserve-credentials", "--"])
            .arg(program)
            .args(args)
            .env_remove("MILVUS_TOKEN")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("running nsenter (util-linux)")
    }
}

/// Starts the server with authentication on and waits until its health check answers.
fn start() -> AuthMilvus {
    let exe = super::python::venv_executable("milvus-auth-venv", &PACKAGES, "milvus-server");
    let data = tempfile::Builder::new()
        .prefix("milvus-auth-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let unshare = Command::new("unshare")
        .args([
            "--net",
            "--map-root-user",
            "--pid",
            "--fork",
            "--kill-child",
        ])
        .args(["bash", "-c"])
        .arg(r#"ip link set lo up && exec "$0" --data "$1" --authorization-enabled true"#)
        .arg(&exe)
        .arg(data.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("running unshare (util-linux)");
    // `unshare --kill-child` takes the whole namespace with it.
    let watchdog = super::watchdog(unshare.id(), "KILL");
    let mut server = AuthMilvus {
        unshare,
        _watchdog: watchdog,
        _data: data,
    };
    // Milvus answers its metrics port's /healthz with OK once every component is up.
    let healthy = r#"(exec 3<>/dev/tcp/127.0.0.1/9091 &&
        printf 'GET /healthz HTTP/1.0\r\n\r\n' >&3 && grep -q OK <&3) 2>/dev/null"#;
    let clock = Instant::now();
    loop {
        if let Ok(Some(status)) = server.unshare.try_wait() {
            panic!(
                "{} exited with {status} before it was healthy",
                exe.display()
            );
        }
        let probe = server.run(Path::new("bash"), &["-c", healthy], &[]);
        if probe.status.success() {
            return server;
        }
        assert!(
            clock.elapsed() < START_TIMEOUT,
            "Milvus was not healthy within {START_TIMEOUT:?}: {}",
            String::from_utf8_lossy(&probe.stderr)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
