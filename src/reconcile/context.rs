//! [`Context`]: everything a reconcile needs, built once before the controller starts. The caches it reads
//! are made first and passed in ([`caches`]), so no step can run against a cache that was never set: a
//! missing policies cache would otherwise read as "no policies" and fail open.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use kube::{
    Client, ResourceExt,
    runtime::{
        controller::Action,
        events::Reporter,
        reflector::{self, Store, store::Writer},
    },
};

use crate::{
    api::{binding::WorkloadIdentityBinding, policy::WorkloadIdentityPolicy},
    azure::{AzureApi, access::Azure, budget::SharedBudget},
    core::{
        claim::{self, Claim, Holder},
        grants, naming,
        plan::{Federation, Owner},
        policy::Rule,
        removal::Release,
        report::Requeue,
        resource_id::ResourceId,
        settings::{Ceiling, OperatorSettings},
    },
    k8s::{events::Events, secret_provider_class::Classes},
    telemetry::Metrics,
};

/// The controller's caches of bindings and policies, which the reconcile reads (never the API).
#[derive(Clone)]
pub struct Caches {
    pub bindings: Store<WorkloadIdentityBinding>,
    pub policies: Store<WorkloadIdentityPolicy>,
}

/// The writing ends of [`Caches`], which the controller's watches fill.
pub struct CacheWriters {
    pub bindings: Writer<WorkloadIdentityBinding>,
    pub policies: Writer<WorkloadIdentityPolicy>,
}

/// Empty caches and the writers that fill them.
pub fn caches() -> (Caches, CacheWriters) {
    let (bindings, bindings_writer) = reflector::store();
    let (policies, policies_writer) = reflector::store();
    (Caches { bindings, policies }, CacheWriters { bindings: bindings_writer, policies: policies_writer })
}

impl Caches {
    /// The policies as rules, once their cache holds a full list: judging a binding against a partial list
    /// could let through what a policy not yet seen forbids. `None` while it does not (waiting up to 10 s).
    pub async fn policy_rules(&self, subscription: &str) -> Option<Vec<Rule>> {
        if !cache_ready(&self.policies, Duration::from_secs(10)).await {
            return None;
        }
        let policies = self.policies.state();
        Some(policies.iter().map(|p| Rule::from_policy(&p.name_any(), &p.spec, subscription)).collect())
    }

    /// The binding that holds `b`'s ServiceAccount ahead of it, if another does.
    pub fn service_account_holder(&self, b: &WorkloadIdentityBinding) -> Option<Holder> {
        let ns = b.namespace();
        self.holder(
            b,
            |o| (o.namespace() == ns).then(|| o.spec.service_account_name.clone()),
            ResourceExt::name_any,
        )
    }

    /// The binding (`namespace/name`) that holds the identity `b` brings ahead of it, if another does; only
    /// bindings `admissible` says may bring it count.
    pub fn identity_holder(
        &self,
        b: &WorkloadIdentityBinding,
        admissible: &dyn Fn(&WorkloadIdentityBinding) -> bool,
    ) -> Option<Holder> {
        let mine = brought_identity(b)?;
        let me = key(b);
        let claims = |o: &WorkloadIdentityBinding| {
            brought_identity(o).filter(|target| *target == mine && (key(o) == me || admissible(o)))
        };
        self.holder(b, claims, key)
    }

    /// Whether a binding other than `b`, not being deleted, brings `identity`: then the role assignments on
    /// its principal may be that binding's, and `b` removes only its own federated credential.
    pub fn brought_by_others(&self, b: &WorkloadIdentityBinding, identity: &ResourceId) -> bool {
        let target = identity.to_string().to_ascii_lowercase();
        let me = key(b);
        self.bindings
            .state()
            .iter()
            .any(|o| !deleting(o) && key(o) != me && brought_identity(o).is_some_and(|t| t == target))
    }

