//! Configuration of a simulator instance. Every number that shapes behaviour is here, with defaults that
//! follow ARM (docs/azure.md); a config file (JSON or YAML, camelCase keys) can set any of it, and
//! `idbind-sim` flags override the most common fields.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::SimError;
use crate::harness::faults::FaultRule;
use crate::seed::Seed;

/// Everything `Simulator::start` needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SimConfig {
    /// HTTPS listener; `None` disables it. Port 0 picks a free port.
    pub https_addr: Option<SocketAddr>,
    /// Plain HTTP listener for debugging (curl without a CA); `None` disables it.
    pub http_addr: Option<SocketAddr>,
    /// HTTPS-intercepting CONNECT proxy (see `proxy.rs`): clients with `HTTPS_PROXY` pointing here reach the
    /// simulator under Azure's own host names. `None` (the default) disables it.
    pub proxy_addr: Option<SocketAddr>,
    /// Where the serving certificate comes from.
    pub tls: TlsConfig,
    /// If set, receives `ca.pem`, `ca-key.pem` (reused on restart, so clients keep trusting the simulator),
    /// `endpoint` (the HTTPS URL) and `endpoint.json` (all URLs).
    pub state_dir: Option<PathBuf>,
    /// If set, the state is loaded from and persisted to this file (see `persist.rs`).
    pub state_file: Option<PathBuf>,
    /// The Entra tenant every identity, token and vault belongs to.
    pub tenant_id: String,
    /// Subscriptions, resource groups, vaults, apps, principals, custom roles, role assignments.
    pub seed: Seed,
    pub throttle: ThrottleConfig,
    pub latency: LatencyConfig,
    /// Faults active from the start (the admin endpoint can change them at runtime).
    pub faults: Vec<FaultRule>,
    pub behaviour: BehaviourConfig,
    pub entra: EntraConfig,
    pub keyvault: KeyVaultConfig,
    /// When true, ARM requests without a bearer token act as `anonymous_principal` (curl-friendly debugging).
    /// Requests that do carry a token are still validated.
    pub allow_anonymous: bool,
    pub anonymous_principal: String,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            https_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            http_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            proxy_addr: None,
            tls: TlsConfig::default(),
            state_dir: None,
            state_file: None,
            tenant_id: String::from("72f988bf-86f1-41af-91ab-2d7cd011db47"),
            seed: Seed::default(),
            throttle: ThrottleConfig::default(),
            latency: LatencyConfig::default(),
            faults: Vec::new(),
            behaviour: BehaviourConfig::default(),
            entra: EntraConfig::default(),
            keyvault: KeyVaultConfig::default(),
            allow_anonymous: false,
            anonymous_principal: String::from("00000000-0000-0000-0000-00000000a11c"),
        }
    }
}

impl SimConfig {
    /// A configuration for tests: no throttling, no replication delay, no propagation windows; each of those
    /// is then switched on by the test that is about it. The FIC write window stays at its default, so a
    /// client that writes two FICs on one identity at once meets ARM's 409 in every test.
    pub fn for_tests() -> Self {
        Self {
            throttle: ThrottleConfig::disabled(),
            behaviour: BehaviourConfig { principal_replication_delay_ms: 0, ..BehaviourConfig::default() },
            ..Self::default()
        }
    }

    /// The same configuration with the CONNECT proxy on a free loopback port (`SimHandle::proxy_url`).
    pub fn with_proxy(mut self) -> Self {
        self.proxy_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        self
    }

    /// Reads a config file; `.yaml`/`.yml` are YAML, anything else JSON.
    pub fn from_file(path: &Path) -> Result<Self, SimError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| SimError::Read { path: path.to_owned(), source })?;
        parse_json_or_yaml(path, &text)
    }
}

pub(crate) fn parse_json_or_yaml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, SimError> {
    let is_yaml = matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
    let parsed = if is_yaml {
        serde_yaml::from_str(text).map_err(|e| e.to_string())
    } else {
        serde_json::from_str(text).map_err(|e| e.to_string())
    };
    parsed.map_err(|message| SimError::Parse { what: path.display().to_string(), message })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "mode")]
pub enum TlsConfig {
    /// Generate a CA (or reuse the one in `state_dir`) and a serving certificate for `localhost`,
    /// `127.0.0.1`, `::1` and these extra names.
    Generate { extra_hostnames: Vec<String> },
    /// Serve this certificate chain and key (PEM). `ca_file` is what `ca_pem()` returns and what is written
    /// to `state_dir`; defaults to the chain file.
    Files { cert_file: PathBuf, key_file: PathBuf, ca_file: Option<PathBuf> },
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self::Generate { extra_hostnames: Vec::new() }
    }
}

