//! `idbind run`: flags and environment → settings, Azure client, credential → the controller.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::{
    azure::{
        arm::{ArmApi, Cloud, client_secret_credential, http_client_with_ca_file},
        budget::{Limits, SharedBudget},
        governed::{ArmObserver, Governed},
        workload_identity::FileFederatedCredential,
    },
    core::{
        proof::Verification,
        settings::{Ceiling, OperatorSettings},
    },
    reconcile::{self, CacheWriters, Context, verify::Verifier},
    runtime::{
        controller,
        health::{self, Health},
        leader::{LeaderConfig, LeaderElector},
    },
    telemetry::Metrics,
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

/// How idbind signs in to Azure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CredentialKind {
    /// The first that the environment provides: a client secret, then a federated token file (workload
    /// identity), then the Azure CLI when `az` is on PATH, then managed identity.
    Auto,
    /// AZURE_FEDERATED_TOKEN_FILE (what the azure-workload-identity webhook injects), re-read for every
    /// exchange because the kubelet rotates it.
    WorkloadIdentity,
    /// AZURE_CLIENT_SECRET, for local development.
    ClientSecret,
    /// The VM's or node's system-assigned managed identity through IMDS (the Azure SDK 0.21 does not expose
    /// user-assigned selection; use workload identity for that).
    ManagedIdentity,
    /// `az account get-access-token`, for local development.
    AzureCli,
}

