//! `idbind plan -f manifests.yaml` (the module is `preview`, so that "plan" in the code means one thing: the
//! planner, `core::plan`): what applying the bindings in a set of manifests would make the operator do now,
//! for a person or a CI gate. Each binding goes through what the operator would put it through, and stops at
//! the first step that refuses it:
//!
//! 1. the API server: a server-side dry run, so the CRD's schema and CEL rules are enforced (`rejected`);
//! 2. the operator's gate: validation, its ceiling and the `WorkloadIdentityPolicy` objects, judged by the
//!    operator's own code (`refused`); no Azure credential is needed to get this far;
//! 3. Azure, read only: the writes a reconcile would make (`changes`, `no-changes`), or what stops it
//!    (`blocked`).
//!
//! The settings are the operator's: its ConfigMap, read through the kubeconfig, under the flags and
//! environment of `idbind run`. The exit code is that of `terraform plan -detailed-exitcode`: 0 nothing to
//! do, 2 changes, 1 anything refused, blocked, rejected, or an error.

mod cluster;
mod config;
mod manifest;
mod report;

use std::{cell::Cell, ffi::OsString, io::Read as _, path::PathBuf, process::ExitCode, sync::Arc};

use crate::core::reason::Reason;
use clap::{Args, Command, FromArgMatches as _, ValueEnum};

pub use self::cluster::Cluster;
use self::{
    cluster::{Reached, ServerCheck},
    manifest::{Document, ManifestError, Manifests},
    report::{BindingPlan, Checks, Ignored, PlanDocument, Problem, Verdict},
};
use crate::{
    api::binding::WorkloadIdentityBinding,
    azure::governed::Governed,
    core::{
        policy::Rule,
        settings::{Ceiling, OperatorSettings},
        validate::DesiredBinding,
    },
    reconcile::dry_run,
    runtime::run::{self, CredentialKind, RunArgs},
    telemetry::Metrics,
};

/// `idbind plan`'s flags: the manifests, how to print the plan, where the operator is, and the settings of
/// `idbind run` (each also from the operator's ConfigMap).
#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    /// Manifests to plan (YAML or JSON, any number of documents; `-` reads stdin; repeatable): every
    /// WorkloadIdentityBinding in them, other kinds ignored (and counted on stderr).
    #[arg(short = 'f', long = "file", visible_alias = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Namespace of bindings whose manifest names none (default: the kubeconfig context's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// How to print the plan: a table, or a JSON document for scripts.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: OutputFormat,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Where the operator is, or that the cluster is not to be consulted: read before the other flags are parsed,
/// because the operator's ConfigMap supplies their defaults.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// The operator's namespace: its ConfigMap `idbind-config` there supplies every setting that no flag or
    /// environment variable sets, and its ServiceAccount there is never bindable.
    #[arg(long, env = "IDBIND_OPERATOR_NAMESPACE", default_value = "idbind-system")]
    pub operator_namespace: String,
    /// Plan without the cluster: settings from flags and environment only, no server-side dry run (the
    /// schema's rules are not checked) and no WorkloadIdentityPolicy (the operator's ceiling still applies).
    #[arg(long)]
    pub no_cluster: bool,
}

/// How `idbind plan` prints its plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One row per binding: its result, then each write or problem.
    Table,
    /// `{"bindings": [{"namespace", "name", "result", "writes", "problems"}], "ignored", "checks"}`.
    Json,
}

/// Why a plan could not be made at all (a binding's own trouble is a verdict in the plan, not an error).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("no WorkloadIdentityBinding (apiVersion idbind.dev/v1alpha1) in {files}")]
    NoBinding { files: String },
    #[error("{0:#}")]
    Settings(anyhow::Error),
    #[error(
        "connecting to the cluster of the kubeconfig: {0}; use --no-cluster to plan from flags and environment \
         only"
    )]
    Connect(String),
    #[error(
        "reading ConfigMap {namespace}/{name} through the kubeconfig: {message}; set --operator-namespace to \
         the operator's namespace, or use --no-cluster to plan from flags and environment only",
        name = config::CONFIG_MAP
    )]
    ConfigMap { namespace: String, message: String },
    #[error("listing WorkloadIdentityPolicy objects through the kubeconfig: {0}")]
    Policies(String),
    #[error("the API server's dry run of {binding}: {message}")]
    DryRun { binding: String, message: String },
}