/// A token bucket: `capacity` tokens, `refill_per_sec` tokens back each second.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BucketSpec {
    pub capacity: f64,
    pub refill_per_sec: f64,
}

impl BucketSpec {
    pub const fn new(capacity: f64, refill_per_sec: f64) -> Self {
        Self { capacity, refill_per_sec }
    }

    pub fn scaled(self, factor: f64) -> Self {
        Self { capacity: self.capacity * factor, refill_per_sec: self.refill_per_sec * factor }
    }
}

/// ARM's throttling (docs/azure.md#arm-throttling) and the managed-identity API limits
/// (docs/azure.md#managed-identity-limits).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ThrottleConfig {
    pub enabled: bool,
    /// Per (subscription, principal, kind) buckets.
    pub reads: BucketSpec,
    pub writes: BucketSpec,
    pub deletes: BucketSpec,
    /// Shared by all principals of a subscription: this many times the per-principal bucket.
    pub global_factor: f64,
    /// Per (tenant, principal, kind) for requests not under a subscription (tenant-level role definitions).
    pub tenant_reads: BucketSpec,
    pub tenant_writes: BucketSpec,
    pub tenant_deletes: BucketSpec,
    /// The managed-identity RP's own limits on userAssignedIdentities operations.
    pub msi: MsiLimits,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            reads: BucketSpec::new(250.0, 25.0),
            writes: BucketSpec::new(200.0, 10.0),
            deletes: BucketSpec::new(200.0, 10.0),
            global_factor: 15.0,
            tenant_reads: BucketSpec::new(250.0, 25.0),
            tenant_writes: BucketSpec::new(200.0, 10.0),
            tenant_deletes: BucketSpec::new(200.0, 10.0),
            msi: MsiLimits::default(),
        }
    }
}

impl ThrottleConfig {
    pub fn disabled() -> Self {
        Self { enabled: false, ..Self::default() }
    }
}

/// Rates from docs/azure.md#managed-identity-limits (requests per second). The doc gives rates only, not
/// burst sizes: [UNVERIFIED] we let each bucket hold one second's worth of requests, but at least one
/// request, so 0.25/s per identity means one request and then one every four seconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct MsiLimits {
    pub enabled: bool,
    pub create_or_update: MsiRate,
    pub get: MsiRate,
    pub list: MsiRate,
    pub delete: MsiRate,
    /// How many seconds' worth of requests each bucket holds (at least one request) [UNVERIFIED: the
    /// documentation gives rates only].
    pub burst_seconds: f64,
    /// The least `Retry-After` a 429 of each scope says, in seconds; 0: the time until a token is back.
    pub retry_after: MsiRetryAfter,
}

impl Default for MsiLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            create_or_update: MsiRate { per_tenant: 10.0, per_subscription: 2.0, per_resource: 0.25 },
            get: MsiRate { per_tenant: 30.0, per_subscription: 10.0, per_resource: 0.5 },
            list: MsiRate { per_tenant: 15.0, per_subscription: 5.0, per_resource: 0.25 },
            delete: MsiRate { per_tenant: 10.0, per_subscription: 2.0, per_resource: 0.25 },
            burst_seconds: 1.0,
            retry_after: MsiRetryAfter::default(),
        }
    }
}

impl MsiLimits {
    /// The managed-identity provider as strict as it is believed to be
    /// (docs/azure.md#managed-identity-limits): its one public 429 (a per-identity one) said "Retry after 20
    /// seconds"; no sample of the other scopes is public, so they are taken to say the same.
    pub fn strict() -> Self {
        Self {
            retry_after: MsiRetryAfter {
                per_tenant_secs: 20,
                per_subscription_secs: 20,
                per_resource_secs: 20,
            },
            ..Self::default()
        }
    }
}

/// The least `Retry-After` of a managed-identity 429, by the scope of the limit that refused (seconds; 0: the
/// time until a token is back, the kind default).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct MsiRetryAfter {
    pub per_tenant_secs: u64,
    pub per_subscription_secs: u64,
    pub per_resource_secs: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MsiRate {
    pub per_tenant: f64,
    pub per_subscription: f64,
    pub per_resource: f64,
}

/// Added latency per operation (real time), to model ARM's response times in benchmarks.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct LatencyConfig {
    pub default_ms: u64,
    /// Operation name (e.g. `UserAssignedIdentities_CreateOrUpdate`) → milliseconds.
    pub per_operation_ms: BTreeMap<String, u64>,
}

