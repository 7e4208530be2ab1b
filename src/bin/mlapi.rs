//! The `mlapi` binary: parse the command line, hand it to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    mlapi::cli::main(mlapi::cli::Cli::parse())
}
