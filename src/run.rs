//! `idbind run`: flags and environment → settings, Azure client, credential → the controller.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};

use crate::{
    azure::{
        arm::{ArmApi, Cloud, client_secret_credential, http_client_with_ca_file},
        workload_identity::FileFederatedCredential,
    },
    controller::{self, Context},
    validate::{OperatorSettings, Policy},
};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CloudName {
    AzurePublicCloud,
    AzureChinaCloud,
    #[value(name = "AzureUSGovernment")]
    AzureUsGovernment,
    /// Explicit endpoints (--arm-endpoint, --authority-host, --arm-audience), e.g. the simulator.
    Custom,
}

/// Flags of `idbind run`; each also reads the environment variable named in `--help`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Name of this cluster, recorded in ownership tags and part of derived Azure names.
    #[arg(long, env = "IDBIND_CLUSTER_NAME")]
    pub cluster_name: String,
    /// The cluster's OIDC issuer URL, used verbatim in every federated credential (never taken
    /// from a binding). On AKS: `az aks show --query oidcIssuerProfile.issuerUrl`.
    #[arg(long, env = "IDBIND_OIDC_ISSUER")]
    pub oidc_issuer: String,
    /// Subscription where identities are created.
    #[arg(long, env = "AZURE_SUBSCRIPTION_ID")]
    pub subscription_id: String,
    /// Entra tenant of the operator's own credential.
    #[arg(long, env = "AZURE_TENANT_ID")]
    pub tenant_id: String,
    /// Default resource group for identities (a binding may name another).
    #[arg(long, env = "IDBIND_RESOURCE_GROUP")]
    pub resource_group: Option<String>,
    /// Default location for identities, e.g. westeurope.
    #[arg(long, env = "IDBIND_LOCATION")]
    pub location: Option<String>,
    /// Azure cloud.
    #[arg(long, env = "IDBIND_CLOUD", value_enum, default_value = "azure-public-cloud")]
    pub cloud: CloudName,
    #[arg(long, env = "IDBIND_ARM_ENDPOINT", required_if_eq("cloud", "custom"))]
    pub arm_endpoint: Option<String>,
    #[arg(long, env = "IDBIND_AUTHORITY_HOST", required_if_eq("cloud", "custom"))]
    pub authority_host: Option<String>,
    #[arg(long, env = "IDBIND_ARM_AUDIENCE", default_value = "https://management.azure.com")]
    pub arm_audience: String,
    /// Extra CA certificate (PEM) trusted for ARM and Entra (e.g. the simulator's).
    #[arg(long, env = "IDBIND_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Client id of the operator's identity (workload identity or client secret).
    #[arg(long, env = "AZURE_CLIENT_ID")]
    pub client_id: String,
    /// Client secret (for local development); without it the federated token file is used.
    #[arg(long, env = "AZURE_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// Projected ServiceAccount token for workload identity (re-read for every exchange).
    #[arg(long, env = "AZURE_FEDERATED_TOKEN_FILE")]
    pub federated_token_file: Option<PathBuf>,
    /// Bindings reconciled in parallel.
    #[arg(long, env = "IDBIND_CONCURRENCY", default_value_t = 8)]
    pub concurrency: u16,
    /// Seconds between drift checks of a Ready binding (jittered by up to 10%).
    #[arg(long, env = "IDBIND_RESYNC_SECONDS", default_value_t = 600)]
    pub resync_seconds: u64,
    /// Watch only this namespace.
    #[arg(long, env = "IDBIND_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Policy: allow any role, not only the Key Vault data-plane reader roles.
    #[arg(long, env = "IDBIND_ALLOW_ANY_ROLE")]
    pub allow_any_role: bool,
    /// Policy: allow vaults and brought identities in other subscriptions.
    #[arg(long, env = "IDBIND_ALLOW_OTHER_SUBSCRIPTIONS")]
    pub allow_other_subscriptions: bool,
    /// Policy: allow bindings to bring an existing identity (spec.identity.resourceId).
    #[arg(long, env = "IDBIND_ALLOW_EXISTING_IDENTITY")]
    pub allow_existing_identity: bool,
}

impl RunArgs {
    fn cloud(&self) -> Cloud {
        match self.cloud {
            CloudName::AzurePublicCloud => Cloud::AzurePublicCloud,
            CloudName::AzureChinaCloud => Cloud::AzureChinaCloud,
            CloudName::AzureUsGovernment => Cloud::AzureUSGovernment,
            CloudName::Custom => Cloud::Custom {
                arm_endpoint: self.arm_endpoint.clone().unwrap_or_default(),
                authority_host: self.authority_host.clone().unwrap_or_default(),
                audience: self.arm_audience.clone(),
            },
        }
    }
}

/// Runs the controller until SIGTERM/SIGINT.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    if !args.oidc_issuer.starts_with("https://") {
        bail!("--oidc-issuer must be an https URL (it is compared verbatim by Entra), got {:?}", args.oidc_issuer);
    }
    let cloud = args.cloud();
    let http = http_client_with_ca_file(args.ca_file.as_deref()).context("building the HTTP client")?;
    let credential: Arc<dyn azure_core::auth::TokenCredential> = match (&args.client_secret, &args.federated_token_file) {
        (Some(secret), _) => client_secret_credential(&cloud, http.clone(), &args.tenant_id, &args.client_id, secret)?,
        (None, Some(file)) => Arc::new(FileFederatedCredential::new(&cloud, http.clone(), &args.tenant_id, &args.client_id, file.clone())?),
        (None, None) => bail!("no Azure credential: set AZURE_FEDERATED_TOKEN_FILE (workload identity) or AZURE_CLIENT_SECRET"),
    };
    let azure = Arc::new(ArmApi::new(&cloud, http, credential)?);
    let client = kube::Client::try_default().await.context("connecting to Kubernetes")?;
    let settings = OperatorSettings {
        cluster_name: args.cluster_name.clone(),
        subscription_id: args.subscription_id.clone(),
        default_resource_group: args.resource_group.clone(),
        default_location: args.location.clone(),
        issuer: args.oidc_issuer.clone(),
    };
    let policy = Policy { allow_any_role: args.allow_any_role, allow_other_subscriptions: args.allow_other_subscriptions, allow_existing_identity: args.allow_existing_identity };
    let ctx = Arc::new(Context::new(client, azure, settings, policy, Duration::from_secs(args.resync_seconds)));
    tracing::info!(cluster = %args.cluster_name, subscription = %args.subscription_id, "idbind controller starting");
    controller::run(ctx, args.concurrency, args.watch_namespace.as_deref()).await;
    Ok(())
}
