//! Vectorisable f32 kernels for the transformer encoders, picked at run time.
//!
//! Each public kernel is written once as plain, branch-free Rust over slices (fixed-width
//! accumulator arrays for reductions, polynomial `exp` and `erf`), which LLVM vectorises. It
//! is compiled twice: portable, and for AVX2 + FMA, where `mul_add` is one instruction; the
//! second runs when the processor has both features. The approximations are within a few
//! units in the last place of f32 over the whole range (`exp` ~2e-7 relative, `erf` ~3e-7
//! absolute; checked in the tests), far below the 1e-4 the model parity tests allow.

/// Defines `pub fn $name` running `$body` compiled for AVX2 + FMA when the processor has
/// them, else as portable code.
macro_rules! fma_dispatch {
    ($(#[$doc:meta])* pub fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn portable($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn fast($($arg: $ty),*) {
                    portable($($arg),*)
                }
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    // SAFETY: the features `fast` is compiled for were just detected.
                    return unsafe { fast($($arg),*) };
                }
            }
            portable($($arg),*)
        }
    };
}

pub(crate) use fma_dispatch;

/// erf(x) by the rational approximation used in Eigen (x clamped to [-4, 4], where erf is
/// within 1e-8 of +-1); max absolute error about 3e-7 in f32.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const A: [f32; 7] = [
        -2.726_142_3e-10,
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.9546e-3,
        -1.609_603_3e-2,
    ];
    const B: [f32; 5] = [
        -1.456_607_2e-5,
        -2.133_740_6e-4,
        -1.682_827e-3,
        -7.373_329e-3,
        -1.426_474e-2,
    ];
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = A[0];
    for c in &A[1..] {
        p = p.mul_add(x2, *c);
    }
    let mut q = B[0];
    for c in &B[1..] {
        q = q.mul_add(x2, *c);
    }
    x * p / q
}

/// e^x, branch free: x = n ln 2 + r with |r| <= ln 2 / 2, e^r by a degree-7 polynomial,
/// 2^n by building the float's exponent bits. x is clamped to [-87, 88], so the result is
/// always a normal float (e^-87 ~ 1.6e-38 stands in for 0 in softmax and sigmoid).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Adding 1.5 * 2^23 rounds a float of magnitude < 2^22 to an integer, which then sits
    // in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    // ln 2 split in a part exact in few bits and the rest, so n * LN2_HI is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let t = x.mul_add(std::f32::consts::LOG2_E, ROUND);
    let n = t - ROUND;
    let r = n.mul_add(-LN2_HI, x);
    let r = n.mul_add(-LN2_LO, r);
    // Taylor coefficients 1/k! for k = 7 down to 2 (Horner in r), then 1 + r + r^2 p(r).
    let mut p: f32 = 1.0 / 5040.0;
    for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5] {
        p = p.mul_add(r, c);
    }
    let er = p.mul_add(r * r, r + 1.0);
    let n = t.to_bits() as i32 - ROUND.to_bits() as i32;
    er * f32::from_bits(((n + 127) << 23) as u32)
}

/// x * sigmoid(x * c), the shape of both quick GELU and the tanh GELU.
#[inline(always)]
fn x_sigmoid(x: f32, xc: f32) -> f32 {
    x / (1.0 + exp(-xc))
}

fma_dispatch! {
    /// Exact GELU in place: `0.5 x (1 + erf(x / sqrt 2))`.
    pub fn gelu_inplace(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

fma_dispatch! {
    /// OpenAI's quick GELU in place: `x sigmoid(1.702 x)`.
    pub fn quick_gelu_inplace(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = x_sigmoid(*v, *v * 1.702);
        }
    }
}

fma_dispatch! {
    /// The tanh approximation of GELU in place: `0.5 x (1 + tanh(u))` with
    /// `u = sqrt(2/pi) (x + 0.044715 x^3)`, computed as the equal `x sigmoid(2u)`.
    pub fn gelu_tanh_inplace(x: &mut [f32]) {
        const C: f32 = 2.0 * 0.797_884_6; // 2 sqrt(2 / pi)
        for v in x.iter_mut() {
            let u = *v * (0.044_715 * *v * *v + 1.0);
            *v = x_sigmoid(*v, u * C);
        }
    }
}

/// Lanes of the accumulator arrays in the reductions (two AVX2 registers).
const LANES: usize = 16;

/// Sum of `v` over [`LANES`] independent accumulators.
#[inline(always)]
fn sum(v: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = v.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Sum of `(v - mean)^2` over [`LANES`] independent accumulators.
#[inline(always)]
fn sum_sq_dev(v: &[f32], mean: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = v.chunks_exact(LANES);
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|x| (x - mean) * (x - mean))
        .sum();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            let d = x - mean;
            *a = d.mul_add(d, *a);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Largest element of `v` (negative infinity for an empty slice).
#[inline(always)]
fn max(v: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = v.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = a.max(x);
        }
    }
    acc.iter().fold(tail, |m, &x| m.max(x))
}

