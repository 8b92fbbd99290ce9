//! The certificates a local store serves TLS with (`spec.tls.enabled`): `<dir>/tls/ca.crt`,
//! `tls.crt` and `tls.key`, the layout of a cert-manager Secret. `up` keeps files that are there
//! (bring your own), issues a server certificate from `ca.crt` + `ca.key` when only those are
//! there, and generates a private CA and a server certificate for loopback when nothing is.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Days, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use serde::Serialize;

use super::{LOOPBACK, Layout, LocalError, Result, io_error, write_private};

/// File name of the CA's private key next to `ca.crt`: present when `up` generated the CA (or the
/// user placed their own), so server certificates can be issued and renewed from it.
pub const CA_KEY_FILE: &str = "ca.key";
/// How long a server certificate `up` issues is valid.
pub const SERVER_VALIDITY_DAYS: u64 = 365;
/// How long a CA `up` generates is valid.
pub const CA_VALIDITY_DAYS: u64 = 3650;
/// A server certificate that ends within this many days is re-issued by `up` when it holds the
/// CA key (and reported otherwise).
pub const RENEW_WITHIN_DAYS: u64 = 30;
const CA_COMMON_NAME: &str = "ABStore local CA";
const SERVER_COMMON_NAME: &str = "ABStore local server";
/// The names every local process is reached by (clients check the IP address: URLs, Sentinel
/// replies and heal all use 127.0.0.1).
const SERVER_NAMES: [&str; 2] = [LOOPBACK, "localhost"];

/// Where the server certificate in use came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// A new private CA and server certificate, generated now.
    Generated,
    /// A server certificate issued now from the CA in the directory (missing or ending soon).
    Issued,
    /// The files that were there.
    Kept,
}

/// The certificates of a local store, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalCertificates {
    /// PEM of the CA clients (and heal) trust.
    pub ca_pem: Vec<u8>,
    /// When the server certificate ends.
    pub not_after: DateTime<Utc>,
    /// When the CA certificate ends.
    pub ca_not_after: DateTime<Utc>,
    pub origin: Origin,
}

/// Makes sure `<dir>/tls` holds a CA and a server certificate for loopback that are valid at
/// `now`, generating or issuing what is missing (keys 0600), and returns what is in use.
pub fn ensure(layout: &Layout, now: DateTime<Utc>) -> Result<LocalCertificates> {
    let dir = layout.tls_dir();
    std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let files = Files::of(layout);
    let present = |path: &Path| path.exists();
    let server_present = (present(&files.cert), present(&files.key));
    let ca_present = (present(&files.ca), present(&files.ca_key));
    let mut origin = Origin::Kept;
    match (ca_present, server_present) {
        ((false, false), (false, false)) => {
            generate_ca(&files, now)?;
            issue_server(&files, now)?;
            origin = Origin::Generated;
        }
        ((true, true), (false, false)) => {
            issue_server(&files, now)?;
            origin = Origin::Issued;
        }
        ((true, _), (true, true)) => {}
        _ => {
            let missing: Vec<String> = [&files.ca, &files.cert, &files.key]
                .into_iter()
                .filter(|path| !path.exists())
                .map(|path| path.display().to_string())
                .collect();
            return Err(tls_error(
                &dir,
                format!(
                    "incomplete: missing {} (place ca.crt, tls.crt and tls.key; or ca.crt and \
                     ca.key to have local up issue the server certificate; or none to have it \
                     generate a private CA)",
                    missing.join(", ")
                ),
            ));
        }
    }
    let ca = read_certificate(&files.ca)?;
    if ca.not_after <= now {
        return Err(tls_error(
            &files.ca,
            format!(
                "the CA certificate expired at {}; replace it, or remove {} to have local up \
                 generate a new CA (clients then need the new ca.crt)",
                ca.not_after.to_rfc3339(),
                dir.display()
            ),
        ));
    }
    let mut server = read_certificate(&files.cert)?;
    let renew_from = now + Days::new(RENEW_WITHIN_DAYS);
    if server.not_after <= renew_from && origin == Origin::Kept {
        if files.ca_key.exists() {
            tracing::info!(file = %files.cert.display(), ends = %server.not_after.to_rfc3339(), "the server certificate ends soon; issuing a new one from the local CA");
            issue_server(&files, now)?;
            server = read_certificate(&files.cert)?;
            origin = Origin::Issued;
        } else if server.not_after <= now {
            return Err(tls_error(
                &files.cert,
                format!(
                    "the server certificate expired at {}; replace tls.crt and tls.key (or \
                     place the CA's key as {CA_KEY_FILE} to have local up issue them)",
                    server.not_after.to_rfc3339()
                ),
            ));
        } else {
            tracing::warn!(file = %files.cert.display(), ends = %server.not_after.to_rfc3339(), "the server certificate ends soon; replace tls.crt and tls.key");
        }
    }
    if !server.covers_loopback {
        return Err(tls_error(
            &files.cert,
            format!(
                "the server certificate has no subjectAltName IP {LOOPBACK}: clients of a local \
                 store connect to {LOOPBACK} and would refuse it"
            ),
        ));
    }
    let ca_pem = std::fs::read(&files.ca).map_err(io_error(&files.ca))?;
    Ok(LocalCertificates {
        ca_pem,
        not_after: server.not_after,
        ca_not_after: ca.not_after,
        origin,
    })
}