/// Makes `command` (the whole CLI) ready to parse `args`. When they run `subcommand` (`plan`) the cluster is
/// consulted first, unless `--no-cluster`: the operator's ConfigMap supplies the defaults of the flags, so
/// that a flag, then its environment variable, then the ConfigMap decide. Returns the cluster for [`plan`],
/// `None` when `args` are not a plan.
pub async fn prepare(
    command: Command,
    subcommand: &str,
    args: &[OsString],
) -> Result<(Command, Option<Cluster>), PlanError> {
    let Some(cluster_args) = cluster_args(&command, subcommand, args) else {
        return Ok((config::with_defaults(command, subcommand, &Default::default(), None), None));
    };
    let cluster = if cluster_args.no_cluster {
        Cluster::NotConsulted("--no-cluster".into())
    } else {
        Cluster::connect(&cluster_args.operator_namespace).await?
    };
    let no_config = Default::default();
    let data = cluster.reached().map_or(&no_config, |reached| &reached.config);
    let command = config::with_defaults(command, subcommand, data, Some(&cluster_args.operator_namespace));
    note_on_the_cluster(&cluster);
    Ok((command, Some(cluster)))
}

/// `--operator-namespace` and `--no-cluster` when `args` run `subcommand`, read leniently: the other flags
/// may still be missing (the ConfigMap is to supply them).
fn cluster_args(command: &Command, subcommand: &str, args: &[OsString]) -> Option<ClusterArgs> {
    let matches = command.clone().ignore_errors(true).try_get_matches_from(args).ok()?;
    ClusterArgs::from_arg_matches(matches.subcommand_matches(subcommand)?).ok()
}

fn note_on_the_cluster(cluster: &Cluster) {
    match cluster {
        Cluster::Reached(reached) => {
            let pod_only: Vec<&str> =
                config::POD_ONLY_KEYS.iter().copied().filter(|k| reached.config.contains_key(*k)).collect();
            let left = match pod_only.as_slice() {
                [] => String::new(),
                keys => format!("; {} left to this environment (the operator's pod's own)", keys.join(", ")),
            };
            eprintln!(
                "idbind plan: settings from ConfigMap {}/{} under flags and environment{left}",
                reached.operator_namespace,
                config::CONFIG_MAP,
            );
        }
        Cluster::NotConsulted(why) => eprintln!(
            "idbind plan: planning without the cluster: {why}. Settings come from flags and environment only; \
             the API server's schema check and the WorkloadIdentityPolicy objects are skipped"
        ),
    }
}

/// Plans every binding of `args.files`, prints the plan, and returns the exit code.
pub async fn plan(args: PlanArgs, cluster: Cluster) -> ExitCode {
    let printed = match plan_all(&args, &cluster).await {
        Ok(report) => print(&report, args.output).map(|()| report::exit_code(&report.bindings)),
        Err(e) => Err(e.to_string()),
    };
    match printed {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(report::EXIT_FAILED)
        }
    }
}

fn print(report: &PlanDocument, output: OutputFormat) -> Result<(), String> {
    match output {
        OutputFormat::Table => print!("{}", report::table(&report.bindings)),
        OutputFormat::Json => print!("{}", report::json(report).map_err(|e| e.to_string())?),
    }
    Ok(())
}

/// A binding after the API server and the gate: refused or rejected already, or admitted for Azure.
enum Stage {
    Decided(BindingPlan),
    Admitted { binding: Box<WorkloadIdentityBinding>, desired: Box<DesiredBinding> },
}

