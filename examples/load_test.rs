//! Load test for `promptdex serve` (loopback only): N concurrent clients mixing prompt
//! searches and generations for a fixed time, bounded in requests too. Reports throughput,
//! p50/p99 latency per kind, unexpected errors (anything but 200, and 503 without
//! Retry-After), deliberate 503s, and the server's peak memory (VmHWM from /proc).
//!
//! ```text
//! cargo run --release --example load_test -- --url http://127.0.0.1:8080 --clients 32 \
//!     --seconds 60 --images ../shared/data/eval/kaggle_sample/images --pid SERVER_PID
//! ```
//! `scripts/load_test.sh` starts a server, runs this, and stops the server.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

/// Load-test a promptdex server on this machine.
#[derive(Debug, Parser)]
struct Args {
    /// Server address (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// How long to run, seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Stop after this many requests in all, whichever comes first.
    #[arg(long, default_value_t = 200_000)]
    max_requests: u64,
    /// One request in this many is a generation (the rest are prompt searches).
    #[arg(long, default_value_t = 4)]
    generate_every: u64,
    /// Folder of images to upload (PNG, JPEG, WebP).
    #[arg(long)]
    images: PathBuf,
    /// Prompt corpus whose first column gives the search texts.
    #[arg(long, default_value = "examples/data/diffusiondb_prompts_10k.tsv")]
    queries: PathBuf,
    /// The server's process id, to read its memory from /proc.
    #[arg(long)]
    pid: Option<u32>,
    /// Print the summary as JSON too.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Search,
    Generate,
}

/// One finished request.
struct Sample {
    kind: Kind,
    status: u16,
    millis: f64,
    retry_after: bool,
    error: Option<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let url = reqwest::Url::parse(&args.url).context("--url")?;
    match url.host_str() {
        Some("127.0.0.1" | "localhost" | "::1" | "[::1]") => {}
        other => bail!("the load test runs against loopback only, not {other:?}"),
    }
    let images = read_images(&args.images)?;
    let queries = read_queries(&args.queries)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let summary = runtime.block_on(run(&args, images, queries))?;
    println!("{}", summary.text);
    if args.json {
        println!("{}", summary.json);
    }
    if summary.unexpected > 0 {
        bail!("{} unexpected errors", summary.unexpected);
    }
    Ok(())
}

fn read_images(dir: &PathBuf) -> Result<Vec<Arc<Vec<u8>>>> {
    let mut images = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
        let path = entry?.path();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if ["png", "jpg", "jpeg", "webp"].contains(&ext.as_str()) {
            images.push(Arc::new(std::fs::read(&path)?));
        }
    }
    if images.is_empty() {
        bail!("no images in {}", dir.display());
    }
    Ok(images)
}

fn read_queries(path: &PathBuf) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let queries: Vec<String> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').next())
        .map(|q| q.chars().take(200).collect::<String>())
        .filter(|q| !q.trim().is_empty())
        .take(2000)
        .collect();
    if queries.is_empty() {
        bail!("no queries in {}", path.display());
    }
    Ok(queries)
}

struct Summary {
    text: String,
    json: serde_json::Value,
    unexpected: usize,
}

