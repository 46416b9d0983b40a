//! CPU kernels for the channels-last (NHWC) convolution networks, on plain f32 slices.
//!
//! - [`conv_nchw`]: a full k x k convolution over a few input channels (EfficientNet's stem),
//!   reading the NCHW input the preprocessing makes and writing NHWC;
//! - [`depthwise`]: a k x k depthwise convolution, vectorised over channels (candle's grouped
//!   convolution runs one tiny convolution per channel, two orders of magnitude slower here);
//! - [`relu6`]: the clamp to [0, 6], in place.
//!
//! Both convolutions use TF "SAME" padding ([`Conv::same`]), start each output pixel from the
//! bias, end with ReLU6, and use AVX2 + FMA when the processor has them. They run on the
//! calling thread: the network parallelises over images instead (one image's layers are too
//! small to share between threads with any gain; measured equal at batch 1).
//!
//! # Panics
//! The convolutions panic when a slice's length disagrees with the geometry: the network
//! checks every shape when it loads, so that is a bug, not bad input.

use crate::models::simd::fma_dispatch;

/// TF "SAME" padding of one spatial dimension: (before, after, output size).
pub fn same_padding(size: usize, kernel: usize, stride: usize) -> (usize, usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2, out)
}

/// The geometry of a k x k convolution with TF "SAME" padding over an `h x w` input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv {
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel side.
    pub k: usize,
    /// Stride (both directions).
    pub stride: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    pad_top: usize,
    pad_left: usize,
}

impl Conv {
    /// A k x k convolution with the given stride over an `h x w` input (both at least 1).
    pub fn same(h: usize, w: usize, k: usize, stride: usize) -> Self {
        let (pad_top, _, oh) = same_padding(h, k, stride);
        let (pad_left, _, ow) = same_padding(w, k, stride);
        Self {
            h,
            w,
            k,
            stride,
            oh,
            ow,
            pad_top,
            pad_left,
        }
    }

    /// The input row kernel row `ky` reads for output row `oy`, unless it is padding.
    #[inline(always)]
    fn in_row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.stride + ky)
            .checked_sub(self.pad_top)
            .filter(|&y| y < self.h)
    }

    /// The input column kernel column `kx` reads for output column `ox`, unless it is padding.
    #[inline(always)]
    fn in_col(&self, ox: usize, kx: usize) -> Option<usize> {
        (ox * self.stride + kx)
            .checked_sub(self.pad_left)
            .filter(|&x| x < self.w)
    }
}

fma_dispatch! {
    /// `x = min(max(x, 0), 6)` in place.
    pub fn relu6(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = v.clamp(0.0, 6.0);
        }
    }
}

/// Depthwise k x k convolution of one NHWC image `x` `(h, w, c)` with `weights` `(k*k, c)`
/// and `bias` `(c)`, then ReLU6, into `dst` `(oh, ow, c)`.
pub fn depthwise(x: &[f32], weights: &[f32], bias: &[f32], dst: &mut [f32], g: Conv) {
    let c = bias.len();
    assert_eq!(x.len(), g.h * g.w * c, "depthwise: input length");
    assert_eq!(weights.len(), g.k * g.k * c, "depthwise: weights length");
    run::<DEPTHWISE>(x, weights, bias, dst, g);
}

/// Full k x k convolution of one NCHW image `x` `(cin, h, w)` with `weights`
/// `(k*k*cin, cout)` (rows in kernel-row, kernel-column, input-channel order) and `bias`
/// `(cout)`, then ReLU6, into the NHWC `dst` `(oh, ow, cout)`. Meant for few input channels
/// (an RGB stem): each output pixel is `k*k*cin` vector updates.
pub fn conv_nchw(x: &[f32], weights: &[f32], bias: &[f32], dst: &mut [f32], g: Conv) {
    let cin = x.len() / (g.h * g.w);
    assert_eq!(x.len(), cin * g.h * g.w, "conv: input length");
    let taps = g.k * g.k * cin * bias.len();
    assert_eq!(weights.len(), taps, "conv: weights length");
    run::<NCHW>(x, weights, bias, dst, g);
}

/// [`run`]'s kernel parameter: [`depthwise`] (the kernel is a compile-time constant, so
/// each convolution gets its own loop).
const DEPTHWISE: bool = true;
/// [`run`]'s kernel parameter: [`conv_nchw`].
const NCHW: bool = false;

/// Every output row of the convolution, compiled for AVX2 + FMA when the processor has them.
fn run<const KERNEL: bool>(x: &[f32], weights: &[f32], bias: &[f32], dst: &mut [f32], g: Conv) {
    let row_len = g.ow * bias.len();
    assert_eq!(dst.len(), g.oh * row_len, "convolution: output length");
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the features the function is compiled for were just detected.
        return unsafe { rows_avx2::<KERNEL>(x, weights, bias, dst, g) };
    }
    rows::<KERNEL>(x, weights, bias, dst, g)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2<const KERNEL: bool>(
    x: &[f32],
    weights: &[f32],
    bias: &[f32],
    dst: &mut [f32],
    g: Conv,
) {
    rows::<KERNEL>(x, weights, bias, dst, g)
}

