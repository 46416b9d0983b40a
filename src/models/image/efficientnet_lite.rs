//! EfficientNet-Lite (ImageNet-1k) in candle, for CPU throughput.
//!
//! EfficientNet-Lite is EfficientNet-B0's stage plan scaled in width and depth, without
//! squeeze-excitation, with ReLU6 instead of swish, and with the 32-channel stem and the
//! 1280-channel head left unscaled (as are the repeats of the first and last stage).
//! Convolutions pad like TensorFlow's "SAME" (the extra pixel of an even padding goes to the
//! bottom/right); batch norm uses eps 1e-3. Weights use the lukemelas EfficientNet-PyTorch
//! names (`_conv_stem`, `_blocks.N._expand_conv`, ...).
//!
//! The block structure is read from the weight shapes and matched against each variant's plan
//! (strides cannot be seen in weights; they come from the plan), so a checkpoint of the wrong
//! variant or architecture is refused with the first block that differs.
//!
//! For speed on a CPU the network runs channels-last (NHWC): every 1x1 convolution is one
//! matrix product over all pixels of the batch, the depthwise convolutions are a vectorised
//! kernel over channels (candle's grouped convolution splits into one tiny convolution per
//! channel), and batch norm is folded into the convolution weights at load time.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

use super::super::l2_normalize;
use super::checkpoint::Checkpoint;
use super::kernels::{same_padding, BiasAct, Depthwise};
use super::{preprocess, ImageEmbedding, ImageEncoder};
use crate::{Error, Result};

/// EfficientNet-B0's stages: kernel, stride, expansion ratio, output channels, repeats.
const STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
];
const STEM: usize = 32;
/// Length of the pooled feature vector (the head is not scaled).
pub const FEATURES: usize = 1280;
/// Number of ImageNet-1k classes.
pub const CLASSES: usize = 1000;
const BN_EPS: f64 = 1e-3;
/// Input pixels per forward slice (8 images of 224 x 224).
pub const SLICE_PIXELS: usize = 8 * 224 * 224;

/// The EfficientNet-Lite variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Width 1.0, depth 1.0, 224 px.
    Lite0,
    /// Width 1.0, depth 1.1, 240 px.
    Lite1,
    /// Width 1.1, depth 1.2, 260 px.
    Lite2,
    /// Width 1.2, depth 1.4, 280 px.
    Lite3,
    /// Width 1.4, depth 1.8, 300 px.
    Lite4,
}

/// One inverted-residual block's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BlockShape {
    cin: usize,
    hidden: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
}

impl BlockShape {
    /// Equal in everything the weights show (all but the stride).
    fn same_weights(&self, other: &BlockShape) -> bool {
        let key = |b: &BlockShape| (b.cin, b.hidden, b.cout, b.kernel);
        key(self) == key(other)
    }
}

impl Variant {
    /// Every variant, smallest first.
    pub const ALL: [Variant; 5] = [
        Variant::Lite0,
        Variant::Lite1,
        Variant::Lite2,
        Variant::Lite3,
        Variant::Lite4,
    ];

    /// Registry-style name, e.g. `efficientnet-lite0`.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Lite0 => "efficientnet-lite0",
            Variant::Lite1 => "efficientnet-lite1",
            Variant::Lite2 => "efficientnet-lite2",
            Variant::Lite3 => "efficientnet-lite3",
            Variant::Lite4 => "efficientnet-lite4",
        }
    }

    /// Side of the square input the variant was trained at.
    pub fn input_size(self) -> usize {
        [224, 240, 260, 280, 300][self as usize]
    }

    fn multipliers(self) -> (f64, f64) {
        [(1.0, 1.0), (1.0, 1.1), (1.1, 1.2), (1.2, 1.4), (1.4, 1.8)][self as usize]
    }

    /// The blocks of the variant's plan, in order.
    fn blocks(self) -> Vec<BlockShape> {
        let (width, depth) = self.multipliers();
        let mut out = Vec::new();
        let mut cin = STEM;
        for (i, &(kernel, stride, expand, channels, repeats)) in STAGES.iter().enumerate() {
            let cout = round_filters(channels, width);
            let repeats = if i == 0 || i == STAGES.len() - 1 {
                repeats
            } else {
                (repeats as f64 * depth).ceil() as usize
            };
            for r in 0..repeats {
                let stride = if r == 0 { stride } else { 1 };
                out.push(BlockShape {
                    cin,
                    hidden: cin * expand,
                    cout,
                    kernel,
                    stride,
                });
                cin = cout;
            }
        }
        out
    }
}

