//! `abstore-jobs`: see [`abstore_jobs::cli`].

fn main() -> std::process::ExitCode {
    abstore_jobs::cli::main()
}
