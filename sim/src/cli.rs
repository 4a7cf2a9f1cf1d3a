//! `idbind-sim`: flags → `SimConfig` → `Simulator::start`, then serve until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::{BucketSpec, SimConfig, TlsConfig};
use crate::handle::Simulator;
use crate::harness::faults::FaultRule;
use crate::seed::{
    Seed, SeedRoleAssignment, SeedSecret, parse_app_flag, parse_rg_flag, parse_role_assignment_flag,
    parse_secret_flag, parse_vault_flag,
};

/// Flags of `idbind-sim`. A `--config` file (JSON or YAML, the `SimConfig` shape) sets everything; the flags
/// below override it.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SimArgs {
    /// Configuration file (JSON or YAML; see `SimConfig`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Seed file(s) with subscriptions, resource groups, vaults, apps, principals, role definitions and role
    /// assignments.
    #[arg(long, value_name = "FILE")]
    pub seed: Vec<PathBuf>,
    /// HTTPS listen address (port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    pub https_addr: Option<SocketAddr>,
    /// Plain HTTP listen address, for debugging.
    #[arg(long, value_name = "ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// HTTPS-intercepting CONNECT proxy address (port 0 picks a free one): clients with HTTPS_PROXY set to it
    /// reach the simulator as login.microsoftonline.com, management.azure.com and <vault>.vault.azure.net.
    #[arg(long, value_name = "ADDR")]
    pub proxy_addr: Option<SocketAddr>,
    #[arg(long)]
    pub no_https: bool,
    #[arg(long)]
    pub no_http: bool,
    /// Serve this certificate chain (PEM) instead of generating a CA.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The CA clients should trust for `--tls-cert` (defaults to the chain itself).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Extra DNS name or IP for the generated serving certificate.
    #[arg(long, value_name = "NAME")]
    pub hostname: Vec<String>,
    /// Directory that receives ca.pem, ca-key.pem, endpoint and endpoint.json.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Persist the state to this file (atomically, every acknowledged write).
    #[arg(long, value_name = "FILE")]
    pub state_file: Option<PathBuf>,
    #[arg(long, value_name = "GUID")]
    pub tenant_id: Option<String>,
    /// Seed a subscription.
    #[arg(long, value_name = "ID")]
    pub subscription: Vec<String>,
    /// Seed a resource group: SUBSCRIPTION/NAME[@LOCATION].
    #[arg(long, value_name = "SUB/RG[@LOC]")]
    pub resource_group: Vec<String>,
    /// Seed a vault: SUBSCRIPTION/RG/NAME[@rbac|@policies].
    #[arg(long, value_name = "SUB/RG/NAME[@MODE]")]
    pub vault: Vec<String>,
    /// Seed a resource by its id, e.g.
    /// /subscriptions/S/resourceGroups/RG/providers/Microsoft.Storage/storageAccounts/NAME[@LOCATION]
    /// (Storage accounts, Service Bus and Event Hubs namespaces, container registries, App Configuration
    /// stores; a Key Vault id seeds an RBAC vault). Its subscription and resource group are created too.
    #[arg(long, value_name = "ID[@LOC]")]
    pub resource: Vec<String>,
    /// Seed an app that gets tokens with a secret: CLIENT_ID:SECRET[:OBJECT_ID].
    #[arg(long, value_name = "ID:SECRET[:OID]")]
    pub app: Vec<String>,
    /// Seed a role assignment: OBJECT_ID=ROLE@SCOPE, the role by name or GUID (e.g.
    /// `2222…=Owner@/subscriptions/S`). What any principal may do in ARM comes from its role assignments
    /// only; one with a condition goes in a seed file (`roleAssignments`).
    #[arg(long, value_name = "OID=ROLE@SCOPE", value_parser = parse_role_assignment_flag)]
    pub role_assignment: Vec<SeedRoleAssignment>,
    /// Seed a Key Vault secret: VAULT/NAME=VALUE (the vault must be seeded too).
    #[arg(long, value_name = "VAULT/NAME=VALUE", value_parser = parse_secret_flag)]
    pub secret: Vec<SeedSecret>,
    /// Extra CA file trusted for OIDC discovery of client-assertion issuers.
    #[arg(long, value_name = "FILE")]
    pub trust_ca: Vec<PathBuf>,
    /// Turn ARM and managed-identity throttling off.
    #[arg(long)]
    pub no_throttle: bool,
    /// Turn only the managed-identity RP limits off.
    #[arg(long)]
    pub no_msi_limits: bool,
    /// Per-principal read bucket, CAPACITY:REFILL_PER_SEC (ARM: 250:25).
    #[arg(long, value_name = "CAP:RATE", value_parser = parse_bucket)]
    pub read_bucket: Option<BucketSpec>,
    /// Per-principal write bucket (ARM: 200:10).
    #[arg(long, value_name = "CAP:RATE", value_parser = parse_bucket)]
    pub write_bucket: Option<BucketSpec>,
    /// Per-principal delete bucket (ARM: 200:10).
    #[arg(long, value_name = "CAP:RATE", value_parser = parse_bucket)]
    pub delete_bucket: Option<BucketSpec>,
    /// Global bucket size as a multiple of the per-principal one (ARM: 15).
    #[arg(long, value_name = "N")]
    pub global_factor: Option<f64>,
    /// Added latency for every operation, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub latency_ms: Option<u64>,
    /// A fault rule as JSON, e.g. '{"operation":"*","kind":"error","status":503,"rate":0.1}'.
    #[arg(long, value_name = "JSON", value_parser = parse_fault)]
    pub fault: Vec<FaultRule>,
    #[arg(long, value_name = "SECS")]
    pub token_lifetime_secs: Option<u64>,
    #[arg(long, value_name = "MS")]
    pub principal_replication_delay_ms: Option<u64>,
    /// How long a FIC write is in flight (default 300); another FIC write on the identity meanwhile gets 409.
    #[arg(long, value_name = "MS")]
    pub fic_write_duration_ms: Option<u64>,
    /// A new or changed FIC matches at token exchange only this long after the write (default 0).
    #[arg(long, value_name = "MS")]
    pub fic_propagation_ms: Option<u64>,
    /// A role assignment takes effect (and a deleted one stops) in Key Vault this long after (default 0).
    #[arg(long, value_name = "MS")]
    pub role_propagation_ms: Option<u64>,
    #[arg(long, value_name = "N")]
    pub max_fics_per_identity: Option<usize>,
    #[arg(long, value_name = "N")]
    pub page_size: Option<usize>,
    /// Let ARM requests without a bearer token through as a fixed principal (curl debugging).
    #[arg(long)]
    pub allow_anonymous: bool,
}

