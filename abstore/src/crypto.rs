//! The process-wide TLS crypto provider. The workspace compiles two rustls backends (`ring`,
//! and `aws-lc-rs` through the AWS SDK); with both present rustls refuses to pick one and the
//! first TLS connection that relies on the default panics. Every binary calls
//! [`install_default_provider`] first thing in `main`; the library calls it too before a TLS
//! connection, for programs that embed it.

/// Installs `ring` as the process-wide rustls provider. Idempotent: a provider already
/// installed (by this call or by the embedding program) is kept.
pub fn install_default_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err means another thread installed one between the check and here: also fine.
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installing_twice_keeps_one_provider() {
        // Every binary calls it at start and the library again before TLS: both must work.
        install_default_provider();
        install_default_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
