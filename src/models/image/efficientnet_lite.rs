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
//! For speed on a CPU the network runs on plain f32 buffers, channels-last (NHWC): every 1x1
//! convolution is one matrix product over an image's pixels with the bias fused in (and the
//! residual, where a block has one), the stem and depthwise convolutions are vectorised
//! kernels over channels ([`super::kernels`]), and batch norm is folded into the convolution
//! weights at load time.

use std::collections::HashMap;
use std::path::Path;

use std::cell::RefCell;

use candle_core::{CpuStorage, DType, Device, Storage, Tensor};
use rayon::prelude::*;

use super::super::l2_normalize;
use super::checkpoint::Checkpoint;
use super::kernels::{conv_nchw, depthwise, relu6, Conv};
use super::{preprocess, ImageEmbedding, ImageEncoder};
use crate::models::transformer::Dense;
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

/// A 1x1 convolution (batch norm folded in): one matrix product over a map's NHWC pixels.
struct Pointwise {
    dense: Dense,
    relu6: bool,
}

impl Pointwise {
    /// `out = act(x W^T + b)`; with `residual`, `out` holds the residual and gets
    /// `x W^T + b` added (no activation then). Single-threaded.
    fn forward(&self, x: &[f32], out: &mut [f32], residual: bool) {
        let out = &mut out[..x.len() / self.dense.inputs() * self.dense.outputs()];
        self.dense.forward(x, out, residual, 1);
        if self.relu6 {
            relu6(out);
        }
    }
}

struct Block {
    expand: Option<Pointwise>,
    /// `(k*k, C)` with batch norm folded in.
    depthwise: Vec<f32>,
    depthwise_bias: Vec<f32>,
    shape: BlockShape,
    project: Pointwise,
}

impl Block {
    /// Whether the block adds its input to its output.
    fn skips(&self) -> bool {
        self.shape.stride == 1 && self.shape.cin == self.shape.cout
    }
}

/// The variant whose block plan the checkpoint's blocks follow, with that plan: the one they
/// follow furthest, which they must match entirely.
fn matching_variant(ckpt: &Checkpoint) -> Result<(Variant, Vec<BlockShape>)> {
    let found = block_shapes(ckpt)?;
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
    Ok((variant, plan))
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
    /// `(3*3*3, 32)`: kernel row, kernel column, input channel; output channels last.
    stem: Vec<f32>,
    stem_bias: Vec<f32>,
    blocks: Vec<Block>,
    head: Pointwise,
    fc: Dense,
    batch_size: usize,
}

/// Three activation buffers, kept per thread between forward passes (a fresh mapping of
/// this size costs more in page faults than the convolutions that fill it).
#[derive(Default)]
struct Scratch {
    map: Vec<f32>,
    other: Vec<f32>,
    depthwise: Vec<f32>,
}

