//! The `promptdex` command: parse the command line, run, pick the exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = <promptdex_cli::Cli as clap::Parser>::parse();
    match promptdex_cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // A closed pipe (`promptdex search ... | head`) is not a failure.
            if err
                .chain()
                .filter_map(|e| e.downcast_ref::<std::io::Error>())
                .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[path = "cli.rs"]
mod promptdex_cli;