/// Flags of `idbind run`; each also reads the environment variable named in `--help`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Name of this cluster, recorded in ownership tags and part of derived Azure names.
    #[arg(long, env = "IDBIND_CLUSTER_NAME")]
    pub cluster_name: String,
    /// The cluster's OIDC issuer URL, used verbatim in every federated credential (never taken from a
    /// binding). On AKS: `az aks show --query oidcIssuerProfile.issuerUrl`.
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
    /// ARM's endpoint for `--cloud custom` (an Azure Stack Hub, a sovereign cloud not listed, the simulator),
    /// e.g. https://management.local.azurestack.external.
    #[arg(long, env = "IDBIND_ARM_ENDPOINT", required_if_eq("cloud", "custom"))]
    pub arm_endpoint: Option<String>,
    /// Entra's authority host for `--cloud custom`, e.g. https://login.microsoftonline.com/.
    #[arg(long, env = "IDBIND_AUTHORITY_HOST", required_if_eq("cloud", "custom"))]
    pub authority_host: Option<String>,
    /// The audience of ARM tokens for `--cloud custom` (the other clouds know theirs).
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
    /// Which credential to use.
    #[arg(long, env = "IDBIND_CREDENTIAL", value_enum, default_value = "auto")]
    pub credential: CredentialKind,
    /// Multiplies the client-side ARM request budget (ARM's documented public-cloud limits: writes 200
    /// burst + 10/s, the managed-identity API's 2/s per subscription and 1 per 4 s per identity, ...). 0
    /// turns the budget off.
    #[arg(long, env = "IDBIND_BUDGET_SCALE", default_value_t = 1.0)]
    pub budget_scale: f64,
    /// Bindings reconciled in parallel.
    #[arg(long, env = "IDBIND_CONCURRENCY", default_value_t = 8)]
    pub concurrency: u16,
    /// Seconds between drift checks of a Ready binding (jittered by up to 10%).
    #[arg(long, env = "IDBIND_RESYNC_SECONDS", default_value_t = 600)]
    pub resync_seconds: u64,
    /// A binding's federated credentials are read on every Nth resync (other drift: every resync). Azure has
    /// no list of FICs across identities, so this read is per binding: 2 keeps steady state under one ARM
    /// read per binding per resync; 1 reads on every one.
    #[arg(long, env = "IDBIND_FEDERATION_CHECK_RESYNCS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub federation_check_resyncs: u32,
    /// Watch only this namespace.
    #[arg(long, env = "IDBIND_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Ceiling: allow any role, not only the Key Vault data-plane reader roles.
    #[arg(long, env = "IDBIND_ALLOW_ANY_ROLE")]
    pub allow_any_role: bool,
    /// Ceiling: allow vaults and brought identities in other subscriptions.
    #[arg(long, env = "IDBIND_ALLOW_OTHER_SUBSCRIPTIONS")]
    pub allow_other_subscriptions: bool,
    /// Ceiling: allow bindings to bring an existing identity (spec.identity.resourceId).
    #[arg(long, env = "IDBIND_ALLOW_EXISTING_IDENTITY")]
    pub allow_existing_identity: bool,
    /// Ceiling: namespaces that no WorkloadIdentityPolicy selects may bind, with the data-plane reader roles,
    /// every vault and data resource the operator can reach: every namespace editor can then read every
    /// team's secrets. Off (the default), such a namespace binds nothing. For single-team clusters only.
    #[arg(long, env = "IDBIND_OPEN_NAMESPACES")]
    pub open_namespaces: bool,
    /// Namespaces used to be open unless this was true; they are closed now unless --open-namespaces says
    /// otherwise. Read only to say so at start.
    #[arg(long = "require-policy", env = "IDBIND_REQUIRE_POLICY", hide = true)]
    pub legacy_require_policy: Option<bool>,
    /// Address of the HTTP server for /healthz, /readyz and /metrics.
    #[arg(long, env = "IDBIND_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: String,
    /// Elect a leader among replicas on a Lease: only the leader reconciles.
    #[arg(long, env = "IDBIND_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Namespace of the leader Lease: the operator's own (the Downward API's metadata.namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "idbind-system")]
    pub lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, env = "IDBIND_LEASE_NAME", default_value = "idbind-leader")]
    pub lease_name: String,
    /// This replica's identity in the Lease (the Downward API's metadata.name); the host name when unset.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// The operator's own ServiceAccount in the Lease's namespace (the Downward API's
    /// spec.serviceAccountName): no binding may annotate it, whatever a policy says.
    #[arg(long, env = "POD_SERVICE_ACCOUNT", default_value = "idbind")]
    pub pod_service_account: String,
    /// Prove each binding before it is Ready: `federation` exchanges the bound ServiceAccount's token at
    /// Entra for the identity; `access` also lists one item of each vault with the token Entra gives (never a
    /// value). Needs `serviceaccounts/token`, which config/components/verification grants for the exchange
    /// audience only.
    #[arg(long, env = "IDBIND_VERIFY", value_enum, default_value = "off")]
    pub verify: VerifyMode,
    /// How long after a change Entra's AADSTS70021 (no matching federated credential) counts as propagation
    /// (Azure documents "a few minutes"); after it the binding stalls with FederationMismatch.
    #[arg(long, env = "IDBIND_VERIFY_FEDERATION_WINDOW_SECONDS", default_value_t = 300)]
    pub verify_federation_window_seconds: u64,
    /// How long after a change a Key Vault denial counts as propagation (Azure documents up to 30 minutes for
    /// role assignments); after it the binding stalls with AccessDenied.
    #[arg(long, env = "IDBIND_VERIFY_ACCESS_WINDOW_SECONDS", default_value_t = 900)]
    pub verify_access_window_seconds: u64,
    /// Key Vault's token audience; by default the cloud's (https://vault.azure.net for the public cloud and
    /// --cloud custom).
    #[arg(long, env = "IDBIND_KEYVAULT_AUDIENCE")]
    pub keyvault_audience: Option<String>,
    /// Log format: JSON lines for log pipelines, or text for a terminal.
    #[arg(long, env = "IDBIND_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
}

/// What `--verify` proves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VerifyMode {
    Off,
    Federation,
    Access,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
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

