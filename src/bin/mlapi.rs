//! The `mlapi` binary: parse the command line, hand it to the library.

use clap::Parser;

// A request allocates and frees dozens of small objects across worker
// threads; mimalloc's per-thread free lists cost a fraction of glibc's
// malloc there (BENCHMARKS.md). The benchmark ceiling uses it too. Built
// with `no_thp`: asking for transparent huge pages doubled the idle RSS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    mlapi::cli::main(mlapi::cli::Cli::parse())
}
