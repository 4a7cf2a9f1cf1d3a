//! The reconcile pipeline and its wiring into kube-runtime.
//!
//! Per binding: validate (pure) → resolve vaults and roles → observe → plan (pure) → apply, then the
//! ServiceAccount and the status. Errors never escape as retry storms: each outcome becomes conditions, an
//! Event when something changed, and a requeue that honours Retry-After and backs off per object. Cleanup
//! (finalizer) never validates, so a bad spec cannot block it.

pub mod failpoint;

use std::sync::PoisonError;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::{
    api::core::v1::{ObjectReference, ServiceAccount},
    apimachinery::pkg::apis::meta::v1::Time,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{
        Controller, Predicate, PredicateConfig, WatchStreamExt,
        controller::Action,
        events::{Event, EventType, Recorder, Reporter},
        finalizer::{Event as Finalizer, finalizer},
        predicates,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};

use crate::{
    api::{
        binding::{
            AccessPolicyStatus, DeletionPolicy, FederatedCredentialStatus, IdentityStatus,
            RoleAssignmentStatus, WorkloadIdentityBinding, WorkloadIdentityBindingStatus,
        },
        policy::WorkloadIdentityPolicy,
    },
    azure::{
        self, AzureApi, AzureError, IdentityIds, Observation,
        budget::{MsiOp, OpKind, Request, SharedBudget},
        snapshot::Snapshots,
    },
    core::{
        conditions::{self, Want},
        plan::{self, Blocked, DesiredAzure, ManagedIdentity, Owner},
        policy as guardrails,
        resource_id::{ROLE_ASSIGNMENT, ROLE_DEFINITION, ResourceId},
        roles::{self, Permissions, RoleRef},
        validate::{self, DesiredBinding, DesiredIdentity, OperatorSettings, Policy},
    },
    k8s::{self, Annotations, KubeError},
    runtime::telemetry::Metrics,
};

/// The finalizer idbind puts on bindings before its first Azure write.
pub const FINALIZER: &str = "idbind.dev/cleanup";

/// How many plan/apply rounds one reconcile makes (identity first, then what needs its principal); more means
/// Azure changes under us, and the next reconcile continues.
const MAX_ROUNDS: usize = 4;

/// Everything a reconcile needs.
pub struct Context {
    pub client: Client,
    /// Azure through direct reads (and the request budget): what every write is planned from.
    pub azure: Arc<dyn AzureApi>,
    /// The same, with steady-state reads answered from shared lists; all writes go through it so the lists
    /// stay current.
    pub snapshots: Arc<Snapshots>,
    pub settings: OperatorSettings,
    pub policy: Policy,
    pub resync: Duration,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// The request budget the Azure layer spends (the same one), for turns: see [`take_turn`].
    budget: Option<SharedBudget>,
    failures: Mutex<HashMap<String, u32>>,
    /// The bindings' cache, once the controller runs: to see which binding holds a ServiceAccount.
    bindings: std::sync::OnceLock<Store<WorkloadIdentityBinding>>,
    /// The policies' cache, once the controller runs.
    policies: std::sync::OnceLock<Store<WorkloadIdentityPolicy>>,
}

impl Context {
    pub fn new(
        client: Client,
        azure: Arc<dyn AzureApi>,
        settings: OperatorSettings,
        policy: Policy,
        resync: Duration,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "idbind".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        let snapshots = Arc::new(Snapshots::new(azure.clone(), resync));
        Context {
            client,
            azure,
            snapshots,
            settings,
            policy,
            resync,
            recorder,
            metrics: Metrics::new(),
            budget: None,
            failures: Mutex::default(),
            bindings: std::sync::OnceLock::new(),
            policies: std::sync::OnceLock::new(),
        }
    }

    /// Records into `metrics` (shared with the Azure layer and the HTTP server).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Gives reconciles turns on `budget` (the one the Azure layer spends) instead of letting them hold a
    /// worker through a long wait for it.
    pub fn with_budget(mut self, budget: Option<SharedBudget>) -> Self {
        self.budget = budget;
        self
    }

    /// Reads a binding's federated credentials on every `resyncs`th resync (see
    /// [`Snapshots::with_federation_max_age`]).
    pub fn with_federation_check(mut self, resyncs: u32) -> Self {
        self.snapshots = Arc::new(
            Snapshots::new(self.azure.clone(), self.resync)
                .with_federation_max_age(self.resync * resyncs.max(1)),
        );
        self
    }

    /// Exponential per-object backoff (1 s … 5 min), or Azure's Retry-After when it gave one.
    fn backoff(&self, key: &str, retry_after: Option<Duration>) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let exp = Duration::from_secs(1u64 << (*n - 1).min(8)).min(Duration::from_secs(300));
        retry_after.map_or(exp, |ra| ra.max(Duration::from_millis(100)))
    }

    /// The binding that holds `b`'s ServiceAccount ahead of it, if another does.
    fn service_account_held_by(&self, b: &WorkloadIdentityBinding) -> Option<String> {
        let store = self.bindings.get()?;
        let claim = |x: &WorkloadIdentityBinding| {
            (
                x.name_any(),
                x.spec.service_account_name.clone(),
                x.metadata
                    .creation_timestamp
                    .as_ref()
                    .map_or(i64::MAX, |t| t.0.as_second()),
                x.metadata.deletion_timestamp.is_some(),
            )
        };
        let ns = b.namespace();
        let others: Vec<_> = store
            .state()
            .iter()
            .filter(|o| o.namespace() == ns)
            .map(|o| claim(o))
            .collect();
        let (name, sa, created, deleting) = claim(b);
        let me = validate::Claim {
            binding: &name,
            service_account: &sa,
            created,
            deleting,
        };
        validate::held_by(
            &me,
            others.iter().map(|(n, s, c, d)| validate::Claim {
                binding: n,
                service_account: s,
                created: *c,
                deleting: *d,
            }),
        )
        .map(str::to_string)
    }

    /// The policies as rules, once their cache holds a full list: judging a binding against a partial list
    /// could let through what a policy not yet seen forbids. `None` while it does not.
    async fn policy_rules(&self) -> Option<Vec<guardrails::Rule>> {
        let Some(store) = self.policies.get() else {
            return Some(Vec::new());
        };
        if !cache_ready(store, Duration::from_secs(10)).await {
            return None;
        }
        Some(
            store
                .state()
                .iter()
                .map(|p| {
                    guardrails::Rule::from_policy(&p.name_any(), &p.spec, &self.settings.subscription_id)
                })
                .collect(),
        )
    }

    fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    /// The steady-state requeue, jittered by up to 10% so thousands of bindings do not resync in lockstep.
    fn resync_after(&self, key: &str) -> Duration {
        let jitter = (fnv(key) % 1000) as f64 / 10_000.0;
        self.resync.mul_f64(1.0 + jitter)
    }
}