/// The credential `args` ask for, or the first the environment provides.
fn credential(
    args: &RunArgs,
    cloud: &Cloud,
    http: Arc<dyn azure_core::HttpClient>,
) -> anyhow::Result<Arc<dyn azure_core::auth::TokenCredential>> {
    let kind = match args.credential {
        CredentialKind::Auto if args.client_secret.is_some() => CredentialKind::ClientSecret,
        CredentialKind::Auto if args.federated_token_file.is_some() => CredentialKind::WorkloadIdentity,
        CredentialKind::Auto if on_path("az") => CredentialKind::AzureCli,
        CredentialKind::Auto => CredentialKind::ManagedIdentity,
        chosen => chosen,
    };
    tracing::info!(credential = ?kind, "Azure credential");
    Ok(match kind {
        CredentialKind::ClientSecret => {
            let secret = args
                .client_secret
                .as_deref()
                .context("--credential client-secret needs AZURE_CLIENT_SECRET")?;
            client_secret_credential(cloud, http, &args.tenant_id, &args.client_id, secret)?
        }
        CredentialKind::WorkloadIdentity => {
            let file = args
                .federated_token_file
                .clone()
                .context("--credential workload-identity needs AZURE_FEDERATED_TOKEN_FILE")?;
            Arc::new(FileFederatedCredential::new(cloud, http, &args.tenant_id, &args.client_id, file)?)
        }
        CredentialKind::ManagedIdentity => {
            Arc::new(azure_identity::VirtualMachineManagedIdentityCredential::new(
                azure_identity::TokenCredentialOptions::default(),
            ))
        }
        CredentialKind::AzureCli => Arc::new(azure_identity::AzureCliCredential::new()),
        CredentialKind::Auto => bail!("no credential chosen"),
    })
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// The verifier `--verify` asks for, if any.
fn verifier(args: &RunArgs) -> anyhow::Result<Option<Verifier>> {
    let verification = Verification {
        federation: args.verify != VerifyMode::Off,
        access: args.verify == VerifyMode::Access,
        federation_window: Duration::from_secs(args.verify_federation_window_seconds),
        access_window: Duration::from_secs(args.verify_access_window_seconds),
    };
    if !verification.enabled() {
        return Ok(None);
    }
    let cloud = args.cloud();
    let authority_host = azure_core::Url::parse(cloud.authority_host())
        .with_context(|| format!("authority host {:?}", cloud.authority_host()))?;
    let vault_audience = args.keyvault_audience.as_deref().unwrap_or(cloud.keyvault_audience());
    Ok(Some(Verifier {
        verification,
        http: http_client_with_ca_file(args.ca_file.as_deref()).context("building the HTTP client")?,
        authority_host,
        arm_scope: cloud.scope(),
        vault_scope: format!("{}/.default", vault_audience.trim_end_matches('/')),
    }))
}

/// The settings, the ceiling and the governed Azure layer that `args` describe.
fn azure_and_settings(
    args: &RunArgs,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<(Arc<Governed>, OperatorSettings, Ceiling)> {
    let (settings, ceiling) = settings_and_ceiling(args)?;
    Ok((governed_azure(args, metrics)?, settings, ceiling))
}

/// The settings that shape a binding's Azure objects and the ceiling, as `args` say; no credential needed.
pub fn settings_and_ceiling(args: &RunArgs) -> anyhow::Result<(OperatorSettings, Ceiling)> {
    if !args.oidc_issuer.starts_with("https://") {
        bail!(
            "--oidc-issuer must be an https URL (it is compared verbatim by Entra), got {:?}",
            args.oidc_issuer
        );
    }
    let settings = OperatorSettings {
        cluster_name: args.cluster_name.clone(),
        subscription_id: args.subscription_id.clone(),
        default_resource_group: args.resource_group.clone(),
        default_location: args.location.clone(),
        issuer: args.oidc_issuer.clone(),
        operator_client_id: Some(args.client_id.clone()),
        operator_service_account: Some((args.lease_namespace.clone(), args.pod_service_account.clone())),
    };
    let ceiling = Ceiling {
        allow_any_role: args.allow_any_role,
        allow_other_subscriptions: args.allow_other_subscriptions,
        allow_existing_identity: args.allow_existing_identity,
        open_namespaces: args.open_namespaces,
    };
    Ok((settings, ceiling))
}

/// Says at start who may bind what without a policy: an open cluster is a choice an administrator should see
/// in the log, and so is a setting that no longer means what it did.
fn announce_tenancy(args: &RunArgs) {
    if args.open_namespaces {
        tracing::warn!(
            "IDBIND_OPEN_NAMESPACES is on: namespaces no WorkloadIdentityPolicy selects may bind every vault and \
             data resource idbind can reach with the data-plane reader roles, so every namespace editor can read \
             every team's secrets; for single-team clusters only"
        );
    } else {
        tracing::info!(
            "namespaces no WorkloadIdentityPolicy selects bind nothing (IDBIND_OPEN_NAMESPACES is off)"
        );
    }
    match args.legacy_require_policy {
        Some(false) if !args.open_namespaces => tracing::warn!(
            "IDBIND_REQUIRE_POLICY=false no longer opens namespaces: namespaces no WorkloadIdentityPolicy \
             selects bind nothing, and their bindings report PolicyViolation with nothing removed from Azure; \
             write policies for them, or set IDBIND_OPEN_NAMESPACES=true to keep the old behaviour"
        ),
        Some(_) => tracing::warn!(
            "IDBIND_REQUIRE_POLICY is no longer read: remove it (IDBIND_OPEN_NAMESPACES decides)"
        ),
        None => {}
    }
}

/// The ARM client behind the request budget, signed in with the credential `args` choose.
pub fn governed_azure(args: &RunArgs, metrics: &Arc<Metrics>) -> anyhow::Result<Arc<Governed>> {
    if !(args.budget_scale >= 0.0 && args.budget_scale.is_finite()) {
        bail!("--budget-scale must be a number >= 0, got {}", args.budget_scale);
    }
    let cloud = args.cloud();
    let http = http_client_with_ca_file(args.ca_file.as_deref()).context("building the HTTP client")?;
    let credential = credential(args, &cloud, http.clone())?;
    let budget =
        (args.budget_scale > 0.0).then(|| SharedBudget::new(Limits::default().scaled(args.budget_scale)));
    Ok(Arc::new(Governed::new(
        Arc::new(ArmApi::new(&cloud, http, credential)?),
        budget,
        Some(metrics.clone() as Arc<dyn ArmObserver>),
    )))
}

/// The API server's client, from the pod's ServiceAccount or the kubeconfig, always connected directly. kube
/// takes `HTTPS_PROXY` from the environment for a kubeconfig (never in a pod), and without its proxy feature
/// then refuses to start; but that variable, as AKS's HTTP proxy feature injects it into every pod, is for
/// the way out to Azure (which the Azure client takes, with `NO_PROXY`), not for the API server.
async fn kube_client() -> anyhow::Result<kube::Client> {
    let config = kube::Config::infer().await.context("reading the Kubernetes configuration")?;
    direct_client(config).context("connecting to Kubernetes")
}

/// A client of `config`'s API server that never goes through `HTTPS_PROXY` (see [`kube_client`]).
pub fn direct_client(mut config: kube::Config) -> Result<kube::Client, kube::Error> {
    config.proxy_url = None;
    kube::Client::try_from(config)
}

/// Runs the controller until SIGTERM/SIGINT.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let (azure, settings, ceiling) = azure_and_settings(&args, &metrics)?;
    let client = kube_client().await?;
    let budget = azure.budget().cloned();
    if let Some(budget) = &budget {
        metrics.watch_budget(budget.clone());
    }
    let (caches, writers) = reconcile::caches();
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            azure,
            settings,
            ceiling,
            Duration::from_secs(args.resync_seconds),
            caches,
        )
        .with_metrics(metrics.clone())
        .with_verifier(verifier(&args)?)
        .with_budget(budget)
        .with_federation_check(args.federation_check_resyncs),
    );

    let health = Health::default();
    let stop_http = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind(&args.http_addr)
        .await
        .with_context(|| format!("binding the HTTP server to {}", args.http_addr))?;
    tracing::info!(addr = %listener.local_addr()?, "serving /healthz, /readyz, /metrics");
    let server = tokio::spawn(health::serve(
        listener,
        health.clone(),
        metrics.clone(),
        stop_http.clone().cancelled_owned(),
    ));
    tracing::info!(cluster = %args.cluster_name, subscription = %args.subscription_id, "idbind controller starting");
    announce_tenancy(&args);

    let outcome = if args.leader_elect {
        lead_then_run(&args, client, ctx, writers, &health, &metrics).await
    } else {
        run_controller(&args, ctx, writers, &health, futures::future::pending()).await
    };
    stop_http.cancel();
    if let Ok(Err(e)) = server.await {
        tracing::warn!(error = %e, "HTTP server");
    }
    tracing::info!("idbind stopped");
    outcome
}