/// TensorFlow EfficientNet's channel rounding: to a multiple of 8, never below 90%.
fn round_filters(channels: usize, width: f64) -> usize {
    let scaled = channels as f64 * width;
    let mut rounded = (((scaled + 4.0) as usize) / 8 * 8).max(8);
    if (rounded as f64) < 0.9 * scaled {
        rounded += 8;
    }
    rounded
}

/// A 1x1 convolution (batch norm folded in) as a matrix product over NHWC pixels.
struct Pointwise {
    /// `(C_in, C_out)`.
    weight: Tensor,
    bias: Tensor,
    relu6: bool,
}

impl Pointwise {
    fn forward(&self, x: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        let (n, h, w, c) = x.dims4()?;
        let cout = self.weight.dim(1)?;
        let y = x.reshape((n * h * w, c))?.matmul(&self.weight)?;
        // The product's output is fresh: bias, activation and residual are added in place.
        let op = BiasAct { relu6: self.relu6 };
        match residual {
            Some(r) => y.inplace_op3(&self.bias, &r.reshape((n * h * w, cout))?, &op)?,
            None => y.inplace_op2(&self.bias, &op)?,
        }
        Ok(y.reshape((n, h, w, cout))?)
    }
}

struct Block {
    expand: Option<Pointwise>,
    /// `(k*k, C)` with batch norm folded in.
    depthwise: Tensor,
    depthwise_bias: Tensor,
    shape: BlockShape,
    project: Pointwise,
}

impl Block {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.expand {
            Some(e) => e.forward(x, None)?,
            None => x.clone(),
        };
        let op = Depthwise {
            kernel: self.shape.kernel,
            stride: self.shape.stride,
        };
        let y = y.apply_op3_no_bwd(&self.depthwise, &self.depthwise_bias, &op)?;
        let skip = self.shape.stride == 1 && self.shape.cin == self.shape.cout;
        self.project.forward(&y, skip.then_some(x))
    }
}

/// Block shapes as the weights show them (strides cannot be seen: 0).
fn block_shapes(ckpt: &Checkpoint) -> Result<Vec<BlockShape>> {
    let mut out = Vec::new();
    while let Some(dw) = ckpt.dims(&format!("_blocks.{}._depthwise_conv.weight", out.len())) {
        let i = out.len();
        let bad = |what: &str| ckpt.err(format!("block {i}: unexpected {what} shape"));
        let &[hidden, 1, kernel, k2] = dw.as_slice() else {
            return Err(bad("depthwise"));
        };
        let cin = match ckpt.dims(&format!("_blocks.{i}._expand_conv.weight")) {
            Some(e) if e.len() == 4 && e[0] == hidden => e[1],
            Some(_) => return Err(bad("expansion")),
            None => hidden,
        };
        let cout = match ckpt.dims(&format!("_blocks.{i}._project_conv.weight")) {
            Some(p) if p.len() == 4 && p[1] == hidden => p[0],
            _ => return Err(bad("projection")),
        };
        if kernel != k2 {
            return Err(bad("depthwise"));
        }
        let stride = 0;
        out.push(BlockShape {
            cin,
            hidden,
            cout,
            kernel,
            stride,
        });
    }
    Ok(out)
}