/// Waits (up to `limit`) until a reflector's store holds its first full list. kube-runtime 5's
/// `Store::wait_until_ready` wakes only the last of several concurrent waiters (its one-shot channel keeps
/// one waker), so a waiter that polls before the controller's own never wakes; asking again every half second
/// sidesteps that (the readiness, once reached, is kept).
async fn cache_ready<K: reflector::Lookup + Clone + 'static>(store: &Store<K>, limit: Duration) -> bool
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let start = std::time::Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_millis(500), store.wait_until_ready()).await {
            Ok(ready) => return ready.is_ok(),
            Err(_) if start.elapsed() >= limit => return false,
            Err(_) => {}
        }
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// Errors that leave a reconcile (everything else becomes status).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error(transparent)]
    Azure(#[from] AzureError),
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// Not a failure: the cleanup waits for its turn at the request budget.
    #[error("waiting {0:?} for a turn at the managed-identity API's request limit")]
    AwaitingTurn(Duration),
}

impl ReconcileError {
    /// The metric label: Azure's category, or where the Kubernetes side failed.
    pub fn category(&self) -> &'static str {
        match self {
            ReconcileError::Kube(_) => "KubernetesApiError",
            ReconcileError::Azure(e) => e.reason(),
            // The finalizer helper wraps our own errors as strings; cleanup's Azure failures end here.
            ReconcileError::Finalizer(_) => "FinalizerFailed",
            ReconcileError::AwaitingTurn(_) => AWAITING_TURN,
        }
    }
}

/// Why a binding is not Ready, for conditions and Events.
struct Failure {
    condition: &'static str,
    reason: String,
    message: String,
    stalled: bool,
    retry_after: Option<Duration>,
    /// Not a failure: the binding waits for its turn at the request budget (`retry_after`).
    deferred: bool,
}

impl Failure {
    fn azure(condition: &'static str, e: &AzureError) -> Self {
        Failure {
            condition,
            reason: e.reason().to_string(),
            message: e.to_string(),
            stalled: !e.retryable(),
            retry_after: e.retry_after(),
            deferred: false,
        }
    }

    fn blocked(condition: &'static str, b: &Blocked) -> Self {
        Failure {
            condition,
            reason: b.reason().to_string(),
            message: b.to_string(),
            stalled: true,
            retry_after: None,
            deferred: false,
        }
    }
}

