//! The `mlapi` binary: parse the command line, hand it to the library.

use clap::Parser;

// A request allocates and frees dozens of small objects across worker
// threads; mimalloc's per-thread free lists cost a fraction of glibc's
// malloc there. The benchmark ceiling uses it too. Built
// with `no_thp`: asking for transparent huge pages doubled the idle RSS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h (the Rust bindings leave option
/// constants out on purpose; the C enum keeps its positions across versions).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    // Hand freed pages back at once instead of after a delay that only
    // elapses when the freeing thread allocates again: otherwise the model
    // load's garbage stays resident in an idle daemon (no throughput cost
    // measured).
    // SAFETY: the option is a plain integer; set before any other thread
    // exists, as `mi_option_set` requires.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    mlapi::cli::main(mlapi::cli::Cli::parse())
}
