//! Certificates for TLS tests: a private CA and a server certificate for 127.0.0.1/localhost
//! signed by it, written as PEM files the way cert-manager mounts them (ca.crt, tls.crt, tls.key).

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};

use crate::error::HarnessError;

/// PEM files of one test CA and a server certificate it signed.
#[derive(Debug)]
pub struct TestCertificates {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestCertificates {
    /// Generates a fresh CA and server certificate into `dir`.
    pub fn generate(dir: &Path) -> Result<Self, HarnessError> {
        let invalid =
            |e: rcgen::Error| HarnessError::Invalid(format!("generating certificates: {e}"));
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(invalid)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "abstore test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(invalid)?)
            .map_err(invalid)?;

        let mut server_params =
            CertificateParams::new(vec!["localhost".to_owned()]).map_err(invalid)?;
        server_params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
        let server_key = KeyPair::generate().map_err(invalid)?;
        let server_cert = server_params.signed_by(&server_key, &ca).map_err(invalid)?;

        let certs = Self {
            ca_file: dir.join("ca.crt"),
            cert_file: dir.join("tls.crt"),
            key_file: dir.join("tls.key"),
        };
        for (path, pem) in [
            (&certs.ca_file, ca.pem()),
            (&certs.cert_file, server_cert.pem()),
            (&certs.key_file, server_key.serialize_pem()),
        ] {
            std::fs::write(path, pem).map_err(|source| HarnessError::Io {
                action: "writing",
                path: path.clone(),
                source,
            })?;
        }
        Ok(certs)
    }

    /// redis.conf lines that serve TLS on `tls_port` with these files (clients need no cert).
    pub fn redis_config(&self, tls_port: u16) -> String {
        format!(
            "tls-port {tls_port}\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\ntls-auth-clients no\n",
            self.cert_file.display(),
            self.key_file.display(),
            self.ca_file.display()
        )
    }
}
