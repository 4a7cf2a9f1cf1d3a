//! Helpers shared by the integration tests: a seeded simulator, an HTTPS client that trusts its CA, and
//! tokens for the seeded operator app.
#![allow(dead_code)]

use idbind_sim::{Seed, SeedApp, SimConfig, SimHandle, Simulator};
use serde_json::Value;

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

pub const SUB: &str = "00000000-0000-0000-0000-0000000000a1";
pub const RG: &str = "rg-identities";
pub const KV_RG: &str = "rg-shop";
pub const KV_RBAC: &str = "kv-rbac";
pub const KV_POLICIES: &str = "kv-policies";
pub const APP_ID: &str = "11111111-1111-1111-1111-111111111111";
pub const APP_SECRET: &str = "operator-secret";
pub const APP_OID: &str = "22222222-2222-2222-2222-222222222222";
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";

/// The name of the seeded app's Owner assignment on the subscription (it shows in role assignment lists at,
/// above and below the subscription).
pub const APP_OWNER_ASSIGNMENT: &str = "0a0a0a0a-0000-4000-8000-0000000000a1";

pub fn seed() -> Seed {
    let mut seed = Seed::default();
    seed.add_rg(SUB, RG, Some("westeurope".into()));
    seed.add_vault(SUB, KV_RG, KV_RBAC, true);
    seed.add_vault(SUB, KV_RG, KV_POLICIES, false);
    seed.apps.push(SeedApp {
        client_id: APP_ID.into(),
        client_secret: APP_SECRET.into(),
        object_id: Some(APP_OID.into()),
        display_name: Some("operator".into()),
    });
    // These tests drive ARM as the subscription's administrator would; what a principal without roles may not
    // do is tested with principals of their own.
    seed.assign(APP_OID, "Owner", &format!("/subscriptions/{SUB}")).name = Some(APP_OWNER_ASSIGNMENT.into());
    seed
}

pub fn config() -> SimConfig {
    let mut cfg = SimConfig::for_tests();
    cfg.seed = seed();
    cfg
}

pub async fn start() -> Result<SimHandle, idbind_sim::SimError> {
    Simulator::start(config()).await
}

pub fn client(h: &SimHandle) -> reqwest::Client {
    let mut b = reqwest::Client::builder().use_rustls_tls();
    if let Some(pem) = h.ca_pem()
        && let Ok(cert) = reqwest::Certificate::from_pem(pem.as_bytes())
    {
        b = b.add_root_certificate(cert);
    }
    b.build().unwrap_or_default()
}

pub fn https(h: &SimHandle) -> String {
    h.https_url().unwrap_or_default().to_owned()
}

/// A token for the seeded operator app through the real token endpoint.
pub async fn app_token(
    h: &SimHandle,
    c: &reqwest::Client,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    secret_token(h, c, APP_ID, APP_SECRET).await
}

pub async fn secret_token(
    h: &SimHandle,
    c: &reqwest::Client,
    client_id: &str,
    secret: &str,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let resp = c
        .post(format!("{}/{}/oauth2/v2.0/token", https(h), h.tenant_id()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", ARM_SCOPE),
        ])
        .send()
        .await?;
    let status = resp.status();
    let body: Value = resp.json().await?;
    if !status.is_success() {
        return Err(format!("token request failed: {status} {body}").into());
    }
    Ok(body["access_token"].as_str().unwrap_or_default().to_owned())
}

/// A small ARM client: method + path (+ body) with the bearer token, returns status, headers, JSON.
#[derive(Clone)]
pub struct Arm {
    pub base: String,
    pub client: reqwest::Client,
    pub token: String,
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }
}

impl Arm {
    /// The same endpoint and HTTP client, calling as another principal.
    pub fn with_token(&self, token: impl Into<String>) -> Arm {
        Arm { token: token.into(), ..self.clone() }
    }

    pub async fn new(h: &SimHandle) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let client = client(h);
        let token = app_token(h, &client).await?;
        Ok(Self { base: https(h), client, token })
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Reply, Box<dyn std::error::Error + Send + Sync>> {
        let url = if path.starts_with("http") { path.to_owned() } else { format!("{}{}", self.base, path) };
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self.client.request(method, url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok(Reply { status, headers, body })
    }

    pub async fn get(&self, path: &str) -> Result<Reply, Box<dyn std::error::Error + Send + Sync>> {
        self.call("GET", path, None).await
    }

    pub async fn put(
        &self,
        path: &str,
        body: Value,
    ) -> Result<Reply, Box<dyn std::error::Error + Send + Sync>> {
        self.call("PUT", path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Reply, Box<dyn std::error::Error + Send + Sync>> {
        self.call("DELETE", path, None).await
    }
}

pub const MSI_API: &str = "2024-11-30";
pub const AUTHZ_API: &str = "2022-04-01";

pub fn identity_path(name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}?api-version={MSI_API}"
    )
}

pub fn fic_path(identity: &str, fic: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{identity}/federatedIdentityCredentials/{fic}?api-version={MSI_API}"
    )
}