/// The controller, ready once its caches hold a full list.
async fn run_controller(
    args: &RunArgs,
    ctx: Arc<Context>,
    writers: CacheWriters,
    health: &Health,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let ready = health.clone();
    controller::run_until(
        ctx,
        writers,
        args.concurrency,
        args.watch_namespace.as_deref(),
        move || ready.set_ready(true),
        stop,
    )
    .await;
    Ok(())
}

/// Campaigns for the Lease; a standby is ready (it is healthy and can take over), the leader runs the
/// controller. Losing the Lease stops the controller and ends the process with an error, so it restarts with
/// fresh state (client-go's convention); SIGTERM stops the controller, letting reconciles in flight finish,
/// then releases the Lease for a standby.
async fn lead_then_run(
    args: &RunArgs,
    client: kube::Client,
    ctx: Arc<Context>,
    writers: CacheWriters,
    health: &Health,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<()> {
    let identity = match &args.pod_name {
        Some(name) => name.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| format!("idbind-{}", std::process::id())),
    };
    let election =
        LeaderElector::new(client, LeaderConfig::new(&args.lease_namespace, &args.lease_name, identity))?
            .with_metrics(metrics.clone())
            .spawn();
    health.set_ready(true);
    let mut leading = election.subscribe();
    tokio::select! {
        became = leading.wait_for(|l| *l) => { became.context("the leader election ended")?; }
        () = terminated() => {
            election.stop().await?;
            return Ok(());
        }
    }
    tracing::info!("leading: starting the controller");
    health.set_ready(false);
    let lost = CancellationToken::new();
    let watcher = {
        let lost = lost.clone();
        let mut leading = election.subscribe();
        tokio::spawn(async move {
            if leading.wait_for(|l| !*l).await.is_ok() {
                lost.cancel();
            }
        })
    };
    run_controller(args, ctx, writers, health, lost.clone().cancelled_owned()).await?;
    watcher.abort();
    let was_lost = lost.is_cancelled();
    election.stop().await?;
    if was_lost {
        bail!("lost the leader Lease; exiting so that a restart begins with fresh state");
    }
    Ok(())
}

/// SIGTERM or SIGINT.
async fn terminated() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops a standby");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use clap::Args;

    use super::RunArgs;
    use crate::runtime::preview::PlanArgs;

    /// `idbind run --help` and `idbind plan --help` are the reference a user reaches first: no flag without a
    /// description.
    #[test]
    fn every_flag_of_run_and_plan_says_what_it_sets() {
        for command in [
            RunArgs::augment_args(clap::Command::new("run")),
            PlanArgs::augment_args(clap::Command::new("plan")),
        ] {
            let undocumented: Vec<String> = command
                .get_arguments()
                .filter(|a| !a.is_hide_set() && a.get_help().is_none())
                .map(|a| a.get_id().to_string())
                .collect();
            assert!(undocumented.is_empty(), "{}: flags without help: {undocumented:?}", command.get_name());
        }
    }
}
