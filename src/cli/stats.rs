//! `stats`: what an index holds, on either backend.

use anyhow::Result;

use promptdex::store::open_reader;

use super::args::StatsArgs;
use super::output::{emit, print_stats};

/// `stats`: records, prompts, images, models and size of the index.
pub fn stats(args: StatsArgs) -> Result<()> {
    let reader = open_reader(&args.index, None)?;
    let stats = reader.stats()?;
    emit(args.json, &stats, |out| print_stats(out, &stats))
}