/// The reconcile entry point for kube-runtime.
pub async fn reconcile(
    binding: Arc<WorkloadIdentityBinding>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let started = std::time::Instant::now();
    let ns = binding.namespace().unwrap_or_default();
    let api: Api<WorkloadIdentityBinding> = Api::namespaced(ctx.client.clone(), &ns);
    // The reason a reconcile ended not Ready (it still returns Ok: the outcome is status).
    let failure: Mutex<Option<String>> = Mutex::new(None);
    let result = finalizer(&api, FINALIZER, binding, |event| async {
        match event {
            Finalizer::Apply(b) => apply(&b, &ctx, &failure).await,
            Finalizer::Cleanup(b) => cleanup(&b, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::CleanupFailed(ReconcileError::AwaitingTurn(wait)) => {
            ReconcileError::AwaitingTurn(wait)
        }
        e => ReconcileError::Finalizer(e.to_string()),
    });
    let failure = failure.into_inner().unwrap_or_else(PoisonError::into_inner);
    match (&result, failure) {
        (Ok(_), None) => ctx.metrics.reconcile_finished("ok", None, started.elapsed()),
        (Ok(_), Some(reason)) if reason == AWAITING_TURN => {
            ctx.metrics
                .reconcile_finished("deferred", None, started.elapsed());
        }
        (Ok(_), Some(reason)) => ctx
            .metrics
            .reconcile_finished("error", Some(&reason), started.elapsed()),
        (Err(ReconcileError::AwaitingTurn(_)), _) => {
            ctx.metrics
                .reconcile_finished("deferred", None, started.elapsed());
        }
        (Err(e), _) => ctx
            .metrics
            .reconcile_finished("error", Some(e.category()), started.elapsed()),
    }
    result
}

/// kube-runtime's error policy: only Kubernetes errors reach it (Azure outcomes are status).
pub fn error_policy(
    binding: Arc<WorkloadIdentityBinding>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    if let ReconcileError::AwaitingTurn(wait) = error {
        return Action::requeue(*wait);
    }
    tracing::warn!(binding = %binding.name_any(), namespace = ?binding.namespace(), %error, "reconcile failed");
    Action::requeue(ctx.backoff(&key(&binding), None))
}

fn key(b: &WorkloadIdentityBinding) -> String {
    format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any())
}

fn owner(b: &WorkloadIdentityBinding, settings: &OperatorSettings) -> Owner {
    Owner {
        cluster: settings.cluster_name.clone(),
        namespace: b.namespace().unwrap_or_default(),
        binding: b.name_any(),
    }
}

/// The desired Azure state, with roles resolved to GUIDs and vaults checked to exist. A vault that uses Azure
/// RBAC gets role assignments; one that still uses access policies gets the equivalent access policy (reader
/// roles only, see [`roles::access_policy_for`]).
async fn desired_azure(
    d: &DesiredBinding,
    owner: Owner,
    held_access_policies: Vec<(ResourceId, Permissions)>,
    azure: &dyn AzureApi,
) -> Result<(ResourceId, DesiredAzure, Vec<RoleAssignmentStatus>), Failure> {
    let stalled = |reason: &str, message: String| Failure {
        condition: conditions::ROLE_ASSIGNMENTS_READY,
        reason: reason.into(),
        message,
        stalled: true,
        retry_after: None,
        deferred: false,
    };
    let mut role_assignments = Vec::new();
    let mut access_policies: Vec<(ResourceId, Permissions)> = Vec::new();
    let mut held = Vec::new();
    for vault in &d.vaults {
        let rbac = match azure.get_vault(&vault.resource_id).await {
            Ok(Some(info)) => info.rbac_authorization,
            Ok(None) => {
                return Err(stalled(
                    "VaultNotFound",
                    format!("vault {} does not exist", vault.resource_id),
                ));
            }
            Err(e) => return Err(Failure::azure(conditions::ROLE_ASSIGNMENTS_READY, &e)),
        };
        let mut permissions = Permissions::default();
        for (written, role) in &vault.roles {
            let guid = match role {
                RoleRef::Id(g) => g.to_string(),
                RoleRef::Name(n) => azure
                    .resolve_role(&vault.resource_id, n)
                    .await
                    .map_err(|e| Failure::azure(conditions::ROLE_ASSIGNMENTS_READY, &e))?,
            };
            if rbac {
                role_assignments.push((vault.resource_id.clone(), guid.clone()));
                held.push(RoleAssignmentStatus {
                    id: String::new(),
                    scope: vault.resource_id.to_string(),
                    role_definition_id: guid,
                    role: Some(written.clone()),
                });
            } else {
                let granted = roles::access_policy_for(&guid).ok_or_else(|| {
                    stalled(
                        "AccessPolicyRoleUnsupported",
                        format!(
                            "vault {} uses access policies, and role {written:?} has no read-only \
                             access-policy equivalent; switch the vault to Azure RBAC or ask for a Key \
                             Vault reader role",
                            vault.resource_id
                        ),
                    )
                })?;
                permissions = permissions.union(&granted);
            }
        }
        if !rbac && !permissions.is_empty() {
            access_policies.push((vault.resource_id.clone(), permissions));
        }
    }
    let id = d.identity.id().clone();
    let managed_identity = match &d.identity {
        DesiredIdentity::Managed { location, tags, .. } => Some(ManagedIdentity {
            resource_id: id.clone(),
            location: location.clone(),
            tags: tags.clone(),
        }),
        DesiredIdentity::Existing { .. } => None,
    };
    let desired = DesiredAzure {
        owner,
        managed_identity,
        fic_name: d.federated_credential_name.clone(),
        issuer: d.issuer.clone(),
        subject: d.subject.clone(),
        role_assignments,
        access_policies,
        held_access_policies,
    };
    Ok((id, desired, held))
}

/// The access policies a status says idbind granted.
fn held_access_policies(status: Option<&WorkloadIdentityBindingStatus>) -> Vec<(ResourceId, Permissions)> {
    let set = |v: &[String]| v.iter().cloned().collect();
    let held = status.map(|s| s.access_policies.as_slice()).unwrap_or_default();
    held.iter()
        .filter_map(|a| {
            let vault = ResourceId::parse(&a.vault_id).ok()?;
            let permissions = Permissions {
                secrets: set(&a.secrets),
                keys: set(&a.keys),
                certificates: set(&a.certificates),
            };
            Some((vault, permissions))
        })
        .collect()
}

/// Observe once, then plan → execute until the plan is empty, each round planning from what the previous
/// writes made true (`plan::assume`) rather than from another read. Returns the observation as it now stands.
async fn converge(
    ctx: &Context,
    holder: &str,
    identity_id: &ResourceId,
    desired: &DesiredAzure,
) -> Result<Observation, Failure> {
    let mut last_condition = conditions::IDENTITY_READY;
    // Steady state first, from the shared lists (about one read per binding, see azure::snapshot): when they
    // say nothing needs doing, nothing is done.
    if let Ok(cached) = azure::observe(ctx.snapshots.as_ref(), identity_id, desired).await
        && let Ok(actions) = plan::plan(desired, &cached.azure)
    {
        if actions.is_empty() {
            return Ok(cached);
        }
        // An identity to create or update: wait for its turn at the managed-identity API's budget before
        // reading anything, or come back when it is due.
        if let Some(plan::Action::PutIdentity { resource_id, .. }) = actions
            .iter()
            .find(|a| matches!(a, plan::Action::PutIdentity { .. }))
        {
            take_turn(ctx, holder, MsiOp::CreateOrUpdate, resource_id)
                .await
                .map_err(|wait| Failure {
                    condition: conditions::IDENTITY_READY,
                    reason: AWAITING_TURN.into(),
                    message: format!(
                        "waiting its turn at the managed-identity API's request limit (other identities are \
                         being created first); identity {resource_id} is due in about {} s",
                        wait.as_secs()
                    ),
                    stalled: false,
                    retry_after: Some(wait),
                    deferred: true,
                })?;
        }
    }
    // Something to do (or to report): read Azure directly before any write, so a list up to a resync old can
    // never make idbind write over what changed since.
    let mut observed = azure::observe(ctx.azure.as_ref(), identity_id, desired)
        .await
        .map_err(|e| Failure::azure(last_condition, &e))?;
    for _ in 0..MAX_ROUNDS {
        let actions = plan::plan(desired, &observed.azure).map_err(|b| {
            let condition = match b {
                Blocked::IdentityConflict(_)
                | Blocked::IdentityOfAnotherBinding { .. }
                | Blocked::LocationMismatch { .. }
                | Blocked::ExistingIdentityNotFound => conditions::IDENTITY_READY,
                Blocked::FederatedCredentialLimit(_) | Blocked::DuplicateFederation(_) => {
                    conditions::FEDERATED_CREDENTIAL_READY
                }
            };
            Failure::blocked(condition, &b)
        })?;
        if actions.is_empty() {
            return Ok(observed);
        }
        for action in &actions {
            last_condition = match action {
                plan::Action::PutIdentity { .. } => conditions::IDENTITY_READY,
                plan::Action::PutFederatedCredential { .. } => conditions::FEDERATED_CREDENTIAL_READY,
                _ => conditions::ROLE_ASSIGNMENTS_READY,
            };
            tracing::info!(?action, identity = %identity_id, "azure write");
            if let Some(ids) =
                azure::execute(ctx.snapshots.as_ref(), identity_id, observed.ids.as_ref(), action)
                    .await
                    .map_err(|e| Failure::azure(last_condition, &e))?
            {
                observed.ids = Some(ids);
            }
            plan::assume(
                &mut observed.azure,
                action,
                observed.ids.as_ref().map(|i| i.principal_id.as_str()),
            );
        }
    }
    Err(Failure {
        condition: conditions::IDENTITY_READY,
        reason: "StillConverging".into(),
        message: "Azure did not settle within one reconcile; continuing".into(),
        stalled: false,
        retry_after: Some(Duration::from_secs(1)),
        deferred: false,
    })
}

/// Longest a reconcile waits in place for its turn at the budget; a later turn is a requeue. Short: at a
/// raised limit many turns fall within any longer window, and the reconciles waiting in place for them would
/// again take every worker.
const TURN_WAIT_LIMIT: Duration = Duration::from_millis(250);

/// The reason a binding waiting for its turn shows (Reconciling; not an error).
pub const AWAITING_TURN: &str = "AwaitingRequestBudget";

/// Waits for `binding`'s turn to create/update (or delete) `identity_id` when it is near, or says how long
/// until it is (the caller requeues itself then). A backlog of identities to create or delete (2 per second
/// per subscription) would otherwise keep every worker waiting inside a reconcile, and an edit of any other
/// binding would wait behind the whole backlog; this way workers stay free and turns stay in order.
async fn take_turn(
    ctx: &Context,
    binding: &str,
    op: MsiOp,
    identity_id: &ResourceId,
) -> Result<(), Duration> {
    let Some(budget) = &ctx.budget else {
        return Ok(());
    };
    let kind = if op == MsiOp::Delete {
        OpKind::Delete
    } else {
        OpKind::Write
    };
    let holder = format!(
        "{binding} {op:?} {}",
        identity_id.to_string().to_ascii_lowercase()
    );
    let wait = budget
        .turn(
            &holder,
            &Request {
                kind,
                msi: Some((op, identity_id.to_string())),
            },
        )
        .await;
    if wait > TURN_WAIT_LIMIT {
        return Err(wait);
    }
    budget.end_turn(&holder).await;
    tokio::time::sleep(wait).await;
    Ok(())
}

async fn apply(
    b: &WorkloadIdentityBinding,
    ctx: &Context,
    failure: &Mutex<Option<String>>,
) -> Result<Action, ReconcileError> {
    let fail =
        |reason: &str| *failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason.to_string());
    let ns = b.namespace().unwrap_or_default();
    let name = b.name_any();
    let key = key(b);
    let generation = b.metadata.generation;
    let mut status = b.status.clone().unwrap_or_default();
    let before = status.clone();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let set =
        |s: &mut WorkloadIdentityBindingStatus, type_: &str, ok: bool, reason: &str, message: String| {
            conditions::set(
                &mut s.conditions,
                &Want {
                    type_,
                    status: ok,
                    reason,
                    message,
                },
                generation,
                &now,
            );
        };
    status.observed_generation = generation;

    let Some(rules) = ctx.policy_rules().await else {
        tracing::info!(binding = %key, "policies not listed yet; retrying");
        return Ok(Action::requeue(Duration::from_secs(2)));
    };
    let checked = validate::validate(&ns, &name, &b.spec, &ctx.settings, &ctx.policy).and_then(|d| {
        let problems = guardrails::check(&ns, &d, &rules, ctx.policy.require_policy);
        if problems.is_empty() { Ok(d) } else { Err(problems) }
    });
    let desired = match checked {
        Ok(d) => d,
        Err(problems) => {
            let reason = problems[0].reason;
            fail(reason);
            let message = problems
                .iter()
                .map(|p| format!("{}: {}", p.field, p.message))
                .collect::<Vec<_>>()
                .join("; ");
            set(&mut status, conditions::READY, false, reason, message.clone());
            set(&mut status, conditions::STALLED, true, reason, message.clone());
            conditions::remove(&mut status.conditions, conditions::RECONCILING);
            finish(
                b,
                ctx,
                &before,
                &status,
                Some((EventType::Warning, reason, message)),
            )
            .await?;
            // Nothing heals but a change of the spec or of a policy, both of which trigger a reconcile by
            // themselves.
            return Ok(Action::await_change());
        }
    };

    if let Some(holder) = ctx.service_account_held_by(b) {
        let reason = "ServiceAccountConflict";
        let message = format!(
            "spec.serviceAccountName: ServiceAccount {} is already bound by WorkloadIdentityBinding \
             {holder} (created first); a ServiceAccount carries one client id, so point this binding at \
             another ServiceAccount or delete one of them",
            b.spec.service_account_name
        );
        fail(reason);
        set(
            &mut status,
            conditions::SERVICE_ACCOUNT_READY,
            false,
            reason,
            message.clone(),
        );
        set(&mut status, conditions::READY, false, reason, message.clone());
        set(&mut status, conditions::STALLED, true, reason, message.clone());
        conditions::remove(&mut status.conditions, conditions::RECONCILING);
        finish(
            b,
            ctx,
            &before,
            &status,
            Some((EventType::Warning, reason, message)),
        )
        .await?;
        // The holder's deletion is no event of this binding's: look again now and then.
        return Ok(Action::requeue(Duration::from_secs(30)));
    }

    let outcome = async {
        let (id, desired_azure, mut held) = desired_azure(
            &desired,
            owner(b, &ctx.settings),
            held_access_policies(b.status.as_ref()),
            ctx.azure.as_ref(),
        )
        .await?;
        let observed = converge(ctx, &key, &id, &desired_azure).await?;
        Ok::<_, Failure>((id, desired_azure, observed, std::mem::take(&mut held)))
    }
    .await;

    let (identity_id, desired_azure, observed, mut held) = match outcome {
        Ok(v) => v,
        Err(f) if f.deferred => {
            let at = f.retry_after.unwrap_or(TURN_WAIT_LIMIT);
            // Said in status (kubectl shows why nothing happens yet), without an Event: waiting for a turn is
            // normal under a backlog. A Ready binding keeps Ready meanwhile.
            fail(AWAITING_TURN);
            if !(conditions::is_true(&before.conditions, conditions::READY)
                && before.observed_generation == generation)
            {
                set(&mut status, f.condition, false, &f.reason, f.message.clone());
                set(
                    &mut status,
                    conditions::READY,
                    false,
                    &f.reason,
                    f.message.clone(),
                );
                set(&mut status, conditions::RECONCILING, true, &f.reason, f.message);
                conditions::remove(&mut status.conditions, conditions::STALLED);
                finish(b, ctx, &before, &status, None).await?;
            }
            return Ok(Action::requeue(at));
        }
        Err(f)
            if !f.stalled
                && conditions::is_true(&before.conditions, conditions::READY)
                && before.observed_generation == generation =>
        {
            // A transient failure (a throttled read during a resync, a 5xx) on a binding that is Ready for
            // this generation says nothing about its Azure objects: keep Ready and retry, rather than
            // flapping what GitOps health checks read.
            tracing::info!(binding = %key, reason = %f.reason, message = %f.message, "transient failure on \
                a Ready binding; retrying");
            fail(&f.reason);
            return Ok(Action::requeue(ctx.backoff(&key, f.retry_after)));
        }
        Err(f) => {
            fail(&f.reason);
            set(&mut status, f.condition, false, &f.reason, f.message.clone());
            set(
                &mut status,
                conditions::READY,
                false,
                &f.reason,
                f.message.clone(),
            );
            if f.stalled {
                set(
                    &mut status,
                    conditions::STALLED,
                    true,
                    &f.reason,
                    f.message.clone(),
                );
                conditions::remove(&mut status.conditions, conditions::RECONCILING);
            } else {
                set(
                    &mut status,
                    conditions::RECONCILING,
                    true,
                    &f.reason,
                    f.message.clone(),
                );
                conditions::remove(&mut status.conditions, conditions::STALLED);
            }
            let event_type = if f.stalled {
                EventType::Warning
            } else {
                EventType::Normal
            };
            finish(
                b,
                ctx,
                &before,
                &status,
                Some((event_type, &f.reason, f.message.clone())),
            )
            .await?;
            return Ok(Action::requeue(if f.stalled {
                ctx.backoff(&key, None).max(Duration::from_secs(30))
            } else {
                ctx.backoff(&key, f.retry_after)
            }));
        }
    };

    // Identities this binding held before and holds no more (a rename, a move to a brought identity): the one
    // the status names, and any other that idbind's ownership tags say is this binding's in the current
    // identity's resource group. The tags matter: an identity created just before a crash, or before a rename
    // that raced the status write, is named by no status. Everything idbind held through them goes, and each
    // identity itself.
    let mut previous: Vec<ResourceId> = before
        .identity
        .iter()
        .filter(|o| o.managed)
        .filter_map(|o| ResourceId::parse(&o.resource_id).ok())
        .collect();
    if let Some(group) = desired_azure
        .managed_identity
        .as_ref()
        .and_then(|m| m.resource_id.parent())
    {
        match ctx
            .snapshots
            .identities_owned_by(&group, &desired_azure.owner)
            .await
        {
            Ok(found) => previous.extend(found.into_iter().map(|i| i.ids.resource_id)),
            Err(e) => tracing::warn!(error = %e, "listing the binding's identities failed; the next \
                reconcile looks again"),
        }
    }
    previous.retain(|id| *id != identity_id);
    previous.sort();
    previous.dedup();
    for old in previous {
        let old_desired = DesiredAzure {
            role_assignments: Vec::new(),
            access_policies: Vec::new(),
            managed_identity: Some(ManagedIdentity {
                resource_id: old.clone(),
                location: String::new(),
                tags: Default::default(),
            }),
            ..desired_azure.clone()
        };
        match azure::observe(ctx.azure.as_ref(), &old, &old_desired).await {
            Ok(obs) => {
                if let Err(e) = azure::cleanup(ctx.snapshots.as_ref(), &old, &old_desired, &obs).await {
                    tracing::warn!(error = %e, old = %old, "removing the previous identity failed; retrying");
                    return Ok(Action::requeue(ctx.backoff(&key, e.retry_after())));
                }
                tracing::info!(old = %old, "removed an identity the binding no longer uses");
            }
            Err(e) => return Ok(Action::requeue(ctx.backoff(&key, e.retry_after()))),
        }
    }

    let ids = observed.ids.clone().unwrap_or(IdentityIds {
        resource_id: identity_id.clone(),
        client_id: String::new(),
        principal_id: String::new(),
        tenant_id: String::new(),
    });
    status.identity = Some(IdentityStatus {
        resource_id: ids.resource_id.to_string(),
        name: ids.resource_id.name().unwrap_or_default().to_string(),
        client_id: Some(ids.client_id.clone()),
        principal_id: Some(ids.principal_id.clone()),
        tenant_id: Some(ids.tenant_id.clone()),
        managed: desired_azure.managed_identity.is_some(),
    });
    status.federated_credential = Some(FederatedCredentialStatus {
        name: desired_azure.fic_name.clone(),
        issuer: desired_azure.issuer.clone(),
        subject: desired_azure.subject.clone(),
    });
    for h in &mut held {
        let Ok(scope) = ResourceId::parse(&h.scope) else {
            continue;
        };
        let name =
            crate::core::naming::role_assignment_name(&scope, &h.role_definition_id, &ids.principal_id);
        h.id = scope
            .provider_resource(ROLE_ASSIGNMENT, &name.to_string())
            .to_string();
        h.role_definition_id = ResourceId::subscription_scope(&ctx.settings.subscription_id)
            .provider_resource(ROLE_DEFINITION, &h.role_definition_id)
            .to_string();
    }
    status.role_assignments = held;
    status.access_policies = desired_azure
        .access_policies
        .iter()
        .map(|(vault_id, p)| AccessPolicyStatus {
            vault_id: vault_id.to_string(),
            secrets: p.secrets.iter().cloned().collect(),
            keys: p.keys.iter().cloned().collect(),
            certificates: p.certificates.iter().cloned().collect(),
        })
        .collect();
    set(
        &mut status,
        conditions::IDENTITY_READY,
        true,
        "IdentityReady",
        format!("identity {} exists", ids.resource_id),
    );
    set(
        &mut status,
        conditions::FEDERATED_CREDENTIAL_READY,
        true,
        "FederatedCredentialReady",
        format!("trusts {} for {}", desired_azure.issuer, desired_azure.subject),
    );
    let (assignments, policies) = (status.role_assignments.len(), status.access_policies.len());
    let message = if policies == 0 {
        format!("{assignments} role assignment(s) in place")
    } else {
        format!("{assignments} role assignment(s) and {policies} access polic(ies) in place")
    };
    set(
        &mut status,
        conditions::ROLE_ASSIGNMENTS_READY,
        true,
        "RoleAssignmentsReady",
        message,
    );

    // The spec now names another ServiceAccount: the one idbind annotated before loses the annotations (it
    // would otherwise keep federating pods to this identity's client id without a FIC that trusts it, which
    // fails at token exchange in a confusing way).
    let sa = &b.spec.service_account_name;
    if let Some(previous) = before.service_account.as_ref().filter(|p| *p != sa) {
        match k8s::apply_service_account(&ctx.client, &ns, previous, None).await {
            Ok(_) | Err(KubeError::ServiceAccountNotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }

    let mut event = None;
    match k8s::apply_service_account(
        &ctx.client,
        &ns,
        &b.spec.service_account_name,
        Some(Annotations {
            client_id: &ids.client_id,
            tenant_id: &ids.tenant_id,
        }),
    )
    .await
    {
        Ok(previous) => {
            status.service_account = Some(sa.clone());
            set(
                &mut status,
                conditions::SERVICE_ACCOUNT_READY,
                true,
                "ServiceAccountAnnotated",
                format!(
                    "ServiceAccount {} carries the client id",
                    b.spec.service_account_name
                ),
            );
            set(
                &mut status,
                conditions::READY,
                true,
                "Reconciled",
                "Azure and the ServiceAccount match the spec".into(),
            );
            conditions::remove(&mut status.conditions, conditions::RECONCILING);
            conditions::remove(&mut status.conditions, conditions::STALLED);
            if previous.as_deref().is_some_and(|p| p != ids.client_id) {
                event = Some((
                    EventType::Normal,
                    "ClientIdChanged",
                    format!(
                        "ServiceAccount {} now names client id {}; running pods keep the old one until they \
                         restart",
                        b.spec.service_account_name, ids.client_id
                    ),
                ));
            } else if !conditions::is_true(&before.conditions, conditions::READY) {
                event = Some((
                    EventType::Normal,
                    "Ready",
                    format!(
                        "identity {} bound to ServiceAccount {}",
                        ids.client_id, b.spec.service_account_name
                    ),
                ));
            }
        }
        Err(KubeError::ServiceAccountNotFound { .. }) => {
            status.service_account = None;
            let message = format!(
                "ServiceAccount {ns}/{} does not exist; the binding completes when it is created",
                b.spec.service_account_name
            );
            set(
                &mut status,
                conditions::SERVICE_ACCOUNT_READY,
                false,
                "ServiceAccountNotFound",
                message.clone(),
            );
            set(
                &mut status,
                conditions::READY,
                false,
                "ServiceAccountNotFound",
                message.clone(),
            );
            set(
                &mut status,
                conditions::RECONCILING,
                true,
                "ServiceAccountNotFound",
                message.clone(),
            );
            conditions::remove(&mut status.conditions, conditions::STALLED);
            fail("ServiceAccountNotFound");
            event = Some((EventType::Warning, "ServiceAccountNotFound", message));
        }
        Err(e) => return Err(e.into()),
    }
    finish(b, ctx, &before, &status, event).await?;
    ctx.succeeded(&key);
    Ok(Action::requeue(ctx.resync_after(&key)))
}

/// Writes the status (only when it changed) and publishes the Event (only with a status change, so a resync
/// of a failing binding does not flood Events).
async fn finish(
    b: &WorkloadIdentityBinding,
    ctx: &Context,
    before: &WorkloadIdentityBindingStatus,
    after: &WorkloadIdentityBindingStatus,
    event: Option<(EventType, &str, String)>,
) -> Result<(), ReconcileError> {
    if before == after {
        return Ok(());
    }
    failpoint::hit(failpoint::BEFORE_STATUS_WRITE);
    k8s::apply_status(
        &ctx.client,
        &b.namespace().unwrap_or_default(),
        &b.name_any(),
        after,
    )
    .await?;
    failpoint::hit(failpoint::AFTER_STATUS_WRITE);
    if let Some((type_, reason, note)) = event {
        let reference: ObjectReference = b.object_ref(&());
        let ev = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&ev, &reference).await {
            tracing::warn!(error = %e, "publishing an Event failed");
        }
    }
    Ok(())
}

async fn cleanup(b: &WorkloadIdentityBinding, ctx: &Context) -> Result<Action, ReconcileError> {
    let ns = b.namespace().unwrap_or_default();
    let key = key(b);
    if b.spec.deletion_policy == DeletionPolicy::Delete {
        // Candidate identities: what the status says we hold, and what the spec derives (a crash after the
        // identity PUT and before the status write leaves only the latter). Validation is permissive here: a
        // spec the policy now refuses must still be cleaned up.
        let owner = owner(b, &ctx.settings);
        let fic_name =
            crate::core::naming::federated_credential_name(&ctx.settings.cluster_name, &ns, &b.name_any());
        let held_policies = held_access_policies(b.status.as_ref());
        // (identity id, managed by idbind, access policies the spec would have granted)
        type Candidate = (ResourceId, bool, Vec<(ResourceId, Permissions)>);
        let mut candidates: Vec<Candidate> = Vec::new();
        if let Some(held) = b.status.as_ref().and_then(|s| s.identity.as_ref())
            && let Ok(id) = ResourceId::parse(&held.resource_id)
        {
            candidates.push((id, held.managed, Vec::new()));
        }
        if let Ok(d) = validate::validate(
            &ns,
            &b.name_any(),
            &b.spec,
            &ctx.settings,
            &Policy {
                allow_any_role: true,
                allow_other_subscriptions: true,
                allow_existing_identity: true,
                require_policy: false,
            },
        ) {
            let id = d.identity.id().clone();
            let managed = matches!(d.identity, DesiredIdentity::Managed { .. });
            // What the spec would have granted by access policy, in case the grant landed and the status
            // write did not. Only for an identity idbind manages: on a brought one, an entry's permissions
            // may be someone else's, so only what the status holds goes.
            let spec_policies: Vec<(ResourceId, Permissions)> = if managed {
                d.vaults
                    .iter()
                    .map(|v| {
                        (
                            v.resource_id.clone(),
                            v.roles
                                .iter()
                                .filter_map(|(_, r)| {
                                    r.builtin().and_then(|b| roles::access_policy_for(b.guid))
                                })
                                .fold(Permissions::default(), |acc, p| acc.union(&p)),
                        )
                    })
                    .filter(|(_, p)| !p.is_empty())
                    .collect()
            } else {
                Vec::new()
            };
            // Identities tagged as this binding's in that resource group, named by no status.
            if let DesiredIdentity::Managed { id, .. } = &d.identity
                && let Some(group) = id.parent()
            {
                for found in ctx.snapshots.identities_owned_by(&group, &owner).await? {
                    if !candidates.iter().any(|(c, _, _)| *c == found.ids.resource_id) {
                        candidates.push((found.ids.resource_id, true, Vec::new()));
                    }
                }
            }
            match candidates.iter_mut().find(|(c, _, _)| *c == id) {
                Some(c) => c.2 = spec_policies,
                None => candidates.push((id, managed, spec_policies)),
            }
        }
        for (id, managed, spec_policies) in candidates {
            let desired = DesiredAzure {
                owner: owner.clone(),
                managed_identity: managed.then(|| ManagedIdentity {
                    resource_id: id.clone(),
                    location: String::new(),
                    tags: Default::default(),
                }),
                fic_name: fic_name.clone(),
                issuer: ctx.settings.issuer.clone(),
                subject: String::new(),
                role_assignments: Vec::new(),
                access_policies: spec_policies,
                held_access_policies: held_policies.clone(),
            };
            // An identity idbind may delete waits for its turn first (a namespace of 1,000 bindings deleted
            // at once must not take every worker for minutes).
            if managed && let Err(wait) = take_turn(ctx, &key, MsiOp::Delete, &id).await {
                return Err(ReconcileError::AwaitingTurn(wait));
            }
            let result = async {
                let observed = azure::observe(ctx.azure.as_ref(), &id, &desired).await?;
                azure::cleanup(ctx.snapshots.as_ref(), &id, &desired, &observed).await
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, identity = %id, "cleanup failed; retrying");
                return Err(e.into());
            }
        }
    }
    // The annotations go from the ServiceAccount the spec names and the one idbind last annotated, if that
    // was another.
    let mut service_accounts = vec![b.spec.service_account_name.clone()];
    service_accounts.extend(
        b.status
            .as_ref()
            .and_then(|s| s.service_account.clone())
            .filter(|p| *p != b.spec.service_account_name),
    );
    for sa in &service_accounts {
        match k8s::apply_service_account(&ctx.client, &ns, sa, None).await {
            Ok(_) | Err(KubeError::ServiceAccountNotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    ctx.succeeded(&key);
    Ok(Action::await_change())
}

/// What `idbind plan` found for a binding: the Azure writes a reconcile would make now, or why it would make
/// none.
#[derive(Debug)]
pub enum DryRun {
    /// Validation or the operator's policy refuses the spec (no policy objects are consulted).
    Invalid(Vec<validate::Invalid>),
    /// Azure's state blocks the binding, or reading it failed: (reason, message).
    Blocked(String, String),
    /// The writes, in order; empty when Azure already matches.
    Writes(Vec<plan::Action>),
}

/// A dry run of one binding's reconcile against Azure: reads only, never a write. A new identity's writes are
/// all listed, as if the identity's PUT had succeeded.
pub async fn dry_run(
    azure: &dyn AzureApi,
    settings: &OperatorSettings,
    policy: &Policy,
    b: &WorkloadIdentityBinding,
) -> DryRun {
    let ns = b.namespace().unwrap_or_default();
    let desired = match validate::validate(&ns, &b.name_any(), &b.spec, settings, policy) {
        Ok(d) => d,
        Err(problems) => return DryRun::Invalid(problems),
    };
    let (id, desired_azure, _) = match desired_azure(
        &desired,
        owner(b, settings),
        held_access_policies(b.status.as_ref()),
        azure,
    )
    .await
    {
        Ok(v) => v,
        Err(f) => return DryRun::Blocked(f.reason, f.message),
    };
    let mut observed = match azure::observe(azure, &id, &desired_azure).await {
        Ok(o) => o.azure,
        Err(e) => return DryRun::Blocked(e.reason().to_string(), e.to_string()),
    };
    let mut writes = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let actions = match plan::plan(&desired_azure, &observed) {
            Ok(a) if a.is_empty() => break,
            Ok(a) => a,
            Err(blocked) => return DryRun::Blocked(blocked.reason().to_string(), blocked.to_string()),
        };
        for action in actions {
            plan::assume(&mut observed, &action, Some("<principal of the new identity>"));
            writes.push(action);
        }
    }
    DryRun::Writes(writes)
}

/// Runs the controller until SIGTERM/SIGINT (see [`run_until`]), watching all namespaces or only `namespace`
/// (one operator per tenant namespace, or one per test).
pub async fn run(ctx: Arc<Context>, concurrency: u16, namespace: Option<&str>) {
    run_until(ctx, concurrency, namespace, || {}, futures::future::pending()).await;
}

/// Runs the controller over bindings and the ServiceAccounts they name (a ServiceAccount created after its
/// binding completes it at once). `synced` is called once both caches hold a full list (readiness); the
/// controller stops, letting running reconciles finish, on SIGTERM/SIGINT or when `shutdown` completes
/// (leadership lost).
///
/// Binding events pass only when the generation, the finalizers or the deletion mark change: idbind's own
/// status and finalizer writes would otherwise trigger a reconcile each, and each reconcile costs ARM reads
/// that count against the managed-identity API's per-identity limit. Drift in Azure is caught by the periodic
/// resync instead.
pub async fn run_until(
    ctx: Arc<Context>,
    concurrency: u16,
    namespace: Option<&str>,
    synced: impl FnOnce() + Send + 'static,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (bindings, service_accounts): (Api<WorkloadIdentityBinding>, Api<ServiceAccount>) = match namespace {
        Some(ns) => (
            Api::namespaced(ctx.client.clone(), ns),
            Api::namespaced(ctx.client.clone(), ns),
        ),
        None => (Api::all(ctx.client.clone()), Api::all(ctx.client.clone())),
    };
    let (store, writer) = reflector::store();
    let _ = ctx.bindings.set(store.clone());
    let (policies, policy_writer) = reflector::store();
    let _ = ctx.policies.set(policies);
    let policy_events = watcher(
        Api::<WorkloadIdentityPolicy>::all(ctx.client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .reflect(policy_writer)
    .touched_objects();
    // The cache keeps what reconciles read: managedFields (often larger than the rest of the object) and
    // kubectl's last-applied copy of the spec are read by nothing here.
    let trigger = watcher(bindings, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|b: &mut WorkloadIdentityBinding| {
            b.managed_fields_mut().clear();
            b.annotations_mut()
                .remove("kubectl.kubernetes.io/last-applied-configuration");
        })
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation.combine(predicates::finalizers),
            PredicateConfig::default(),
        );
    let controller = Controller::for_stream(trigger, store.clone())
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency));
    let sa_index = store.clone();
    let controller = controller.watches(
        service_accounts,
        watcher::Config::default().any_semantic(),
        move |sa: ServiceAccount| {
            let ns = sa.namespace().unwrap_or_default();
            let name = sa.name_any();
            sa_index
                .state()
                .into_iter()
                .filter(|b| {
                    b.namespace().as_deref() == Some(ns.as_str())
                        && (b.spec.service_account_name == name
                            || b.status.as_ref().and_then(|s| s.service_account.as_deref())
                                == Some(name.as_str()))
                })
                .map(|b| ObjectRef::from_obj(&*b))
                .collect::<Vec<_>>()
        },
    );
    // A policy added, changed or deleted may change the verdict on any binding (including ones stalled on
    // PolicyViolation, which wait for a change): judge them all again.
    let all_bindings = store.clone();
    let controller = controller.watches_stream(policy_events, move |_: WorkloadIdentityPolicy| {
        all_bindings
            .state()
            .iter()
            .map(|b| ObjectRef::from_obj(&**b))
            .collect::<Vec<_>>()
    });
    let metrics = ctx.metrics.clone();
    tokio::spawn(async move {
        // The bindings' cache is what reconciles read; once it holds a full list, every binding present at
        // start has been queued.
        if !cache_ready(&store, Duration::MAX).await {
            return;
        }
        tracing::info!(bindings = store.state().len(), "caches synced: ready");
        synced();
        // Bindings by readiness, from the cache (no API call): counted every 10 s.
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            let bindings = store.state();
            let ready = bindings
                .iter()
                .filter(|b| {
                    b.status
                        .as_ref()
                        .is_some_and(|s| conditions::is_true(&s.conditions, conditions::READY))
                })
                .count();
            metrics.set_bindings(ready as u64, (bindings.len() - ready) as u64);
        }
    });
    controller
        .shutdown_on_signal()
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                // A watch that fails (RBAC, the API server gone) stops the controller from seeing anything:
                // say so loudly. Reconcile failures were logged by error_policy.
                Err(kube::runtime::controller::Error::QueueError(e)) => {
                    tracing::warn!(error = %e, "watching Kubernetes failed; retrying");
                }
                Err(e) => tracing::debug!(error = %e, "controller event"),
                Ok(_) => {}
            }
        })
        .await;
}