impl Scratch {
    /// Makes each buffer at least `len` long.
    fn reserve(&mut self, len: usize) {
        for b in [&mut self.map, &mut self.other, &mut self.depthwise] {
            if b.len() < len {
                b.resize(len, 0.0);
            }
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
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
        let (variant, plan) = matching_variant(&ckpt)?;
        let pointwise = |conv: &str, (cin, cout), bn: &str, relu6| -> Result<Pointwise> {
            let (w, bias) = ckpt.folded(conv, &[cout, cin, 1, 1], bn, BN_EPS)?;
            let dense = Dense::new(&w, Some(&bias))?;
            Ok(Pointwise { dense, relu6 })
        };
        let (stem, stem_bias) =
            ckpt.folded("_conv_stem.weight", &[STEM, 3, 3, 3], "_bn0", BN_EPS)?;
        let stem = stem.permute((2, 3, 1, 0))?.flatten_all()?.to_vec1()?;
        let stem_bias = stem_bias.to_vec1()?;
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
            let depthwise = dw.reshape((hidden, k * k))?.t()?.flatten_all()?.to_vec1()?;
            let dims = (hidden, shape.cout);
            let project = pointwise(&name("_project_conv.weight"), dims, &name("_bn2"), false)?;
            let block = Block {
                expand,
                depthwise,
                depthwise_bias: depthwise_bias.to_vec1()?,
                shape,
                project,
            };
            blocks.push(block);
        }
        let last = blocks.last().map_or(STEM, |b| b.shape.cout);
        let head = pointwise("_conv_head.weight", (last, FEATURES), "_bn1", true)?;
        let fc = Dense::new(
            &ckpt.get("_fc.weight", &[CLASSES, FEATURES])?,
            Some(&ckpt.get("_fc.bias", &[CLASSES])?),
        )?;
        ckpt.check_all_used()?;
        let batch_size = 16;
        Ok(Self {
            variant,
            stem,
            stem_bias,
            blocks,
            head,
            fc,
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
    /// The batch is split into one group of images per thread of rayon's pool, and each
    /// image runs single-threaded through the whole network, in activation buffers its thread
    /// keeps: no synchronisation between layers and no fresh memory. (Sharing one image's
    /// layers between two threads measured no faster, so a single image takes one thread.)
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (n, c, h, w) = x.dims4()?;
        if c != 3 || h == 0 || w == 0 || x.dtype() != DType::F32 || !x.device().is_cpu() {
            return Err(Error::Invalid(format!(
                "efficientnet-lite: expected an f32 CPU batch (N, 3, H, W), got {:?} {:?}",
                x.dims(),
                x.dtype()
            )));
        }
        let x = x.contiguous()?;
        let (storage, layout) = x.storage_and_layout();
        let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
            return Err(Error::Invalid(
                "efficientnet-lite: f32 CPU input only".into(),
            ));
        };
        let (from, to) = layout
            .contiguous_offsets()
            .ok_or_else(|| Error::Invalid("efficientnet-lite: non-contiguous input".into()))?;
        let image_len = 3 * h * w;
        let mut features = vec![0f32; n * FEATURES];
        let threads = rayon::current_num_threads();
        let per_group = n.div_ceil(threads).max(1);
        data[from..to]
            .par_chunks(per_group * image_len)
            .zip(features.par_chunks_mut(per_group * FEATURES))
            .for_each(|(images, out)| {
                let images = images.chunks(image_len).zip(out.chunks_mut(FEATURES));
                for (image, out) in images {
                    self.forward_image(image, h, w, out);
                }
            });
        let mut logits = vec![0f32; n * CLASSES];
        self.fc.forward(&features, &mut logits, false, threads);
        Ok((
            Tensor::from_vec(features, (n, FEATURES), &Device::Cpu)?,
            Tensor::from_vec(logits, (n, CLASSES), &Device::Cpu)?,
        ))
    }

    /// The longest activation (in floats) an `h x w` input makes.
    fn activation_len(&self, h: usize, w: usize) -> usize {
        let stem = Conv::same(h, w, 3, 2);
        let (mut h, mut w) = (stem.oh, stem.ow);
        let mut longest = h * w * STEM;
        for b in &self.blocks {
            let s = b.shape;
            let g = Conv::same(h, w, s.kernel, s.stride);
            longest = longest.max(h * w * s.hidden).max(g.oh * g.ow * s.cout);
            (h, w) = (g.oh, g.ow);
        }
        longest.max(h * w * FEATURES)
    }

    /// One NCHW image `(3, h, w)` through the network into its pooled `features`, in this
    /// thread's scratch buffers.
    fn forward_image(&self, image: &[f32], h: usize, w: usize, features: &mut [f32]) {
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.reserve(self.activation_len(h, w));
            let Scratch {
                map,
                other,
                depthwise: dw,
            } = scratch;
            let g = Conv::same(h, w, 3, 2);
            let len = g.oh * g.ow * STEM;
            let stem = &mut map[..len];
            conv_nchw(image, &self.stem, &self.stem_bias, stem, g);
            let (mut h, mut w) = (g.oh, g.ow);
            for block in &self.blocks {
                let s = block.shape;
                let input = &map[..h * w * s.cin];
                let expanded = match &block.expand {
                    Some(e) => {
                        e.forward(input, other, false);
                        &other[..h * w * s.hidden]
                    }
                    None => input,
                };
                let g = Conv::same(h, w, s.kernel, s.stride);
                let dw = &mut dw[..g.oh * g.ow * s.hidden];
                let (weights, bias) = (&block.depthwise, &block.depthwise_bias);
                depthwise(expanded, weights, bias, dw, g);
                let len = g.oh * g.ow * s.cout;
                if block.skips() {
                    other[..len].copy_from_slice(&map[..len]);
                }
                block.project.forward(dw, other, block.skips());
                std::mem::swap(map, other);
                (h, w) = (g.oh, g.ow);
            }
            let last = self.blocks.last().map_or(STEM, |b| b.shape.cout);
            self.head.forward(&map[..h * w * last], other, false);
            features.fill(0.0);
            for pixel in other[..h * w * FEATURES].chunks_exact(FEATURES) {
                for (f, &v) in features.iter_mut().zip(pixel) {
                    *f += v;
                }
            }
            let scale = 1.0 / (h * w) as f32;
            features.iter_mut().for_each(|f| *f *= scale);
        })
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
