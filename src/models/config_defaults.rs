//! Serde defaults shared by the checkpoint configs (`config.json` fields that `transformers`
//! leaves out when they hold its default value).

/// `N`, as a serde default: `#[serde(default = "n::<768>")]`.
pub const fn n<const N: usize>() -> usize {
    N
}
