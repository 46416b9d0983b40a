//! CPU kernels for the channels-last (NHWC) convolution networks, as candle custom ops.
//!
//! - [`BiasAct`]: `act(x + bias[c])` (optionally `+ residual`), in place on a matrix
//!   product's output, so a 1x1 convolution costs one product and one pass;
//! - [`Depthwise`]: a k x k depthwise convolution with TF-"SAME" padding, bias and ReLU6,
//!   vectorised over channels (candle's grouped convolution runs one tiny convolution per
//!   channel, which is two orders of magnitude slower here).
//!
//! Both split their output rows over rayon's pool and use AVX2 + FMA when the processor has
//! them. They take contiguous f32 CPU tensors and fail (never panic) on anything else.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp3, InplaceOp2, InplaceOp3, Layout, Shape};
use rayon::prelude::*;

/// TF "SAME" padding of one spatial dimension: (before, after, output size).
pub fn same_padding(size: usize, kernel: usize, stride: usize) -> (usize, usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2, out)
}

fn contiguous<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = s else {
        candle_core::bail!("{what}: f32 only")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{what}: contiguous input only"),
    }
}

fn contiguous_mut<'a>(
    s: &'a mut CpuStorage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<&'a mut [f32]> {
    let CpuStorage::F32(data) = s else {
        candle_core::bail!("{what}: f32 only")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&mut data[a..b]),
        None => candle_core::bail!("{what}: contiguous input only"),
    }
}

/// `x = act(x + bias[c]) (+ residual)` in place, x contiguous `(.., C)`.
pub struct BiasAct {
    /// Clamp to [0, 6] (before the residual is added).
    pub relu6: bool,
}

impl BiasAct {
    fn run(&self, x: &mut [f32], bias: &[f32], residual: Option<&[f32]>) {
        let c = bias.len();
        let rows = 1.max(8192 / c);
        x.par_chunks_mut(rows * c).enumerate().for_each(|(i, dst)| {
            let start = i * rows * c;
            let residual = residual.map(|r| &r[start..start + dst.len()]);
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                // SAFETY: the features the function is compiled for were just detected.
                return unsafe { bias_act_avx2(dst, bias, residual, self.relu6) };
            }
            bias_act(dst, bias, residual, self.relu6)
        });
    }
}