/// The CA PEM of a TLS store, read as it is (for heal and status: nothing is generated).
pub fn read_ca(layout: &Layout) -> Result<Vec<u8>> {
    let path = layout.tls_ca_file();
    std::fs::read(&path).map_err(io_error(&path))
}

/// When the server certificate in `<dir>/tls` ends.
pub fn server_not_after(layout: &Layout) -> Result<DateTime<Utc>> {
    Ok(read_certificate(&layout.tls_cert_file())?.not_after)
}

struct Files {
    ca: PathBuf,
    ca_key: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn of(layout: &Layout) -> Files {
        Files {
            ca: layout.tls_ca_file(),
            ca_key: layout.tls_dir().join(CA_KEY_FILE),
            cert: layout.tls_cert_file(),
            key: layout.tls_key_file(),
        }
    }
}

/// What `up` checks in a certificate file (the first certificate of a chain).
struct CertificateFacts {
    not_after: DateTime<Utc>,
    covers_loopback: bool,
}

fn read_certificate(path: &Path) -> Result<CertificateFacts> {
    let bytes = std::fs::read(path).map_err(io_error(path))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes)
        .map_err(|e| tls_error(path, format!("not a PEM certificate: {e}")))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| tls_error(path, format!("not an X.509 certificate: {e}")))?;
    let timestamp = cert.validity().not_after.timestamp();
    let not_after = DateTime::from_timestamp(timestamp, 0)
        .ok_or_else(|| tls_error(path, format!("notAfter out of range: {timestamp}")))?;
    let loopback = std::net::Ipv4Addr::from([127, 0, 0, 1]).octets();
    let covers_loopback = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .is_some_and(|san| {
            san.value.general_names.iter().any(|name| {
                matches!(name, x509_parser::extensions::GeneralName::IPAddress(ip) if *ip == loopback)
            })
        });
    Ok(CertificateFacts {
        not_after,
        covers_loopback,
    })
}

/// A new private CA: `ca.crt` and its key `ca.key` (0600).
fn generate_ca(files: &Files, now: DateTime<Utc>) -> Result<()> {
    let invalid = |e: rcgen::Error| tls_error(&files.ca, format!("generating the CA: {e}"));
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(invalid)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, now, CA_VALIDITY_DAYS);
    let key = KeyPair::generate().map_err(invalid)?;
    let key_pem = key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(params, key).map_err(invalid)?;
    write_private(&files.ca_key, &key_pem)?;
    write_public(&files.ca, &ca.pem())
}

/// A new server key and certificate for loopback (`tls.key` 0600, `tls.crt`), signed by the CA
/// in `ca.crt` + `ca.key`.
fn issue_server(files: &Files, now: DateTime<Utc>) -> Result<()> {
    let ca_pem = std::fs::read_to_string(&files.ca).map_err(io_error(&files.ca))?;
    let ca_key_pem = std::fs::read_to_string(&files.ca_key).map_err(io_error(&files.ca_key))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem)
        .map_err(|e| tls_error(&files.ca_key, format!("not a private key: {e}")))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)
        .map_err(|e| tls_error(&files.ca, format!("not a CA certificate: {e}")))?;
    let invalid =
        |e: rcgen::Error| tls_error(&files.cert, format!("issuing the server certificate: {e}"));
    let names: Vec<String> = SERVER_NAMES.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(names).map_err(invalid)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, SERVER_COMMON_NAME);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // Redis presents the same certificate when it connects out (replication, Sentinel), so it
    // may serve as a client certificate too.
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, now, SERVER_VALIDITY_DAYS);
    let key = KeyPair::generate().map_err(invalid)?;
    let cert = params.signed_by(&key, &issuer).map_err(invalid)?;
    write_private(&files.key, &key.serialize_pem())?;
    write_public(&files.cert, &cert.pem())
}