/// Each output pixel starts as the bias, accumulates its taps, and is clamped by ReLU6.
#[inline(always)]
fn rows<const KERNEL: bool>(x: &[f32], weights: &[f32], bias: &[f32], dst: &mut [f32], g: Conv) {
    let c = bias.len();
    let plane = g.h * g.w;
    for (oy, row) in dst.chunks_exact_mut(g.ow * c).enumerate() {
        for (ox, acc) in row.chunks_exact_mut(c).enumerate() {
            acc.copy_from_slice(bias);
            for ky in 0..g.k {
                let Some(iy) = g.in_row(oy, ky) else {
                    continue;
                };
                for kx in 0..g.k {
                    let Some(ix) = g.in_col(ox, kx) else {
                        continue;
                    };
                    let tap = ky * g.k + kx;
                    if KERNEL == DEPTHWISE {
                        let src = &x[(iy * g.w + ix) * c..][..c];
                        let wt = &weights[tap * c..][..c];
                        for ((a, &v), &k) in acc.iter_mut().zip(src).zip(wt) {
                            *a += v * k;
                        }
                    } else {
                        let cin = x.len() / plane;
                        for ci in 0..cin {
                            let v = x[ci * plane + iy * g.w + ix];
                            let wt = &weights[(tap * cin + ci) * c..][..c];
                            for (a, &k) in acc.iter_mut().zip(wt) {
                                *a += v * k;
                            }
                        }
                    }
                }
            }
            for a in acc.iter_mut() {
                *a = a.clamp(0.0, 6.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn same_padding_puts_the_extra_pixel_last() {
        assert_eq!(same_padding(224, 3, 2), (0, 1, 112));
        assert_eq!(same_padding(56, 5, 2), (1, 2, 28));
        assert_eq!(same_padding(28, 5, 1), (2, 2, 28));
        assert_eq!(same_padding(7, 1, 1), (0, 0, 7));
    }

    /// candle's NCHW convolution of `x` `(1, cin, h, w)` with `wt` `(cout, cin/groups, k, k)`,
    /// TF "SAME" padded, plus bias and ReLU6, as NHWC values.
    fn reference(x: &Tensor, wt: &Tensor, b: &Tensor, stride: usize, groups: usize) -> Vec<f32> {
        let (_, _, h, w) = x.dims4().unwrap();
        let (cout, _, k, _) = wt.dims4().unwrap();
        let (t, bo, _) = same_padding(h, k, stride);
        let (l, r, _) = same_padding(w, k, stride);
        let xp = x.pad_with_zeros(2, t, bo).unwrap();
        let xp = xp.pad_with_zeros(3, l, r).unwrap();
        let y = xp.conv2d(wt, 0, stride, 1, groups).unwrap();
        let y = y.broadcast_add(&b.reshape((1, cout, 1, 1)).unwrap());
        let y = y.unwrap().clamp(0f32, 6f32).unwrap();
        let y = y.permute((0, 2, 3, 1)).unwrap();
        y.flatten_all().unwrap().to_vec1().unwrap()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// The depthwise kernel against candle's grouped convolution.
    #[test]
    fn depthwise_matches_a_grouped_convolution() {
        let dev = Device::Cpu;
        for (k, stride, h, w) in [(3, 1, 7, 6), (5, 2, 9, 8), (3, 2, 8, 8)] {
            let c = 5;
            let x = Tensor::randn(0f32, 1.0, (1, c, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 0.3, (c, 1, k, k), &dev).unwrap();
            let b = Tensor::randn(0f32, 0.1, c, &dev).unwrap();
            let want = reference(&x, &wt, &b, stride, c);
            let nhwc = x.permute((0, 2, 3, 1)).unwrap().flatten_all().unwrap();
            let kc = wt.reshape((c, k * k)).unwrap().t().unwrap();
            let kc: Vec<f32> = kc.flatten_all().unwrap().to_vec1().unwrap();
            let g = Conv::same(h, w, k, stride);
            let mut got = vec![f32::NAN; g.oh * g.ow * c];
            let (x, b) = (nhwc.to_vec1().unwrap(), b.to_vec1().unwrap());
            depthwise(&x, &kc, &b, &mut got, g);
            assert!(max_diff(&got, &want) < 1e-5);
        }
    }

    /// The full convolution against candle's, NCHW in and NHWC out.
    #[test]
    fn conv_nchw_matches_candle() {
        let dev = Device::Cpu;
        for (k, stride, h, w) in [(3, 2, 9, 8), (3, 1, 5, 7)] {
            let (cin, cout) = (3, 16);
            let x = Tensor::randn(0f32, 1.0, (1, cin, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 0.3, (cout, cin, k, k), &dev).unwrap();
            let b = Tensor::randn(0f32, 0.1, cout, &dev).unwrap();
            let want = reference(&x, &wt, &b, stride, 1);
            let taps = wt.permute((2, 3, 1, 0)).unwrap().flatten_all().unwrap();
            let g = Conv::same(h, w, k, stride);
            let mut got = vec![f32::NAN; g.oh * g.ow * cout];
            let x: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
            let (taps, b) = (taps.to_vec1().unwrap(), b.to_vec1().unwrap());
            conv_nchw(&x, &taps, &b, &mut got, g);
            assert!(max_diff(&got, &want) < 1e-5);
        }
    }

    #[test]
    fn relu6_clamps() {
        let mut x = [-1.0, 0.5, 6.5, 3.0];
        relu6(&mut x);
        assert_eq!(x, [0.0, 0.5, 6.0, 3.0]);
    }
}
