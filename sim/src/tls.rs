//! TLS material: a CA the simulator generates (reused from `state_dir` across restarts, so clients that trust
//! `ca.pem` keep trusting the simulator) and a serving certificate for the loopback names, or a certificate
//! and key given by the user.

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;

use crate::config::TlsConfig;
use crate::error::SimError;

pub struct TlsMaterial {
    pub server_config: Arc<ServerConfig>,
    /// The PEM clients must trust.
    pub ca_pem: String,
}

const CA_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca-key.pem";

fn tls_err(what: &str, e: impl std::fmt::Display) -> SimError {
    SimError::Tls(format!("{what}: {e}"))
}

fn read(path: &Path) -> Result<String, SimError> {
    std::fs::read_to_string(path).map_err(|source| SimError::Read { path: path.to_owned(), source })
}

pub fn load(cfg: &TlsConfig, state_dir: Option<&Path>) -> Result<TlsMaterial, SimError> {
    load_with(cfg, state_dir, &[])
}

/// `load`, with `names` (e.g. the cloud hosts the CONNECT proxy plays, wildcards allowed) added to a
/// generated serving certificate.
pub fn load_with(
    cfg: &TlsConfig,
    state_dir: Option<&Path>,
    names: &[String],
) -> Result<TlsMaterial, SimError> {
    match cfg {
        TlsConfig::Generate { extra_hostnames } => {
            let all: Vec<String> = extra_hostnames.iter().chain(names).cloned().collect();
            generate(&all, state_dir)
        }
        TlsConfig::Files { cert_file, key_file, ca_file } => {
            from_files(cert_file, key_file, ca_file.as_deref())
        }
    }
}

fn ca_params() -> Result<CertificateParams, SimError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| tls_err("CA parameters", e))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "idbind-sim local CA");
    dn.push(DnType::OrganizationName, "idbind");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    // Fixed validity so a CA rebuilt from its saved key on restart is the same certificate in every field
    // that chain validation looks at.
    params.not_before = time::macros::datetime!(2024-01-01 00:00 UTC);
    params.not_after = time::macros::datetime!(2049-12-31 00:00 UTC);
    Ok(params)
}

fn generate(extra_hostnames: &[String], state_dir: Option<&Path>) -> Result<TlsMaterial, SimError> {
    let saved = state_dir.map(|d| (d.join(CA_FILE), d.join(CA_KEY_FILE)));
    let (ca_key, saved_pem) = match &saved {
        Some((cert_path, key_path)) if cert_path.exists() && key_path.exists() => {
            let key = KeyPair::from_pem(&read(key_path)?).map_err(|e| tls_err("saved CA key", e))?;
            (key, Some(read(cert_path)?))
        }
        _ => (KeyPair::generate().map_err(|e| tls_err("CA key", e))?, None),
    };
    let ca_cert = ca_params()?.self_signed(&ca_key).map_err(|e| tls_err("CA certificate", e))?;
    let ca_pem = saved_pem.unwrap_or_else(|| ca_cert.pem());

    let mut names = vec![String::from("localhost"), String::from("127.0.0.1"), String::from("::1")];
    names.extend(extra_hostnames.iter().cloned());
    let mut leaf = CertificateParams::new(names).map_err(|e| tls_err("server certificate names", e))?;
    leaf.distinguished_name.push(DnType::CommonName, "idbind-sim");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    leaf.use_authority_key_identifier_extension = true;
    let leaf_key = KeyPair::generate().map_err(|e| tls_err("server key", e))?;
    let leaf_cert =
        leaf.signed_by(&leaf_key, &ca_cert, &ca_key).map_err(|e| tls_err("server certificate", e))?;

    if let Some((cert_path, key_path)) = &saved
        && (!cert_path.exists() || !key_path.exists())
    {
        write_private(key_path, &ca_key.serialize_pem())?;
        crate::harness::persist::write_atomically(cert_path, ca_pem.as_bytes())?;
    }
    let chain = format!("{}{}", leaf_cert.pem(), ca_pem);
    let server_config = server_config(&chain, &leaf_key.serialize_pem())?;
    Ok(TlsMaterial { server_config, ca_pem })
}

fn write_private(path: &Path, pem: &str) -> Result<(), SimError> {
    crate::harness::persist::write_atomically(path, pem.as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|source| SimError::Write { path: path.to_owned(), source })?;
    }
    Ok(())
}

fn from_files(cert_file: &Path, key_file: &Path, ca_file: Option<&Path>) -> Result<TlsMaterial, SimError> {
    let chain = read(cert_file)?;
    let key = read(key_file)?;
    let ca_pem = match ca_file {
        Some(p) => read(p)?,
        None => chain.clone(),
    };
    Ok(TlsMaterial { server_config: server_config(&chain, &key)?, ca_pem })
}

fn server_config(chain_pem: &str, key_pem: &str) -> Result<Arc<ServerConfig>, SimError> {
    let certs = rustls_pemfile::certs(&mut chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err("certificate PEM", e))?;
    if certs.is_empty() {
        return Err(SimError::Tls(String::from("no certificate in the certificate PEM")));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| tls_err("key PEM", e))?
        .ok_or_else(|| SimError::Tls(String::from("no private key in the key PEM")))?;
    let config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("protocol versions", e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls_err("certificate and key", e))?;
    Ok(Arc::new(config))
}