/// From the start of today (UTC; a little slack for clocks behind ours) for `days` days.
fn set_validity(params: &mut CertificateParams, now: DateTime<Utc>, days: u64) {
    let ymd = |date: chrono::NaiveDate| {
        use chrono::Datelike;
        rcgen::date_time_ymd(
            date.year(),
            u8::try_from(date.month()).unwrap_or(1),
            u8::try_from(date.day()).unwrap_or(1),
        )
    };
    let today = now.date_naive();
    params.not_before = ymd(today);
    params.not_after = ymd(today.checked_add_days(Days::new(days)).unwrap_or(today));
}

/// Writes a certificate (public) atomically.
fn write_public(path: &Path, content: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))
}

fn tls_error(path: &Path, reason: String) -> LocalError {
    LocalError::Tls {
        path: path.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn an_empty_directory_gets_a_private_ca_and_a_loopback_certificate_with_private_keys() {
        // What a first `local up` of a TLS store does; the keys must not be world-readable.
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let certs = ensure(&layout, now()).unwrap();
        assert_eq!(certs.origin, Origin::Generated);
        assert_eq!(mode(&layout.tls_key_file()), 0o600);
        assert_eq!(mode(&layout.tls_dir().join(CA_KEY_FILE)), 0o600);
        assert_eq!(certs.ca_pem, std::fs::read(layout.tls_ca_file()).unwrap());
        let facts = read_certificate(&layout.tls_cert_file()).unwrap();
        assert!(facts.covers_loopback);
        let days = (certs.not_after - now()).num_days();
        assert!((364..=366).contains(&days), "{days}");
        assert!((certs.ca_not_after - now()).num_days() > 3000);
    }

    #[test]
    fn certificates_that_are_there_are_kept() {
        // A restart keeps the CA clients already trust, and files a user placed are theirs.
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        ensure(&layout, now()).unwrap();
        let before: Vec<Vec<u8>> = [layout.tls_ca_file(), layout.tls_cert_file()]
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        let again = ensure(&layout, now() + Days::new(100)).unwrap();
        assert_eq!(again.origin, Origin::Kept);
        let after: Vec<Vec<u8>> = [layout.tls_ca_file(), layout.tls_cert_file()]
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        assert_eq!(before, after);
    }

    #[test]
    fn a_server_certificate_near_its_end_is_reissued_from_the_same_ca() {
        // Clients keep trusting ca.crt; only tls.crt/tls.key change.
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let first = ensure(&layout, now()).unwrap();
        let later = now() + Days::new(SERVER_VALIDITY_DAYS - 10);
        let renewed = ensure(&layout, later).unwrap();
        assert_eq!(renewed.origin, Origin::Issued);
        assert_eq!(renewed.ca_pem, first.ca_pem);
        assert!(renewed.not_after > first.not_after);
    }

    #[test]
    fn a_ca_and_its_key_alone_get_a_server_certificate_issued() {
        // Bring your own CA: place ca.crt and ca.key, local up issues the rest.
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let first = ensure(&layout, now()).unwrap();
        std::fs::remove_file(layout.tls_cert_file()).unwrap();
        std::fs::remove_file(layout.tls_key_file()).unwrap();
        let issued = ensure(&layout, now()).unwrap();
        assert_eq!(issued.origin, Origin::Issued);
        assert_eq!(issued.ca_pem, first.ca_pem);
    }

    #[test]
    fn an_expired_certificate_without_the_ca_key_is_refused_naming_the_file() {
        // A user's certificate local up cannot renew: failing at `up` beats every client failing.
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        ensure(&layout, now()).unwrap();
        std::fs::remove_file(layout.tls_dir().join(CA_KEY_FILE)).unwrap();
        let error = ensure(&layout, now() + Days::new(SERVER_VALIDITY_DAYS + 2))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("tls.crt") && error.contains("expired"),
            "{error}"
        );
    }

    #[test]
    fn an_incomplete_directory_is_refused_naming_what_is_missing() {
        // A key without its certificate is a mistake to report, not files to overwrite.
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        ensure(&layout, now()).unwrap();
        std::fs::remove_file(layout.tls_cert_file()).unwrap();
        std::fs::remove_file(layout.tls_dir().join(CA_KEY_FILE)).unwrap();
        let error = ensure(&layout, now()).unwrap_err().to_string();
        assert!(
            error.contains("missing") && error.contains("tls.crt"),
            "{error}"
        );
    }

    #[test]
    fn a_certificate_without_the_loopback_address_is_refused() {
        // Every local client connects to 127.0.0.1 and checks the address against the SANs.
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        ensure(&layout, now()).unwrap();
        let params = CertificateParams::new(vec!["example.com".to_owned()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(layout.tls_cert_file(), cert.pem()).unwrap();
        std::fs::remove_file(layout.tls_dir().join(CA_KEY_FILE)).unwrap();
        let error = ensure(&layout, now()).unwrap_err().to_string();
        assert!(error.contains("127.0.0.1"), "{error}");
    }
}