/// Dot product of `a` and `b` (same length) over [`LANES`] independent accumulators.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((acc, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *acc = x.mul_add(y, *acc);
        }
    }
    acc.iter().sum::<f32>() + tail
}

fma_dispatch! {
    /// Dot products of `rows` vectors `x_i` with `out.len() / rows` vectors `w_j`, all of
    /// `len` values, `x_i` starting at `x[i * x_stride]` and `w_j` at `w[j * w_stride]`:
    /// `out[j * rows + i] = x_i . w_j`. Each `w_j` is read from memory once, for products
    /// with few rows (a matrix times a handful of vectors), which memory bandwidth bounds.
    pub fn dot_products(
        x: &[f32],
        x_stride: usize,
        w: &[f32],
        w_stride: usize,
        len: usize,
        rows: usize,
        out: &mut [f32],
    ) {
        for (j, out) in out.chunks_exact_mut(rows).enumerate() {
            let w = &w[j * w_stride..j * w_stride + len];
            for (i, o) in out.iter_mut().enumerate() {
                *o = dot(&x[i * x_stride..i * x_stride + len], w);
            }
        }
    }
}

fma_dispatch! {
    /// Layer norm of each row of `src` (rows of `gamma.len()`) into `dst`:
    /// `(x - mean) / sqrt(var + eps) * gamma + beta`, the variance biased, as in PyTorch.
    pub fn layer_norm(src: &[f32], dst: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
        let d = gamma.len();
        for (x, y) in src.chunks_exact(d).zip(dst.chunks_exact_mut(d)) {
            let mean = sum(x) / d as f32;
            let rstd = 1.0 / (sum_sq_dev(x, mean) / d as f32 + eps).sqrt();
            for (((y, &x), &g), &b) in y.iter_mut().zip(x).zip(gamma).zip(beta) {
                *y = ((x - mean) * rstd).mul_add(g, b);
            }
        }
    }
}

fma_dispatch! {
    /// Softmax of each row of `x` (rows of `len`) in place. With `causal`, row i attends to
    /// positions 0..=i only: the rest of the row becomes 0 exactly.
    pub fn softmax_rows(x: &mut [f32], len: usize, causal: bool) {
        for (i, row) in x.chunks_exact_mut(len).enumerate() {
            let (live, masked) = row.split_at_mut(if causal { (i + 1).min(len) } else { len });
            masked.fill(0.0);
            let m = max(live);
            for v in live.iter_mut() {
                *v = exp(*v - m);
            }
            let inv = 1.0 / sum(live);
            for v in live.iter_mut() {
                *v *= inv;
            }
        }
    }
}

