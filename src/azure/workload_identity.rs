//! Workload identity for the operator itself: exchange the projected service-account token for an Entra
//! token, reading the token file at every exchange.
//!
//! `azure_identity` 0.21's `WorkloadIdentityCredential` reads `AZURE_FEDERATED_TOKEN_FILE` once, at
//! construction (docs/azure.md#sdk-pitfalls). The kubelet rotates that file (default lifetime one hour), so
//! once the first Entra token expires the SDK credential re-sends an expired assertion and every ARM call
//! fails. This credential reads the file whenever it needs a new Entra token.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::auth::{AccessToken, TokenCredential};
use azure_core::error::{ErrorKind, ResultExt};
use azure_core::{HttpClient, Method, Request, Url};
use time::OffsetDateTime;

use super::AzureError;
use super::arm::Cloud;

/// A cached token is renewed this long before it expires, so a request never leaves with a token in its last
/// minutes (Entra and ARM clocks may differ a little).
const REFRESH_MARGIN: time::Duration = time::Duration::minutes(5);

/// Federated (workload identity) credential that re-reads the assertion file for each exchange.
pub struct FileFederatedCredential {
    http: Arc<dyn HttpClient>,
    authority_host: Url,
    tenant_id: String,
    client_id: String,
    token_file: PathBuf,
    /// Entra tokens by requested scopes. A tokio mutex held across the exchange: concurrent callers wait for
    /// one exchange instead of each making their own.
    cache: tokio::sync::Mutex<HashMap<String, AccessToken>>,
}

impl std::fmt::Debug for FileFederatedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileFederatedCredential")
            .field("authority_host", &self.authority_host.as_str())
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("token_file", &self.token_file)
            .finish_non_exhaustive()
    }
}

