//! Fetching an external issuer's signing keys for client-assertion validation:
//! `{iss}/.well-known/openid-configuration` → `jwks_uri` → JWKS, cached per issuer and re-fetched when an
//! assertion names a `kid` the cache does not have (key rotation).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;
use tokio::sync::Mutex;

use crate::error::SimError;

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// Discovery or JWKS fetch failed.
    #[error("{0}")]
    Fetch(String),
    /// The JWKS has no usable key for the assertion.
    #[error("{0}")]
    NoKey(String),
}

pub struct OidcKeys {
    client: reqwest::Client,
    cache: Mutex<HashMap<String, JwkSet>>,
}

impl std::fmt::Debug for OidcKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcKeys").finish_non_exhaustive()
    }
}

impl OidcKeys {
    /// `trusted_pems` are added to the usual web roots (the simulator's own CA, the local kube-apiserver's
    /// CA…).
    pub fn new(trusted_pems: &[String], extra_ca_files: &[PathBuf]) -> Result<Self, SimError> {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10)).use_rustls_tls();
        let mut pems: Vec<String> = trusted_pems.to_vec();
        for path in extra_ca_files {
            pems.push(
                std::fs::read_to_string(path)
                    .map_err(|source| SimError::Read { path: path.clone(), source })?,
            );
        }
        for pem in &pems {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| SimError::Tls(format!("trusted CA for OIDC discovery: {e}")))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(|e| SimError::Tls(format!("OIDC client: {e}")))?;
        Ok(Self { client, cache: Mutex::new(HashMap::new()) })
    }

    /// The key that signed an assertion of `issuer` with header `kid`.
    pub async fn key_for(&self, issuer: &str, kid: Option<&str>) -> Result<DecodingKey, OidcError> {
        let mut cache = self.cache.lock().await;
        if let Some(set) = cache.get(issuer)
            && let Some(key) = pick(set, kid)
        {
            return key;
        }
        // Unknown issuer or unknown kid: fetch again (the issuer may have rotated its keys).
        let set = self.fetch(issuer).await?;
        let found = pick(&set, kid);
        cache.insert(issuer.to_owned(), set);
        found.unwrap_or_else(|| {
            Err(OidcError::NoKey(format!("The key was not found. Key id: '{}'.", kid.unwrap_or(""))))
        })
    }

    async fn fetch(&self, issuer: &str) -> Result<JwkSet, OidcError> {
        let discovery_url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let doc: serde_json::Value = self.get_json(&discovery_url).await?;
        let jwks_uri = doc.get("jwks_uri").and_then(|v| v.as_str()).ok_or_else(|| {
            OidcError::Fetch(format!("The OIDC discovery document at '{discovery_url}' has no jwks_uri."))
        })?;
        let set: serde_json::Value = self.get_json(jwks_uri).await?;
        // Parse key by key so one key of a type we do not know does not hide the others.
        let keys = set.get("keys").and_then(|k| k.as_array()).cloned().unwrap_or_default();
        let keys = keys.into_iter().filter_map(|k| serde_json::from_value(k).ok()).collect();
        Ok(JwkSet { keys })
    }

    async fn get_json(&self, url: &str) -> Result<serde_json::Value, OidcError> {
        let resp = self.client.get(url).send().await.map_err(|e| {
            OidcError::Fetch(format!("Request to External OIDC endpoint '{url}' failed: {e}"))
        })?;
        if !resp.status().is_success() {
            return Err(OidcError::Fetch(format!(
                "Request to External OIDC endpoint '{url}' failed with status {}.",
                resp.status()
            )));
        }
        resp.json().await.map_err(|e| {
            OidcError::Fetch(format!("Response of External OIDC endpoint '{url}' is not JSON: {e}"))
        })
    }
}

fn pick(set: &JwkSet, kid: Option<&str>) -> Option<Result<DecodingKey, OidcError>> {
    let jwk = match kid {
        Some(kid) => set.find(kid)?,
        // Without a kid, a single-key JWKS is unambiguous.
        None if set.keys.len() == 1 => &set.keys[0],
        None => return None,
    };
    Some(
        DecodingKey::from_jwk(jwk)
            .map_err(|e| OidcError::NoKey(format!("The key '{}' cannot be used: {e}", kid.unwrap_or("")))),
    )
}