pub fn fic_body(issuer: &str, subject: &str) -> Value {
    serde_json::json!({"properties": {"issuer": issuer, "subject": subject, "audiences": ["api://AzureADTokenExchange"]}})
}

pub fn vault_scope(name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{KV_RG}/providers/Microsoft.KeyVault/vaults/{name}")
}

pub fn ra_path(scope: &str, name: &str) -> String {
    format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version={AUTHZ_API}")
}

pub fn role_id(guid: &str) -> String {
    format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{guid}")
}

pub const SECRETS_USER: &str = "4633458b-17de-408a-b874-0445c86b69e6";
pub const CERT_USER: &str = "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba";
pub const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";

// The Key Vault data plane, reached as Azure's own host names through the simulator's CONNECT proxy.

/// An app that plays the workload reading the vault: it has no role until a test gives it one.
pub const WORKLOAD_ID: &str = "33333333-3333-3333-3333-333333333333";
pub const WORKLOAD_SECRET: &str = "workload-secret";
pub const WORKLOAD_OID: &str = "44444444-4444-4444-4444-444444444444";
pub const KV_API: &str = "7.5";
pub const VAULT_SCOPE: &str = "https://vault.azure.net/.default";

pub const SECRETS_OFFICER: &str = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7";
pub const CRYPTO_USER: &str = "12338af0-0e69-4776-bea7-57ae8d297424";
pub const KV_READER: &str = "21090545-7ca7-4776-b22c-e363652d74d2";

/// `config()` with the CONNECT proxy on and the workload app seeded.
pub fn kv_config() -> SimConfig {
    let mut cfg = config().with_proxy();
    cfg.seed.apps.push(SeedApp {
        client_id: WORKLOAD_ID.into(),
        client_secret: WORKLOAD_SECRET.into(),
        object_id: Some(WORKLOAD_OID.into()),
        display_name: Some("workload".into()),
    });
    cfg
}

/// A client as an SDK with `HTTPS_PROXY` set to the simulator's proxy and only the simulator's CA trusted: a
/// host the proxy does not serve with a certificate from that CA, naming the host, cannot be reached.
pub fn proxied_client(h: &SimHandle) -> Result<reqwest::Client, Box<dyn std::error::Error + Send + Sync>> {
    let proxy = h.proxy_url().ok_or("the simulator has no proxy")?;
    let ca = reqwest::Certificate::from_pem(h.ca_pem().unwrap_or_default().as_bytes())?;
    Ok(reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .proxy(reqwest::Proxy::https(proxy)?)
        .build()?)
}

pub fn vault_url(vault: &str) -> String {
    format!("https://{vault}.vault.azure.net")
}

/// A token for `scope` from login.microsoftonline.com (through the proxy), as an app with a secret.
pub async fn token_for(
    h: &SimHandle,
    c: &reqwest::Client,
    client_id: &str,
    secret: &str,
    scope: &str,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let resp = c
        .post(format!("https://login.microsoftonline.com/{}/oauth2/v2.0/token", h.tenant_id()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", scope),
        ])
        .send()
        .await?;
    let status = resp.status();
    let body: Value = resp.json().await?;
    if !status.is_success() {
        return Err(format!("token request failed: {status} {body}").into());
    }
    Ok(body["access_token"].as_str().unwrap_or_default().to_owned())
}

/// A vault's data plane as the workload app sees it (`Arm::call` with paths such as
/// `/secrets/x?api-version=7.5`).
pub async fn workload_vault(
    h: &SimHandle,
    vault: &str,
) -> Result<Arm, Box<dyn std::error::Error + Send + Sync>> {
    let client = proxied_client(h)?;
    let token = token_for(h, &client, WORKLOAD_ID, WORKLOAD_SECRET, VAULT_SCOPE).await?;
    Ok(Arm { base: vault_url(vault), client, token })
}

/// Gives `principal` a role at `scope` through ARM; returns the assignment's path for deleting it.
pub async fn assign(
    arm: &Arm,
    scope: &str,
    role_guid: &str,
    principal: &str,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let path = ra_path(scope, &uuid::Uuid::new_v4().to_string());
    let body = serde_json::json!({"properties": {
        "roleDefinitionId": role_id(role_guid),
        "principalId": principal,
        "principalType": "ServicePrincipal",
    }});
    let r = arm.put(&path, body).await?;
    if r.status != 201 {
        return Err(format!("role assignment failed: {} {}", r.status, r.body).into());
    }
    Ok(path)
}

pub fn rg_scope(rg: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{rg}")
}