    /// The binding of `b`'s namespace that holds SecretProviderClass `class` ahead of `b` (it carries one
    /// client id), if another names it.
    pub fn class_holder(&self, b: &WorkloadIdentityBinding, class: &str) -> Option<Holder> {
        let ns = b.namespace();
        let names = |o: &WorkloadIdentityBinding| {
            (o.namespace() == ns && o.spec.secret_provider_classes.iter().any(|c| c == class))
                .then(|| class.to_string())
        };
        self.holder(b, names, ResourceExt::name_any)
    }

    /// Whether a binding of `b`'s namespace other than `b`, not being deleted, names SecretProviderClass
    /// `class`: it keeps what idbind wrote there.
    pub fn class_named_by_others(&self, b: &WorkloadIdentityBinding, class: &str) -> bool {
        let (ns, me) = (b.namespace(), key(b));
        self.bindings.state().iter().any(|o| {
            o.namespace() == ns
                && key(o) != me
                && !deleting(o)
                && o.spec.secret_provider_classes.iter().any(|c| c == class)
        })
    }

    /// Of the bindings claiming what `target_of` says `b` claims, the one ahead of `b` (by `name_of`).
    fn holder(
        &self,
        b: &WorkloadIdentityBinding,
        target_of: impl Fn(&WorkloadIdentityBinding) -> Option<String>,
        name_of: impl Fn(&WorkloadIdentityBinding) -> String,
    ) -> Option<Holder> {
        let my_target = target_of(b)?;
        let others = self.bindings.state();
        let claims: Vec<(String, String, i64, bool)> = others
            .iter()
            .filter_map(|o| Some((name_of(o), target_of(o)?, created(o), deleting(o))))
            .collect();
        let my_name = name_of(b);
        let me = Claim { binding: &my_name, target: &my_target, created: created(b), deleting: deleting(b) };
        let others = claims.iter().map(|(binding, target, created, deleting)| Claim {
            binding,
            target,
            created: *created,
            deleting: *deleting,
        });
        claim::held_by(&me, others)
    }
}

/// The identity a binding brings, as a claim target (its id in lower case: ARM ids are case-insensitive).
fn brought_identity(b: &WorkloadIdentityBinding) -> Option<String> {
    let text = b.spec.identity.resource_id.as_deref()?;
    ResourceId::parse(text).ok().map(|id| id.to_string().to_ascii_lowercase())
}

/// Creation time in seconds; a binding without one (never the case once stored) comes last.
fn created(b: &WorkloadIdentityBinding) -> i64 {
    b.metadata.creation_timestamp.as_ref().map_or(i64::MAX, |t| t.0.as_second())
}

fn deleting(b: &WorkloadIdentityBinding) -> bool {
    b.metadata.deletion_timestamp.is_some()
}

/// Waits (up to `limit`) until a reflector's store holds its first full list. kube-runtime 5's
/// `Store::wait_until_ready` wakes only the last of several concurrent waiters (its one-shot channel keeps
/// one waker), so a waiter that polls before the controller's own never wakes; asking again every half second
/// sidesteps that (the readiness, once reached, is kept).
pub async fn cache_ready<K: reflector::Lookup + Clone + 'static>(store: &Store<K>, limit: Duration) -> bool
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