fn parse_bucket(s: &str) -> Result<BucketSpec, String> {
    let (cap, rate) =
        s.split_once(':').ok_or_else(|| format!("expected CAPACITY:REFILL_PER_SEC, got '{s}'"))?;
    let cap: f64 = cap.parse().map_err(|e| format!("capacity '{cap}': {e}"))?;
    let rate: f64 = rate.parse().map_err(|e| format!("refill '{rate}': {e}"))?;
    if cap < 1.0 || rate < 0.0 {
        return Err(String::from("capacity must be at least 1 and refill non-negative"));
    }
    Ok(BucketSpec::new(cap, rate))
}

fn parse_fault(s: &str) -> Result<FaultRule, String> {
    serde_json::from_str(s).map_err(|e| format!("invalid fault rule '{s}': {e}"))
}

impl SimArgs {
    /// The configuration these flags describe.
    pub fn to_config(&self) -> anyhow::Result<SimConfig> {
        let mut cfg = match &self.config {
            Some(p) => SimConfig::from_file(p)?,
            None => SimConfig::default(),
        };
        for p in &self.seed {
            cfg.seed.extend(Seed::from_file(p)?);
        }
        if let Some(a) = self.https_addr {
            cfg.https_addr = Some(a);
        }
        if let Some(a) = self.http_addr {
            cfg.http_addr = Some(a);
        }
        if let Some(a) = self.proxy_addr {
            cfg.proxy_addr = Some(a);
        }
        if self.no_https {
            cfg.https_addr = None;
        }
        if self.no_http {
            cfg.http_addr = None;
        }
        if let (Some(cert_file), Some(key_file)) = (&self.tls_cert, &self.tls_key) {
            cfg.tls = TlsConfig::Files {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
                ca_file: self.tls_ca.clone(),
            };
        } else if !self.hostname.is_empty() {
            cfg.tls = TlsConfig::Generate { extra_hostnames: self.hostname.clone() };
        }
        if self.state_dir.is_some() {
            cfg.state_dir = self.state_dir.clone();
        }
        if self.state_file.is_some() {
            cfg.state_file = self.state_file.clone();
        }
        if let Some(t) = &self.tenant_id {
            cfg.tenant_id = t.clone();
        }
        let mut flags = Seed::default();
        for s in &self.subscription {
            flags.subscription_mut(s);
        }
        for s in &self.resource_group {
            let (sub, rg, loc) = parse_rg_flag(s).map_err(anyhow::Error::msg)?;
            flags.add_rg(&sub, &rg, loc);
        }
        for s in &self.vault {
            let (sub, rg, name, rbac) = parse_vault_flag(s).map_err(anyhow::Error::msg)?;
            flags.add_vault(&sub, &rg, &name, rbac);
        }
        for s in &self.resource {
            flags.add_resource_id(s).map_err(anyhow::Error::msg)?;
        }
        for s in &self.app {
            flags.apps.push(parse_app_flag(s).map_err(anyhow::Error::msg)?);
        }
        flags.secrets.extend(self.secret.iter().cloned());
        flags.role_assignments.extend(self.role_assignment.iter().cloned());
        cfg.seed.extend(flags);
        let vaults: Vec<String> = cfg.seed.vault_names().iter().map(|v| v.to_ascii_lowercase()).collect();
        if let Some(s) = cfg.seed.secrets.iter().find(|s| !vaults.contains(&s.vault.to_ascii_lowercase())) {
            anyhow::bail!("the secret '{}' is for the vault '{}', which is not seeded", s.name, s.vault);
        }
        cfg.entra.extra_ca_files.extend(self.trust_ca.iter().cloned());
        if self.no_throttle {
            cfg.throttle.enabled = false;
        }
        if self.no_msi_limits {
            cfg.throttle.msi.enabled = false;
        }
        if let Some(b) = self.read_bucket {
            cfg.throttle.reads = b;
        }
        if let Some(b) = self.write_bucket {
            cfg.throttle.writes = b;
        }
        if let Some(b) = self.delete_bucket {
            cfg.throttle.deletes = b;
        }
        if let Some(f) = self.global_factor {
            cfg.throttle.global_factor = f;
        }
        if let Some(ms) = self.latency_ms {
            cfg.latency.default_ms = ms;
        }
        cfg.faults.extend(self.fault.iter().cloned());
        if let Some(v) = self.token_lifetime_secs {
            cfg.entra.token_lifetime_secs = v;
        }
        if let Some(v) = self.principal_replication_delay_ms {
            cfg.behaviour.principal_replication_delay_ms = v;
        }
        if let Some(v) = self.fic_write_duration_ms {
            cfg.behaviour.fic_write_duration_ms = v;
        }
        if let Some(v) = self.fic_propagation_ms {
            cfg.behaviour.fic_propagation_ms = v;
        }
        if let Some(v) = self.role_propagation_ms {
            cfg.behaviour.role_propagation_ms = v;
        }
        if let Some(v) = self.max_fics_per_identity {
            cfg.behaviour.max_fics_per_identity = v;
        }
        if let Some(v) = self.page_size {
            cfg.behaviour.page_size = v.max(1);
        }
        if self.allow_anonymous {
            cfg.allow_anonymous = true;
        }
        cfg.seed.validate()?;
        Ok(cfg)
    }
}