#[inline(always)]
fn bias_act(x: &mut [f32], bias: &[f32], residual: Option<&[f32]>, relu6: bool) {
    let c = bias.len();
    for (i, row) in x.chunks_exact_mut(c).enumerate() {
        if relu6 {
            for (o, &b) in row.iter_mut().zip(bias) {
                *o = (*o + b).clamp(0.0, 6.0);
            }
        } else {
            for (o, &b) in row.iter_mut().zip(bias) {
                *o += b;
            }
        }
        if let Some(r) = residual {
            for (o, &v) in row.iter_mut().zip(&r[i * c..(i + 1) * c]) {
                *o += v;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn bias_act_avx2(x: &mut [f32], bias: &[f32], residual: Option<&[f32]>, relu6: bool) {
    bias_act(x, bias, residual, relu6)
}

fn check_bias(l1: &Layout, bias: &[f32], what: &str) -> candle_core::Result<()> {
    if bias.is_empty() || l1.dims().last() != Some(&bias.len()) {
        candle_core::bail!("{what}: bias of {} for shape {:?}", bias.len(), l1.dims())
    }
    Ok(())
}

impl InplaceOp2 for BiasAct {
    fn name(&self) -> &'static str {
        "bias-act"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let b = contiguous(s2, l2, "bias-act")?;
        check_bias(l1, b, "bias-act")?;
        self.run(contiguous_mut(s1, l1, "bias-act")?, b, None);
        Ok(())
    }
}

impl InplaceOp3 for BiasAct {
    fn name(&self) -> &'static str {
        "bias-act-residual"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<()> {
        let what = "bias-act-residual";
        let (b, r) = (contiguous(s2, l2, what)?, contiguous(s3, l3, what)?);
        check_bias(l1, b, what)?;
        if l1.dims() != l3.dims() {
            candle_core::bail!("{what}: residual {:?} for {:?}", l3.dims(), l1.dims())
        }
        self.run(contiguous_mut(s1, l1, what)?, b, Some(r));
        Ok(())
    }
}

/// Depthwise k x k convolution over NHWC with TF-"SAME" padding, bias and ReLU6.
/// Inputs: x `(N, H, W, C)`, weights `(k*k, C)`, bias `(C)`; output `(N, H', W', C)`.
pub struct Depthwise {
    /// Kernel side k.
    pub kernel: usize,
    /// Stride (both directions).
    pub stride: usize,
}

/// Geometry of one depthwise convolution.
#[derive(Clone, Copy)]
struct Geometry {
    h: usize,
    w: usize,
    c: usize,
    k: usize,
    stride: usize,
    pad_top: usize,
    pad_left: usize,
}

/// One output row `oy` of one image; `dst` already holds the bias for every pixel.
#[inline(always)]
fn depthwise_row(x: &[f32], weights: &[f32], dst: &mut [f32], g: Geometry, oy: usize) {
    let c = g.c;
    for (ox, acc) in dst.chunks_exact_mut(c).enumerate() {
        for ky in 0..g.k {
            let Some(iy) = (oy * g.stride + ky)
                .checked_sub(g.pad_top)
                .filter(|&y| y < g.h)
            else {
                continue;
            };
            for kx in 0..g.k {
                let ix = (ox * g.stride + kx).checked_sub(g.pad_left);
                let Some(ix) = ix.filter(|&v| v < g.w) else {
                    continue;
                };
                let src = &x[(iy * g.w + ix) * c..][..c];
                let wt = &weights[(ky * g.k + kx) * c..][..c];
                for ((a, &v), &k) in acc.iter_mut().zip(src).zip(wt) {
                    *a += v * k;
                }
            }
        }
        for a in acc.iter_mut() {
            *a = a.clamp(0.0, 6.0);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn depthwise_row_avx2(x: &[f32], weights: &[f32], dst: &mut [f32], g: Geometry, oy: usize) {
    depthwise_row(x, weights, dst, g, oy)
}

impl CustomOp3 for Depthwise {
    fn name(&self) -> &'static str {
        "depthwise-nhwc"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let what = "depthwise-nhwc";
        let x = contiguous(s1, l1, what)?;
        let (weights, bias) = (contiguous(s2, l2, what)?, contiguous(s3, l3, what)?);
        let &[n, h, w, c] = l1.dims() else {
            candle_core::bail!("{what}: input {:?} is not NHWC", l1.dims())
        };
        let k = self.kernel;
        if weights.len() != k * k * c || bias.len() != c || h == 0 || w == 0 || c == 0 {
            candle_core::bail!("{what}: weights {:?} for input {:?}", l2.dims(), l1.dims())
        }
        let (pad_top, _, oh) = same_padding(h, k, self.stride);
        let (pad_left, _, ow) = same_padding(w, k, self.stride);
        let g = Geometry {
            h,
            w,
            c,
            k,
            stride: self.stride,
            pad_top,
            pad_left,
        };
        let len = n * oh * ow * c;
        let mut out: Vec<f32> = Vec::with_capacity(len);
        #[cfg(target_arch = "x86_64")]
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        out.spare_capacity_mut()[..len]
            .par_chunks_mut(ow * c)
            .enumerate()
            .for_each(|(row, dst)| {
                for px in dst.chunks_exact_mut(c) {
                    for (d, &b) in px.iter_mut().zip(bias) {
                        d.write(b);
                    }
                }
                // SAFETY: every element of `dst` was initialised just above.
                let dst = unsafe { &mut *(dst as *mut [MaybeUninit<f32>] as *mut [f32]) };
                let (img, oy) = (row / oh, row % oh);
                let x = &x[img * h * w * c..][..h * w * c];
                #[cfg(target_arch = "x86_64")]
                if avx2 {
                    // SAFETY: the features the function is compiled for were just detected.
                    return unsafe { depthwise_row_avx2(x, weights, dst, g, oy) };
                }
                depthwise_row(x, weights, dst, g, oy)
            });
        // SAFETY: the loop above initialised all `len` elements (n * oh rows of ow * c).
        unsafe { out.set_len(len) };
        Ok((CpuStorage::F32(out), Shape::from((n, oh, ow, c))))
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

    /// The depthwise kernel against candle's grouped convolution on NCHW.
    #[test]
    fn depthwise_matches_a_grouped_convolution() {
        let dev = Device::Cpu;
        for (k, stride, h, w) in [(3, 1, 7, 6), (5, 2, 9, 8), (3, 2, 8, 8)] {
            let c = 5;
            let x = Tensor::randn(0f32, 1.0, (2, c, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 0.3, (c, 1, k, k), &dev).unwrap();
            let b = Tensor::randn(0f32, 0.1, c, &dev).unwrap();
            let (t, bo, _) = same_padding(h, k, stride);
            let (l, r, _) = same_padding(w, k, stride);
            let xp = x
                .pad_with_zeros(2, t, bo)
                .unwrap()
                .pad_with_zeros(3, l, r)
                .unwrap();
            let want = xp
                .conv2d(&wt, 0, stride, 1, c)
                .unwrap()
                .broadcast_add(&b.reshape((1, c, 1, 1)).unwrap())
                .unwrap()
                .clamp(0f32, 6f32)
                .unwrap()
                .permute((0, 2, 3, 1))
                .unwrap();
            let nhwc = x.permute((0, 2, 3, 1)).unwrap().contiguous().unwrap();
            let kc = wt
                .reshape((c, k * k))
                .unwrap()
                .t()
                .unwrap()
                .contiguous()
                .unwrap();
            let got = nhwc
                .apply_op3_no_bwd(&kc, &b, &Depthwise { kernel: k, stride })
                .unwrap();
            assert_eq!(got.dims(), want.dims());
            let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
        }
    }

    #[test]
    fn bias_act_in_place_with_residual() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[-1f32, 2.0], [7.0, 0.5]], &dev).unwrap();
        let b = Tensor::new(&[0.5f32, 5.0], &dev).unwrap();
        let r = Tensor::new(&[[1f32, 1.0], [1.0, 1.0]], &dev).unwrap();
        x.inplace_op3(&b, &r, &BiasAct { relu6: true }).unwrap();
        assert_eq!(x.to_vec2::<f32>().unwrap(), [[1.0, 7.0], [7.0, 6.5]]);
        let bad = Tensor::new(&[1f32, 2.0, 3.0], &dev).unwrap();
        assert!(x.inplace_op2(&bad, &BiasAct { relu6: false }).is_err());
    }
}