/// The plan: the manifests read, each binding checked and judged, then, if any is admitted, Azure read.
async fn plan_all(args: &PlanArgs, cluster: &Cluster) -> Result<PlanDocument, PlanError> {
    let manifests = read_manifests(&args.files)?;
    let (settings, ceiling) = plan_settings(&args.run)?;
    let reached = cluster.reached();
    let policies = match reached {
        Some(reached) => Some(reached.policy_rules(&settings.subscription_id).await?),
        None => None,
    };
    let policies = policies.as_deref();
    let judge =
        Judge { args, reached, settings: &settings, ceiling: &ceiling, policies, unchecked: Cell::new(0) };
    let mut stages = Vec::with_capacity(manifests.bindings.len());
    for document in &manifests.bindings {
        stages.push(judge.stage(document).await?);
    }
    let bindings = finish(stages, &args.run, &settings).await;
    let checks = Checks {
        config_map: reached.map(|r| format!("{}/{}", r.operator_namespace, config::CONFIG_MAP)),
        schema: reached.is_some() && judge.unchecked.get() == 0,
        policies: reached.is_some(),
    };
    let ignored = manifests.ignored.into_iter().map(|(kind, count)| Ignored { kind, count }).collect();
    Ok(PlanDocument { bindings, ignored, checks })
}

/// Every document of `files` (`-`: stdin); an error when none is a binding. What was left aside is said on
/// stderr.
fn read_manifests(files: &[PathBuf]) -> Result<Manifests, PlanError> {
    let mut manifests = Manifests::default();
    for file in files {
        let name = file.display().to_string();
        let read = |source| PlanError::Read { path: name.clone(), source };
        let text = if name == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(read)?;
            text
        } else {
            std::fs::read_to_string(file).map_err(read)?
        };
        manifests.add(&name, &text)?;
    }
    if let Some(ignored) = manifests.ignored_summary() {
        eprintln!("idbind plan: ignored {ignored} (not WorkloadIdentityBindings)");
    }
    if manifests.bindings.is_empty() {
        let files = files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
        return Err(PlanError::NoBinding { files });
    }
    Ok(manifests)
}

/// The operator's settings and ceiling; the client id, which a plan may lack, counts only when given.
fn plan_settings(args: &RunArgs) -> Result<(OperatorSettings, Ceiling), PlanError> {
    let (mut settings, ceiling) = run::settings_and_ceiling(args).map_err(PlanError::Settings)?;
    settings.operator_client_id = settings.operator_client_id.filter(|id| !id.is_empty());
    Ok((settings, ceiling))
}

/// What every binding of one plan is judged with.
struct Judge<'a> {
    args: &'a PlanArgs,
    reached: Option<&'a Reached>,
    settings: &'a OperatorSettings,
    ceiling: &'a Ceiling,
    policies: Option<&'a [Rule]>,
    /// How many bindings the API server could not check (their namespace does not exist yet).
    unchecked: Cell<usize>,
}

