//! The `serve` command: its flags lowered into the library's `ServeConfig`, then the server.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};

use promptdex::serve::ServeConfig;

use super::args::ServeArgs;
use super::generation::{generate_config, load_options};

/// `serve`: runs the HTTP API and the web page over the index until stopped.
pub fn serve(models_root: PathBuf, args: ServeArgs) -> Result<()> {
    if args.max_upload_mb == 0 || args.timeout == 0 || args.header_timeout == 0 {
        bail!("--max-upload-mb, --timeout and --header-timeout must be at least 1");
    }
    let config = ServeConfig {
        addr: args.addr,
        index: args.flags.index.clone(),
        models_root,
        generate: generate_config(&args.flags)?,
        max_upload: args.max_upload_mb << 20,
        max_side: args.max_side,
        workers: args.workers,
        queue: args.queue,
        timeout: Duration::from_secs(args.timeout),
        header_timeout: Duration::from_secs(args.header_timeout),
        load: load_options(&args.flags),
        ..ServeConfig::default()
    };
    promptdex::serve::run(&config, &mut |l| eprintln!("{l}"))?;
    Ok(())
}