/// Runs the simulator until SIGINT/SIGTERM. Prints one JSON line with its URLs on stdout once it is ready
/// (launchers can wait for it instead of polling).
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let config = args.to_config()?;
    let ca_file = config.state_dir.as_ref().map(|d| d.join("ca.pem"));
    let handle = Simulator::start(config).await?;
    println!("{}", handle.endpoint_json(ca_file.as_deref()));
    wait_for_signal().await?;
    tracing::info!("shutting down the ARM simulator");
    handle.shutdown().await?;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimArgs,
    }

    #[test]
    fn flags_become_config() -> anyhow::Result<()> {
        let cli = Cli::try_parse_from([
            "sim",
            "--no-http",
            "--resource-group",
            "s1/rg1@eastus",
            "--vault",
            "s1/rg1/kv@policies",
            "--app",
            "c:s",
            "--write-bucket",
            "5:1",
            "--no-msi-limits",
            "--fault",
            r#"{"operation":"Token","kind":"error","status":500}"#,
            "--token-lifetime-secs",
            "5",
            "--page-size",
            "0",
            "--proxy-addr",
            "127.0.0.1:0",
            "--secret",
            "kv/db-password=a=b",
            "--fic-propagation-ms",
            "5000",
            "--role-propagation-ms",
            "7000",
            "--resource",
            "/subscriptions/s1/resourceGroups/rg2/providers/Microsoft.ServiceBus/namespaces/sb-orders@eastus",
        ])?;
        let cfg = cli.args.to_config()?;
        assert!(cfg.http_addr.is_none() && cfg.https_addr.is_some());
        assert_eq!(cfg.throttle.writes, BucketSpec::new(5.0, 1.0));
        assert!(cfg.throttle.enabled && !cfg.throttle.msi.enabled);
        assert_eq!(cfg.faults.len(), 1);
        assert_eq!(cfg.entra.token_lifetime_secs, 5);
        assert_eq!(cfg.behaviour.page_size, 1);
        assert_eq!(
            cfg.seed.subscriptions[0].resource_groups[0].vaults[0].enable_rbac_authorization,
            Some(false)
        );
        assert_eq!(cfg.seed.apps[0].client_id, "c");
        assert!(cfg.proxy_addr.is_some());
        assert_eq!(
            (cfg.seed.secrets[0].name.as_str(), cfg.seed.secrets[0].value.as_str()),
            ("db-password", "a=b")
        );
        assert_eq!((cfg.behaviour.fic_propagation_ms, cfg.behaviour.role_propagation_ms), (5000, 7000));
        assert_eq!(cfg.behaviour.fic_write_duration_ms, 300);
        let rg2 = &cfg.seed.subscriptions[0].resource_groups[1];
        assert_eq!(
            (
                rg2.name.as_str(),
                rg2.resources[0].resource_type.as_str(),
                rg2.resources[0].location.as_deref()
            ),
            ("rg2", "Microsoft.ServiceBus/namespaces", Some("eastus"))
        );
        let unknown = Cli::try_parse_from([
            "sim",
            "--resource",
            "/subscriptions/s/resourceGroups/r/providers/Microsoft.Web/sites/app",
        ])?;
        assert!(unknown.args.to_config().is_err(), "a type the simulator does not serve is refused");
        assert!(Cli::try_parse_from(["sim", "--write-bucket", "x"]).is_err());
        // A secret for a vault nobody seeded is refused, not silently dropped.
        let orphan = Cli::try_parse_from(["sim", "--secret", "nowhere/x=1"])?;
        assert!(orphan.args.to_config().is_err());
        Ok(())
    }
}