impl Judge<'_> {
    /// One document through the API server's check (or, without a cluster, its own reading) and the gate.
    async fn stage(&self, document: &Document) -> Result<Stage, PlanError> {
        let own_namespace = document.namespace.as_deref().unwrap_or_default();
        let name = match document.name.as_deref() {
            Some(name) if !name.is_empty() => name,
            _ => {
                let problem = Problem::invalid_manifest(Some("metadata.name"), "no name".into());
                return Ok(rejected(own_namespace, "", vec![problem]));
            }
        };
        let context_namespace = self.reached.map(Reached::default_namespace);
        let namespace = match manifest::namespace(document, self.args.namespace.as_deref(), context_namespace)
        {
            Ok(namespace) => namespace,
            Err(problem) => return Ok(rejected(own_namespace, name, vec![problem])),
        };
        let mut binding = match self.object(document, &namespace, name).await? {
            Ok(binding) => binding,
            Err(problems) => return Ok(rejected(&namespace, name, problems)),
        };
        binding.metadata.namespace = Some(namespace.clone());
        Ok(match dry_run::admit(&binding, self.settings, self.ceiling, self.policies) {
            Ok(desired) => Stage::Admitted { binding: Box::new(binding), desired: Box::new(desired) },
            Err(problems) => Stage::Decided(BindingPlan::refused(&namespace, name, problems)),
        })
    }

    /// The binding as the API server would store it, or as its manifest reads where there is no API server to
    /// ask (or no namespace yet to ask it in); or why it is rejected.
    async fn object(
        &self,
        document: &Document,
        namespace: &str,
        name: &str,
    ) -> Result<Result<WorkloadIdentityBinding, Vec<Problem>>, PlanError> {
        let Some(reached) = self.reached else {
            return Ok(manifest::binding(document).map_err(|problem| vec![problem]));
        };
        Ok(match reached.check(namespace, name, &document.value).await? {
            ServerCheck::Accepted(binding) => Ok(*binding),
            ServerCheck::Rejected(problems) => Err(problems),
            ServerCheck::NamespaceMissing => {
                eprintln!(
                    "idbind plan: namespace {namespace} does not exist yet, so the API server cannot check \
                     {namespace}/{name}: planned from its manifest as read"
                );
                self.unchecked.set(self.unchecked.get() + 1);
                manifest::binding(document).map_err(|problem| vec![problem])
            }
        })
    }
}

fn rejected(namespace: &str, name: &str, problems: Vec<Problem>) -> Stage {
    Stage::Decided(BindingPlan::failed(namespace, name, Verdict::Rejected, problems))
}

/// The admitted bindings planned against Azure, in the manifests' order; the Azure client is built at the
/// first admitted binding, so a plan whose bindings are all refused needs no credential.
async fn finish(stages: Vec<Stage>, args: &RunArgs, settings: &OperatorSettings) -> Vec<BindingPlan> {
    let mut azure = None;
    let mut plans = Vec::with_capacity(stages.len());
    for stage in stages {
        plans.push(match stage {
            Stage::Decided(plan) => plan,
            Stage::Admitted { binding, desired } => {
                let (namespace, name) = (namespace_of(&binding), binding_name(&binding));
                match azure.get_or_insert_with(|| plan_azure(args)) {
                    Ok(azure) => {
                        let writes = dry_run::plan_writes(azure.as_ref(), settings, &binding, &desired).await;
                        BindingPlan::from_dry_run(&namespace, &name, writes)
                    }
                    Err(message) => {
                        let reason = Reason::AzureClientError.into();
                        let problem = Problem { field: None, reason, message: message.clone() };
                        BindingPlan::failed(&namespace, &name, Verdict::Blocked, vec![problem])
                    }
                }
            }
        });
    }
    plans
}

fn namespace_of(b: &WorkloadIdentityBinding) -> String {
    b.metadata.namespace.clone().unwrap_or_default()
}

fn binding_name(b: &WorkloadIdentityBinding) -> String {
    b.metadata.name.clone().unwrap_or_default()
}

/// The ARM client a plan reads Azure with, signed in as `args` say; the tenant and client id that a plan may
/// lack are checked here, where a credential that needs them is built.
fn plan_azure(args: &RunArgs) -> Result<Arc<Governed>, String> {
    let needs_ids = match args.credential {
        CredentialKind::ClientSecret | CredentialKind::WorkloadIdentity => true,
        CredentialKind::Auto => args.client_secret.is_some() || args.federated_token_file.is_some(),
        CredentialKind::ManagedIdentity | CredentialKind::AzureCli => false,
    };
    if needs_ids && (args.tenant_id.is_empty() || args.client_id.is_empty()) {
        return Err(
            "signing in to Azure needs --tenant-id and --client-id (AZURE_TENANT_ID, AZURE_CLIENT_ID)".into(),
        );
    }
    run::governed_azure(args, &Metrics::new()).map_err(|e| format!("{e:#}"))
}
