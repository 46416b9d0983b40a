//! The f32 multiply-add ceiling of this CPU: how many GFLOP/s one core, and `THREADS` cores at
//! once, can reach with 256-bit FMA instructions and no memory traffic at all.
//!
//! `cargo run --release --example cpu_peak -- [THREADS=2] [SECONDS=2]`
//!
//! A dense model's matrix products cannot run faster than this figure, so it bounds every
//! "promptdex vs PyTorch" ratio for compute-bound towers (see docs/BENCHMARKS.md).

use std::time::Instant;

/// Independent accumulator chains: enough to cover FMA latency (4-5 cycles) on two pipes.
const CHAINS: usize = 12;
/// Multiply-adds per inner round: `CHAINS` vectors of 8 lanes, 2 FLOPs each.
const FLOPS_PER_ROUND: f64 = (CHAINS * 8 * 2) as f64;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_rounds(rounds: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(0.0); CHAINS];
    let a = _mm256_set1_ps(std::hint::black_box(0.999_999));
    let b = _mm256_set1_ps(std::hint::black_box(1e-7));
    for _ in 0..rounds / 1000 {
        for _ in 0..1000 {
            for v in acc.iter_mut() {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        // Keeps the compiler from folding the rounds into a closed form.
        acc = std::hint::black_box(acc);
    }
    let mut sum = _mm256_setzero_ps();
    for v in acc {
        sum = _mm256_add_ps(sum, v);
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
    lanes.iter().sum()
}

/// GFLOP/s of one thread spinning on FMAs for about `seconds`.
fn one_thread(seconds: f64) -> f64 {
    let rounds = 50_000_000u64;
    let mut done = 0u64;
    let mut sink = 0f32;
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds {
        // SAFETY: `main` checks for AVX2 and FMA before any thread calls this.
        sink += unsafe { fma_rounds(rounds) };
        done += rounds;
    }
    std::hint::black_box(sink);
    done as f64 * FLOPS_PER_ROUND / start.elapsed().as_secs_f64() / 1e9
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads: usize = args
        .first()
        .map_or(2, |s| s.parse().expect("THREADS: a number"));
    let seconds: f64 = args
        .get(1)
        .map_or(2.0, |s| s.parse().expect("SECONDS: a number"));
    if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
        eprintln!("this CPU lacks AVX2+FMA; nothing to measure");
        std::process::exit(1);
    }
    let single = one_thread(seconds);
    println!("1 thread: {single:.1} GFLOP/s (f32 FMA, 256-bit)");
    let all: f64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| s.spawn(|| one_thread(seconds)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    println!("{threads} threads: {all:.1} GFLOP/s in total");
}