fma_dispatch! {
    /// Adds `bias` to each row of `x` (rows of `bias.len()`).
    pub fn add_rows(x: &mut [f32], bias: &[f32]) {
        for row in x.chunks_exact_mut(bias.len()) {
            for (v, &b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_libm() {
        let mut worst = 0f64;
        for i in -100_000..=100_000 {
            let x = i as f32 / 10_000.0;
            let exact = libm_erf(x as f64);
            worst = worst.max((erf(x) as f64 - exact).abs());
        }
        assert!(worst < 5e-7, "max erf error {worst}");
    }

    #[test]
    fn exp_is_accurate_and_finite() {
        let mut worst = 0f64;
        for i in -870_000..=880_000 {
            let x = i as f32 / 10_000.0;
            let exact = (x as f64).exp();
            worst = worst.max(((exp(x) as f64 - exact) / exact).abs());
        }
        assert!(worst < 4e-7, "max relative exp error {worst}");
        assert!(exp(-1e30) > 0.0 && exp(-1e30) < 1e-37);
        assert!(exp(1e30).is_finite());
    }

    #[test]
    fn kernels_match_direct_formulas() {
        let xs: Vec<f32> = (-800..800).map(|i| i as f32 / 80.0).collect();
        let mut q = xs.clone();
        quick_gelu_inplace(&mut q);
        let mut t = xs.clone();
        gelu_tanh_inplace(&mut t);
        let mut g = xs.clone();
        gelu_inplace(&mut g);
        for (i, &x) in xs.iter().enumerate() {
            let x64 = x as f64;
            let quick = x64 / (1.0 + (-1.702 * x64).exp());
            let u = (2.0 / std::f64::consts::PI).sqrt() * (x64 + 0.044715 * x64.powi(3));
            let tanh = 0.5 * x64 * (1.0 + u.tanh());
            let exact = 0.5 * x64 * (1.0 + libm_erf(x64 / std::f64::consts::SQRT_2));
            assert!((q[i] as f64 - quick).abs() < 1e-5, "quick_gelu({x})");
            assert!((t[i] as f64 - tanh).abs() < 1e-5, "gelu_tanh({x})");
            assert!((g[i] as f64 - exact).abs() < 1e-5, "gelu({x})");
        }
    }

    #[test]
    fn dot_products_match_direct_sums() {
        let (len, rows, cols) = (37, 3, 5);
        let x: Vec<f32> = (0..rows * 40)
            .map(|i| (i % 17) as f32 / 7.0 - 1.0)
            .collect();
        let w: Vec<f32> = (0..cols * 50)
            .map(|i| (i % 13) as f32 / 5.0 - 1.2)
            .collect();
        let mut out = vec![0f32; rows * cols];
        dot_products(&x, 40, &w, 50, len, rows, &mut out);
        for j in 0..cols {
            for i in 0..rows {
                let want: f64 = (0..len)
                    .map(|k| x[i * 40 + k] as f64 * w[j * 50 + k] as f64)
                    .sum();
                assert!((out[j * rows + i] as f64 - want).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn layer_norm_and_softmax_match_direct_formulas() {
        let d = 37;
        let x: Vec<f32> = (0..3 * d)
            .map(|i| ((i * 7919) % 101) as f32 / 13.0)
            .collect();
        let gamma: Vec<f32> = (0..d).map(|i| 1.0 + i as f32 / 50.0).collect();
        let beta: Vec<f32> = (0..d).map(|i| i as f32 / 100.0).collect();
        let mut y = vec![0f32; x.len()];
        layer_norm(&x, &mut y, &gamma, &beta, 1e-5);
        for (row, out) in x.chunks(d).zip(y.chunks(d)) {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
            for j in 0..d {
                let want =
                    (row[j] as f64 - mean) / (var + 1e-5).sqrt() * gamma[j] as f64 + beta[j] as f64;
                assert!((out[j] as f64 - want).abs() < 1e-5);
            }
        }
        let mut p = x.clone();
        softmax_rows(&mut p, d, false);
        let mut c = x.clone();
        softmax_rows(&mut c, d, true);
        for (i, row) in x.chunks(d).enumerate() {
            for (out, live) in [(&p, d), (&c, i + 1)] {
                let m = row[..live].iter().fold(f64::MIN, |m, &v| m.max(v as f64));
                let z: f64 = row[..live].iter().map(|&v| (v as f64 - m).exp()).sum();
                for j in 0..d {
                    let want = if j < live {
                        (row[j] as f64 - m).exp() / z
                    } else {
                        0.0
                    };
                    assert!((out[i * d + j] as f64 - want).abs() < 1e-6);
                }
            }
        }
    }

    /// erf in f64 by its Taylor series (|x| <= 3) and continued fraction (beyond).
    fn libm_erf(x: f64) -> f64 {
        if x.abs() > 3.0 {
            // erfc(x) = exp(-x^2)/(x sqrt(pi)) * 1/(1+ 1/(2x^2)/(1+2/(2x^2)/(1+...)))
            let z = x.abs();
            let mut f = 0.0;
            for n in (1..60).rev() {
                f = (n as f64 / 2.0) / (z + f);
            }
            let erfc = (-z * z).exp() / std::f64::consts::PI.sqrt() / (z + f);
            return x.signum() * (1.0 - erfc);
        }
        let mut sum = 0.0;
        let mut term = x;
        let mut n = 0;
        while term.abs() > 1e-17 || n < 5 {
            sum += term / (2 * n + 1) as f64;
            n += 1;
            term *= -x * x / n as f64;
        }
        2.0 / std::f64::consts::PI.sqrt() * sum
    }
}