impl FileFederatedCredential {
    pub fn new(
        cloud: &Cloud,
        http: Arc<dyn HttpClient>,
        tenant_id: &str,
        client_id: &str,
        token_file: impl Into<PathBuf>,
    ) -> Result<Self, AzureError> {
        let authority_host = Url::parse(cloud.authority_host())
            .map_err(|e| AzureError::Config(format!("authority host {:?}: {e}", cloud.authority_host())))?;
        Ok(Self {
            http,
            authority_host,
            tenant_id: tenant_id.to_string(),
            client_id: client_id.to_string(),
            token_file: token_file.into(),
            cache: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// From the variables the workload identity webhook injects: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
    /// `AZURE_FEDERATED_TOKEN_FILE`.
    pub fn from_env(cloud: &Cloud, http: Arc<dyn HttpClient>) -> Result<Self, AzureError> {
        let var =
            |name: &str| std::env::var(name).map_err(|_| AzureError::Config(format!("{name} is not set")));
        Self::new(
            cloud,
            http,
            &var("AZURE_TENANT_ID")?,
            &var("AZURE_CLIENT_ID")?,
            var("AZURE_FEDERATED_TOKEN_FILE")?,
        )
    }
}

impl FileFederatedCredential {
    async fn exchange(&self, assertion: &str, scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let grant = Assertion {
            authority_host: &self.authority_host,
            tenant_id: &self.tenant_id,
            client_id: &self.client_id,
            assertion,
        };
        exchange(self.http.as_ref(), &grant, scopes)
            .await
            .map_err(|e| azure_core::Error::with_message(ErrorKind::Credential, || e.to_string()))
    }
}

/// A federated credential's assertion (a Kubernetes service-account token) for an identity.
pub struct Assertion<'a> {
    pub authority_host: &'a Url,
    pub tenant_id: &'a str,
    /// The identity's client id.
    pub client_id: &'a str,
    /// The JWT; never logged.
    pub assertion: &'a str,
}

/// Why Entra gave no token for an assertion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// Entra answered with an OAuth error: its AADSTS codes say why (70021: no federated credential matches
    /// the assertion, yet or at all; 700024: the assertion expired).
    #[error("Entra refused the federated token exchange: HTTP {status} {error}: {description}")]
    Refused { status: u16, error: String, codes: Vec<u64>, description: String },
    /// No answer, or one that could not be read.
    #[error("Entra's token endpoint: {0}")]
    Unavailable(String),
}

impl ExchangeError {
    /// Whether Entra said AADSTS `code`.
    pub fn is(&self, code: u64) -> bool {
        matches!(self, ExchangeError::Refused { codes, .. } if codes.contains(&code))
    }
}

/// The client-credentials grant with a JWT assertion. Written here rather than through
/// `azure_identity::federated_credentials_flow::perform`, whose error drops Entra's answer
/// (`HttpResponse(400,unknown)`): the AADSTS code and description (70021: no matching FIC, 700024: expired
/// assertion) are what a user needs to see.
pub async fn exchange(
    http: &dyn HttpClient,
    grant: &Assertion<'_>,
    scopes: &[&str],
) -> Result<AccessToken, ExchangeError> {
    let unavailable =
        |what: &str, e: &dyn std::fmt::Display| ExchangeError::Unavailable(format!("{what}: {e}"));
    let url = grant
        .authority_host
        .join(&format!("/{}/oauth2/v2.0/token", grant.tenant_id))
        .map_err(|e| unavailable("token URL", &e))?;
    let form: String = [
        ("client_id", grant.client_id),
        ("scope", &scopes.join(" ")),
        ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        ("client_assertion", grant.assertion),
        ("grant_type", "client_credentials"),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", form_encode(v)))
    .collect::<Vec<_>>()
    .join("&");
    let mut request = Request::new(url, Method::Post);
    request.insert_header(azure_core::headers::CONTENT_TYPE, "application/x-www-form-urlencoded");
    request.set_body(form);
    let response = http.execute_request(&request).await.map_err(|e| unavailable("no answer", &e))?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| unavailable("reading the answer", &e))?;
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    if !status.is_success() {
        let text = |k: &str| answer.get(k).and_then(serde_json::Value::as_str).unwrap_or("").to_string();
        let codes = answer
            .get("error_codes")
            .and_then(serde_json::Value::as_array)
            .map(|c| c.iter().filter_map(serde_json::Value::as_u64).collect())
            .unwrap_or_default();
        let error = Some(text("error")).filter(|e| !e.is_empty()).unwrap_or_else(|| "unknown".into());
        return Err(ExchangeError::Refused {
            status: u16::from(status),
            error,
            codes,
            description: text("error_description"),
        });
    }
    let Some(access_token) = answer.get("access_token").and_then(serde_json::Value::as_str) else {
        return Err(ExchangeError::Unavailable("Entra's answer has no access_token".into()));
    };
    // `expires_in` is a number in Entra v2 answers, a string in some older ones.
    let expires_in = answer
        .get("expires_in")
        .and_then(|v| v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
        .unwrap_or(0);
    Ok(AccessToken::new(
        access_token.to_string(),
        OffsetDateTime::now_utc() + time::Duration::seconds(expires_in),
    ))
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(char::from(b)),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[async_trait]
impl TokenCredential for FileFederatedCredential {
    async fn get_token(&self, scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let key = scopes.join(" ");
        let mut cache = self.cache.lock().await;
        if let Some(token) = cache.get(&key)
            && token.expires_on > OffsetDateTime::now_utc() + REFRESH_MARGIN
        {
            return Ok(token.clone());
        }
        let assertion =
            tokio::fs::read_to_string(&self.token_file).await.with_context(ErrorKind::Credential, || {
                format!("reading the federated token file {}", self.token_file.display())
            })?;
        let token = self.exchange(assertion.trim(), scopes).await?;
        cache.insert(key, token.clone());
        Ok(token)
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        self.cache.lock().await.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::headers::Headers;
    use azure_core::{Body, BytesStream, Response, StatusCode};
    use std::sync::Mutex;

    /// Entra's token endpoint, recording the assertion of each exchange and answering with the next lifetime
    /// in line.
    #[derive(Debug)]
    struct FakeEntra {
        assertions: Mutex<Vec<String>>,
        lifetimes: Mutex<Vec<u64>>,
    }

    #[async_trait]
    impl HttpClient for FakeEntra {
        async fn execute_request(&self, request: &Request) -> azure_core::Result<Response> {
            let form = match request.body() {
                Body::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                Body::SeekableStream(_) => String::new(),
            };
            let assertion = form
                .split('&')
                .find_map(|kv| kv.strip_prefix("client_assertion="))
                .unwrap_or_default()
                .to_string();
            let n = {
                let mut seen = self
                    .assertions
                    .lock()
                    .map_err(|_| azure_core::Error::message(ErrorKind::Other, "poisoned"))?;
                seen.push(assertion);
                seen.len()
            };
            let lifetime = self
                .lifetimes
                .lock()
                .map_err(|_| azure_core::Error::message(ErrorKind::Other, "poisoned"))?
                .get(n - 1)
                .copied()
                .unwrap_or(3600);
            let body = serde_json::json!({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": format!("entra-{n}")}).to_string();
            Ok(Response::new(StatusCode::Ok, Headers::new(), Box::pin(BytesStream::new(body))))
        }
    }

    #[tokio::test]
    async fn the_token_file_is_read_again_for_each_exchange() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("idbind-wi-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("token");
        std::fs::write(&file, "assertion-one\n")?;
        // The first Entra token is already inside the refresh margin; the second lasts an hour.
        let entra =
            Arc::new(FakeEntra { assertions: Mutex::new(Vec::new()), lifetimes: Mutex::new(vec![60, 3600]) });
        let cloud = Cloud::Custom {
            arm_endpoint: "https://arm.example".into(),
            authority_host: "https://login.example".into(),
            audience: "https://management.azure.com".into(),
        };
        let credential = FileFederatedCredential::new(&cloud, entra.clone(), "tenant", "client", &file)?;
        let scope = ["https://management.azure.com/.default"];

        assert_eq!(credential.get_token(&scope).await?.token.secret(), "entra-1");
        // The kubelet rotates the projected token.
        std::fs::write(&file, "assertion-two\n")?;
        assert_eq!(credential.get_token(&scope).await?.token.secret(), "entra-2");
        // Valid for an hour: served from the cache, no exchange.
        assert_eq!(credential.get_token(&scope).await?.token.secret(), "entra-2");
        assert_eq!(
            entra.assertions.lock().map(|a| a.clone()).unwrap_or_default(),
            vec!["assertion-one".to_string(), "assertion-two".to_string()]
        );

        // After clear_cache the next call exchanges again, with the current file.
        credential.clear_cache().await?;
        std::fs::remove_file(&file)?;
        let err = credential.get_token(&scope).await.err().map(|e| e.kind().clone());
        assert!(matches!(err, Some(ErrorKind::Credential)), "{err:?}");
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