/// Everything a reconcile needs.
pub struct Context {
    pub client: Client,
    /// Azure, through its three doors: fresh reads, the shared lists, writes.
    pub azure: Azure,
    pub settings: OperatorSettings,
    /// The operator's flags: the most any namespace may bind.
    pub ceiling: Ceiling,
    pub caches: Caches,
    pub events: Events,
    /// Whether the cluster serves SecretProviderClasses (discovery), for the wiring step and the watch.
    pub classes: Classes,
    /// Verification (`--verify`); `None` when off.
    pub verifier: Option<super::verify::Verifier>,
    pub metrics: Arc<Metrics>,
    resync: Duration,
    /// The request budget the Azure layer spends (the same one), for turns: see [`super::turns`].
    pub(super) budget: Option<SharedBudget>,
    /// Consecutive failures per binding, for the backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        azure: Arc<dyn AzureApi>,
        settings: OperatorSettings,
        ceiling: Ceiling,
        resync: Duration,
        caches: Caches,
    ) -> Self {
        let reporter = Reporter { controller: "idbind".into(), instance: std::env::var("POD_NAME").ok() };
        Context {
            events: Events::new(client.clone(), reporter),
            classes: Classes::new(client.clone()),
            verifier: None,
            client,
            azure: Azure::new(azure, resync),
            settings,
            ceiling,
            caches,
            metrics: Metrics::new(),
            resync,
            budget: None,
            failures: Mutex::default(),
        }
    }

    /// Proves bindings before they are Ready (see [`super::verify`]).
    pub fn with_verifier(mut self, verifier: Option<super::verify::Verifier>) -> Self {
        self.verifier = verifier;
        self
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
    /// [`crate::azure::snapshot::Snapshots::with_federation_max_age`]).
    pub fn with_federation_check(mut self, resyncs: u32) -> Self {
        self.azure = self.azure.with_federation_max_age(self.resync * resyncs.max(1), self.resync);
        self
    }

    /// When kube-runtime should run the binding keyed `key` again.
    pub fn action(&self, key: &str, requeue: Requeue) -> Action {
        match requeue {
            Requeue::AwaitChange => Action::await_change(),
            Requeue::After(wait) => Action::requeue(wait),
            Requeue::Backoff { retry_after, at_least } => {
                Action::requeue(self.backoff(key, retry_after).max(at_least))
            }
            Requeue::Resync => {
                self.succeeded(key);
                Action::requeue(self.resync_after(key))
            }
        }
    }

    /// Exponential per-object backoff (1 s … 5 min), or Azure's Retry-After when it gave one.
    pub fn backoff(&self, key: &str, retry_after: Option<Duration>) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let exp = Duration::from_secs(1u64 << (*n - 1).min(8)).min(Duration::from_secs(300));
        retry_after.map_or(exp, |ra| ra.max(Duration::from_millis(100)))
    }

    /// The binding keyed `key` succeeded: its backoff starts over.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
    }

    /// The steady-state requeue, jittered by up to 10% so thousands of bindings do not resync in lockstep.
    fn resync_after(&self, key: &str) -> Duration {
        let jitter = (fnv(key) % 1000) as f64 / 10_000.0;
        self.resync.mul_f64(1.0 + jitter)
    }

    /// Who `b` is, as ownership tags record it.
    pub fn owner(&self, b: &WorkloadIdentityBinding) -> Owner {
        Owner {
            cluster: self.settings.cluster_name.clone(),
            namespace: b.namespace().unwrap_or_default(),
            binding: b.name_any(),
            uid: b.uid(),
        }
    }

    /// What `b` lets go through `identity` (created by idbind when `managed`, else brought), its grants
    /// looked for where `grants` says: the one constructor of a removal's input, every field named.
    pub fn release(
        &self,
        b: &WorkloadIdentityBinding,
        identity: ResourceId,
        managed: bool,
        grants: grants::Desired,
    ) -> Release {
        let namespace = b.namespace().unwrap_or_default();
        let name = naming::federated_credential_name(&self.settings.cluster_name, &namespace, &b.name_any());
        Release {
            owner: self.owner(b),
            identity,
            managed,
            federation: Federation {
                name,
                issuer: self.settings.issuer.clone(),
                subject: naming::subject(&namespace, &b.spec.service_account_name),
            },
            grants,
            operator_client_id: self.settings.operator_client_id.clone(),
        }
    }
}

/// `namespace/name`: the binding's key for backoff, turns and logs.
pub fn key(b: &WorkloadIdentityBinding) -> String {
    format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any())
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