/// An EfficientNet-Lite classifier: pooled features and ImageNet logits in one pass.
pub struct EfficientNetLite {
    variant: Variant,
    stem: Tensor,
    stem_bias: Tensor,
    blocks: Vec<Block>,
    head: Pointwise,
    /// `(1280, 1000)`.
    fc: Tensor,
    fc_bias: Tensor,
    batch_size: usize,
}

impl EfficientNetLite {
    /// Loads a safetensors checkpoint with lukemelas names (as `promptdex models fetch`
    /// writes it); the variant is recognised from the weight shapes.
    pub fn load(path: &Path) -> Result<Self> {
        let map = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| Error::model("efficientnet-lite", format!("{}: {e}", path.display())))?;
        Self::from_tensors(map, path)
    }

    /// Builds the model from named tensors; `file` is only used in error messages.
    pub fn from_tensors(map: HashMap<String, Tensor>, file: &Path) -> Result<Self> {
        let ckpt = Checkpoint::new(map, "efficientnet-lite", file);
        let found = block_shapes(&ckpt)?;
        // The variant whose plan the weights follow furthest; it must match entirely.
        let (variant, same, plan) = Variant::ALL
            .iter()
            .map(|&v| {
                let plan = v.blocks();
                let same = plan
                    .iter()
                    .zip(&found)
                    .take_while(|(p, f)| p.same_weights(f));
                (v, same.count(), plan)
            })
            .max_by_key(|m| m.1)
            .ok_or_else(|| ckpt.err("no variants".into()))?;
        if same != found.len() || same != plan.len() {
            return Err(ckpt.err(format!(
                "the {} blocks match no EfficientNet-Lite variant; the closest, {}, has {} \
                 blocks and differs from block {same} on (weights {:?}, plan {:?})",
                found.len(),
                variant.name(),
                plan.len(),
                found.get(same),
                plan.get(same)
            )));
        }
        let pointwise = |conv: &str, (cin, cout), bn: &str, relu6| -> Result<Pointwise> {
            let (w, bias) = ckpt.folded(conv, &[cout, cin, 1, 1], bn, BN_EPS)?;
            let weight = w.reshape((cout, cin))?.t()?.contiguous()?;
            Ok(Pointwise {
                weight,
                bias,
                relu6,
            })
        };
        let (stem, stem_bias) =
            ckpt.folded("_conv_stem.weight", &[STEM, 3, 3, 3], "_bn0", BN_EPS)?;
        let mut blocks = Vec::new();
        for (i, shape) in plan.into_iter().enumerate() {
            let name = |s: &str| format!("_blocks.{i}.{s}");
            let (hidden, k) = (shape.hidden, shape.kernel);
            let expand = (hidden != shape.cin)
                .then(|| {
                    pointwise(
                        &name("_expand_conv.weight"),
                        (shape.cin, hidden),
                        &name("_bn0"),
                        true,
                    )
                })
                .transpose()?;
            let dims = [hidden, 1, k, k];
            let (dw, depthwise_bias) = ckpt.folded(
                &name("_depthwise_conv.weight"),
                &dims,
                &name("_bn1"),
                BN_EPS,
            )?;
            let depthwise = dw.reshape((hidden, k * k))?.t()?.contiguous()?;
            let dims = (hidden, shape.cout);
            let project = pointwise(&name("_project_conv.weight"), dims, &name("_bn2"), false)?;
            let block = Block {
                expand,
                depthwise,
                depthwise_bias,
                shape,
                project,
            };
            blocks.push(block);
        }
        let last = blocks.last().map_or(STEM, |b| b.shape.cout);
        let head = pointwise("_conv_head.weight", (last, FEATURES), "_bn1", true)?;
        let fc = ckpt
            .get("_fc.weight", &[CLASSES, FEATURES])?
            .t()?
            .contiguous()?;
        let fc_bias = ckpt.get("_fc.bias", &[CLASSES])?;
        ckpt.check_all_used()?;
        let batch_size = 16;
        Ok(Self {
            variant,
            stem,
            stem_bias,
            blocks,
            head,
            fc,
            fc_bias,
            batch_size,
        })
    }

    /// Images per forward pass in [`ImageEncoder::encode`] (default 16; at least 1).
    pub fn set_batch_size(&mut self, batch_size: usize) {
        self.batch_size = batch_size.max(1);
    }

    /// The variant the weights belong to.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// Runs a batch `(N, 3, H, W)` of f32 RGB normalised as `(x - 127) / 128` (see
    /// [`super::preprocess`]); returns the global-average-pooled features `(N, 1280)` (not
    /// normalised) and the ImageNet logits `(N, 1000)`. CPU only.
    ///
    /// Large batches run in slices of about [`SLICE_PIXELS`] input pixels (8 images at 224
    /// px): activations of that size are reused by the allocator instead of being mapped
    /// afresh, which measured faster than whole batches of 16, and memory stays bounded.
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (n, c, h, w) = x.dims4()?;
        if c != 3 || h == 0 || w == 0 || x.dtype() != DType::F32 || !x.device().is_cpu() {
            return Err(Error::Invalid(format!(
                "efficientnet-lite: expected an f32 CPU batch (N, 3, H, W), got {:?} {:?}",
                x.dims(),
                x.dtype()
            )));
        }
        let per_slice = (SLICE_PIXELS / (h * w)).max(1);
        if n <= per_slice {
            return self.forward_slice(x);
        }
        let (mut features, mut logits) = (Vec::new(), Vec::new());
        for start in (0..n).step_by(per_slice) {
            let (f, l) = self.forward_slice(&x.narrow(0, start, per_slice.min(n - start))?)?;
            features.push(f);
            logits.push(l);
        }
        Ok((Tensor::cat(&features, 0)?, Tensor::cat(&logits, 0)?))
    }

    fn forward_slice(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (_, _, h, w) = x.dims4()?;
        let (top, bottom, _) = same_padding(h, 3, 2);
        let (left, right, _) = same_padding(w, 3, 2);
        let x = x
            .pad_with_zeros(2, top, bottom)?
            .pad_with_zeros(3, left, right)?;
        let mut x = x
            .conv2d(&self.stem, 0, 2, 1, 1)?
            .permute((0, 2, 3, 1))?
            .contiguous()?;
        x.inplace_op2(&self.stem_bias, &BiasAct { relu6: true })?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        let x = self.head.forward(&x, None)?;
        let (n, h, w, c) = x.dims4()?;
        let features = x.reshape((n, h * w, c))?.mean(1)?;
        let logits = features.matmul(&self.fc)?.broadcast_add(&self.fc_bias)?;
        Ok((features, logits))
    }
}

impl ImageEncoder for EfficientNetLite {
    fn name(&self) -> &str {
        self.variant.name()
    }

    fn dim(&self) -> usize {
        FEATURES
    }

    fn text_aligned(&self) -> bool {
        false
    }

    fn input_size(&self) -> usize {
        self.variant.input_size()
    }

    /// Preprocesses in parallel, runs batches of `batch_size`, L2-normalises the features and
    /// keeps the logits.
    fn encode(&self, images: &[image::RgbImage]) -> Result<Vec<ImageEmbedding>> {
        let size = self.variant.input_size() as u32;
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(self.batch_size) {
            let crops = chunk
                .par_iter()
                .map(|img| preprocess::resize_center_crop(img, size))
                .collect::<Result<Vec<_>>>()?;
            let (features, logits) = self.forward(&preprocess::to_tensor(&crops)?)?;
            for (mut vector, logits) in features
                .to_vec2::<f32>()?
                .into_iter()
                .zip(logits.to_vec2()?)
            {
                l2_normalize(&mut vector);
                out.push(ImageEmbedding {
                    vector,
                    logits: Some(logits),
                });
            }
        }
        Ok(out)
    }
}