impl LatencyConfig {
    pub fn for_operation(&self, op: &str) -> Duration {
        Duration::from_millis(self.per_operation_ms.get(op).copied().unwrap_or(self.default_ms))
    }
}

/// ARM behaviours with a time or size parameter.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct BehaviourConfig {
    /// A principal younger than this is unknown to role-assignment writes that do not set `principalType`
    /// (PrincipalNotFound). Measured on the simulator's clock.
    pub principal_replication_delay_ms: u64,
    /// How long a FIC write stays in flight (real time); another FIC write on the same identity during that
    /// window gets 409 ConcurrentFederatedIdentityCredentialsWrites….
    pub fic_write_duration_ms: u64,
    /// A FIC created, or whose issuer, subject or audiences changed, less than this long ago does not match
    /// at token exchange yet (AADSTS70021, as for no FIC at all). Azure takes "a few minutes"
    /// (docs/azure.md#propagation). Measured on the simulator's clock; it applies to FIC writes made while it
    /// is set.
    pub fic_propagation_ms: u64,
    /// A new role assignment takes effect in the Key Vault data plane only this long after it was created,
    /// and a deleted one keeps working for as long (Azure: up to 30 minutes, docs/azure.md#propagation).
    /// Measured on the simulator's clock; it applies to assignment writes made while it is set.
    pub role_propagation_ms: u64,
    /// Azure allows 20 (docs/azure.md#federated-credentials).
    pub max_fics_per_identity: usize,
    /// Page size of list operations (FIC lists also honour `$top`).
    pub page_size: usize,
}

impl Default for BehaviourConfig {
    fn default() -> Self {
        Self {
            // Azure documents the replication delay but no bound for it (docs/azure.md#propagation); 10 s is
            // enough to catch a client that does not send principalType while keeping manual runs pleasant.
            principal_replication_delay_ms: 10_000,
            // Real FIC writes take a second or more and ARM refuses a second one on the same identity
            // meanwhile (docs/azure.md#federated-credentials). 300 ms is long enough that two writes sent
            // together always overlap, even on a loaded 2-core machine, so every client is made to serialise
            // its FIC writes per identity as Azure requires; short enough that a test suite writing FICs one
            // after another barely notices.
            fic_write_duration_ms: 300,
            fic_propagation_ms: 0,
            role_propagation_ms: 0,
            max_fics_per_identity: 20,
            page_size: 100,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct EntraConfig {
    /// Lifetime of access tokens the simulator issues.
    pub token_lifetime_secs: u64,
    /// Extra CA files trusted when fetching an issuer's OIDC discovery document and JWKS (e.g. the local
    /// kube-apiserver's CA). The simulator's own CA is always trusted.
    pub extra_ca_files: Vec<PathBuf>,
    /// Clock skew tolerated on a client assertion's `exp`/`nbf`. Entra tolerates a few minutes; the default 0
    /// keeps expiry tests exact.
    pub assertion_clock_skew_secs: u64,
}

impl Default for EntraConfig {
    fn default() -> Self {
        Self { token_lifetime_secs: 3600, extra_ca_files: Vec::new(), assertion_clock_skew_secs: 0 }
    }
}

/// The Key Vault data plane (`kv`): which host names are vaults, and how lists page.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct KeyVaultConfig {
    /// `<vault>.<dnsSuffix>` is served as that vault's data plane; the first one is the suffix of the
    /// `vaultUri` ARM returns.
    pub clouds: Vec<VaultCloud>,
    /// Items per page when the client does not send `maxresults` (Key Vault: 25, its maximum too;
    /// docs/azure.md#key-vault-data-plane-errors).
    pub page_size: usize,
}

/// One cloud's vault DNS suffix and the authority its bearer challenge names (docs/azure.md#clouds,
/// docs/azure.md#key-vault-data-plane). The resource in the challenge, and the token audience the vault
/// accepts, is `https://<dnsSuffix>`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VaultCloud {
    pub dns_suffix: String,
    pub authority_host: String,
}

impl Default for KeyVaultConfig {
    fn default() -> Self {
        let cloud = |dns_suffix: &str, authority_host: &str| VaultCloud {
            dns_suffix: dns_suffix.to_owned(),
            authority_host: authority_host.to_owned(),
        };
        Self {
            clouds: vec![
                cloud("vault.azure.net", "https://login.microsoftonline.com"),
                cloud("vault.azure.cn", "https://login.chinacloudapi.cn"),
                cloud("vault.usgovcloudapi.net", "https://login.microsoftonline.us"),
            ],
            page_size: 25,
        }
    }
}
