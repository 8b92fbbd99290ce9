//! The `abstore-jobs` command line, built inside the tests crate so its integration tests can
//! run it as a real process (`CARGO_BIN_EXE_*` only names a package's own binaries). Same code as
//! `jobs/src/main.rs`: both only call `abstore_jobs::cli::main`.

fn main() -> std::process::ExitCode {
    abstore_jobs::cli::main()
}
