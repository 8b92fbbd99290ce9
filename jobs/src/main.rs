//! `abstore-jobs`: see [`abstore_jobs::cli`].

/// mimalloc instead of glibc malloc: backup and restore allocate a small buffer per key and per
/// reply, and glibc's allocator was a fifth of their CPU time (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    abstore_jobs::cli::main()
}