async fn run(args: &Args, images: Vec<Arc<Vec<u8>>>, queries: Vec<String>) -> Result<Summary> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .timeout(Duration::from_secs(120))
        .build()?;
    let base = args.url.trim_end_matches('/').to_string();
    let issued = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    let images = Arc::new(images);
    let queries = Arc::new(queries);

    // Memory of the server, sampled while the test runs.
    let peak_rss = Arc::new(AtomicU64::new(0));
    let sampler = args.pid.map(|pid| {
        let peak_rss = Arc::clone(&peak_rss);
        tokio::spawn(async move {
            while Instant::now() < deadline {
                if let Some(rss) = proc_status_kb(pid, "VmRSS") {
                    peak_rss.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    });
    let rss_before = args.pid.and_then(|pid| proc_status_kb(pid, "VmRSS"));

    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let client = client.clone();
        let base = base.clone();
        let issued = Arc::clone(&issued);
        let samples = Arc::clone(&samples);
        let images = Arc::clone(&images);
        let queries = Arc::clone(&queries);
        let (every, max) = (args.generate_every.max(1), args.max_requests);
        tasks.push(tokio::spawn(async move {
            loop {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if n >= max || Instant::now() >= deadline {
                    break;
                }
                let kind = if n % every == every - 1 {
                    Kind::Generate
                } else {
                    Kind::Search
                };
                let request = match kind {
                    Kind::Search => {
                        let q = &queries[(n as usize * 7919) % queries.len()];
                        client.get(format!("{base}/api/search")).query(&[
                            ("q", q.as_str()),
                            ("k", "10"),
                            ("mode", "hybrid"),
                        ])
                    }
                    Kind::Generate => {
                        let image = &images[(n as usize) % images.len()];
                        client
                            .post(format!("{base}/api/generate?metadata=0"))
                            .header("content-type", "application/octet-stream")
                            .body(image.as_ref().clone())
                    }
                };
                let sent = Instant::now();
                let sample = match request.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let retry = response.headers().get("retry-after").cloned();
                        let body = response.bytes().await;
                        let millis = sent.elapsed().as_secs_f64() * 1e3;
                        let error = match (&body, status) {
                            (Err(e), _) => Some(format!("body: {e}")),
                            (Ok(_), 200) => None,
                            (Ok(_), 503) if retry.is_some() => None,
                            (Ok(b), s) => Some(format!(
                                "{s}: {}",
                                String::from_utf8_lossy(&b[..b.len().min(200)])
                            )),
                        };
                        let wait = retry
                            .as_ref()
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<u64>().ok());
                        let sample = Sample {
                            kind,
                            status,
                            millis,
                            retry_after: retry.is_some(),
                            error,
                        };
                        // A polite client waits as told (at most until the end).
                        if let Some(seconds) = wait {
                            let until = Instant::now() + Duration::from_secs(seconds);
                            tokio::time::sleep_until(until.min(deadline).into()).await;
                        }
                        sample
                    }
                    Err(e) => Sample {
                        kind,
                        status: 0,
                        millis: sent.elapsed().as_secs_f64() * 1e3,
                        retry_after: false,
                        error: Some(format!("request: {e}")),
                    },
                };
                samples.lock().unwrap().push(sample);
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(sampler) = sampler {
        sampler.abort();
    }
    let hwm = args.pid.and_then(|pid| proc_status_kb(pid, "VmHWM"));
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    Ok(summarise(
        args,
        &samples,
        elapsed,
        rss_before,
        peak_rss.load(Ordering::Relaxed),
        hwm,
    ))
}

/// A `VmXXX:  1234 kB` line of /proc/PID/status, in kB.
fn proc_status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn summarise(
    args: &Args,
    samples: &[Sample],
    elapsed: f64,
    rss_before: Option<u64>,
    peak_rss: u64,
    hwm: Option<u64>,
) -> Summary {
    let mut text = format!(
        "{} clients, {:.1} s, {} requests ({:.1}/s)\n",
        args.clients,
        elapsed,
        samples.len(),
        samples.len() as f64 / elapsed
    );
    let mut kinds = serde_json::Map::new();
    for (kind, name) in [(Kind::Search, "search"), (Kind::Generate, "generate")] {
        let mine: Vec<&Sample> = samples.iter().filter(|s| s.kind == kind).collect();
        let mut ok: Vec<f64> = mine
            .iter()
            .filter(|s| s.status == 200)
            .map(|s| s.millis)
            .collect();
        ok.sort_by(f64::total_cmp);
        let busy = mine
            .iter()
            .filter(|s| s.status == 503 && s.retry_after)
            .count();
        let errors = mine.iter().filter(|s| s.error.is_some()).count();
        let (p50, p99) = (percentile(&ok, 50.0), percentile(&ok, 99.0));
        let max = ok.last().copied().unwrap_or(f64::NAN);
        text.push_str(&format!(
            "{name:<9} {:>6} sent {:>6} ok ({:>6.1}/s)  p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms  \
             503+Retry-After {busy}  unexpected errors {errors}\n",
            mine.len(),
            ok.len(),
            ok.len() as f64 / elapsed,
            p50,
            p99,
            max
        ));
        kinds.insert(
            name.into(),
            serde_json::json!({
                "sent": mine.len(), "ok": ok.len(), "ok_per_s": ok.len() as f64 / elapsed,
                "p50_ms": p50, "p99_ms": p99, "max_ms": max, "busy_503": busy, "errors": errors,
            }),
        );
    }
    let unexpected: Vec<&Sample> = samples.iter().filter(|s| s.error.is_some()).collect();
    for s in unexpected.iter().take(5) {
        text.push_str(&format!(
            "error: {:?} {}\n",
            s.kind,
            s.error.as_deref().unwrap_or_default()
        ));
    }
    if let Some(hwm) = hwm {
        text.push_str(&format!(
            "server memory: VmHWM {:.0} MiB (peak RSS sampled {:.0} MiB, {:.0} MiB before the test)\n",
            hwm as f64 / 1024.0,
            peak_rss as f64 / 1024.0,
            rss_before.unwrap_or(0) as f64 / 1024.0
        ));
    }
    let json = serde_json::json!({
        "clients": args.clients, "seconds": elapsed, "requests": samples.len(),
        "requests_per_s": samples.len() as f64 / elapsed, "kinds": kinds,
        "unexpected_errors": unexpected.len(), "server_vmhwm_kb": hwm,
        "server_peak_rss_kb": peak_rss, "server_rss_before_kb": rss_before,
    });
    Summary {
        text,
        json,
        unexpected: unexpected.len(),
    }
}
