//! The controller: kube-runtime's watches, queue and finalizer around [`crate::reconcile`]. Bindings and the
//! ServiceAccounts they name are watched (a ServiceAccount created after its binding completes it at once),
//! and policies (a policy change re-judges every binding); so are the SecretProviderClasses bindings name,
//! once the cluster serves them (a class created, or edited by hand, is wired again at once), and the
//! ConfigMaps bindings export to. Each reconcile's outcome is counted in the metrics.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::{
    Api, Client, ResourceExt,
    api::DynamicObject,
    core::PartialObjectMeta,
    runtime::{
        Controller, Predicate, PredicateConfig, WatchStreamExt,
        controller::Action,
        finalizer::{Event as Finalizer, finalizer},
        predicates,
        reflector::{ObjectRef, Store},
        watcher,
    },
};

use crate::core::reason::Reason;
use crate::{
    api::{binding::WorkloadIdentityBinding, policy::WorkloadIdentityPolicy},
    core::{conditions, wiring::EXPORT_LABEL},
    k8s::secret_provider_class::Classes,
    reconcile::{self, CacheWriters, Context, FINALIZER, ReconcileError, context::cache_ready, key},
    telemetry::Metrics,
};

/// Runs the controller until SIGTERM/SIGINT (see [`run_until`]), watching all namespaces or only `namespace`
/// (one operator per tenant namespace, or one per test).
pub async fn run(ctx: Arc<Context>, writers: CacheWriters, concurrency: u16, namespace: Option<&str>) {
    run_until(ctx, writers, concurrency, namespace, || {}, futures::future::pending()).await;
}

/// Runs the controller. `synced` is called once the bindings' cache holds a full list (readiness); the
/// controller stops, letting running reconciles finish, on SIGTERM/SIGINT or when `shutdown` completes
/// (leadership lost).
///
/// Binding events pass only when the generation, the finalizers or the deletion mark change: idbind's own
/// status and finalizer writes would otherwise trigger a reconcile each, and each reconcile costs ARM reads
/// that count against the managed-identity API's per-identity limit. Drift in Azure is caught by the periodic
/// resync instead.
pub async fn run_until(
    ctx: Arc<Context>,
    writers: CacheWriters,
    concurrency: u16,
    namespace: Option<&str>,
    synced: impl FnOnce() + Send + 'static,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let classes = class_events(ctx.classes.clone(), client.clone(), namespace, ctx.caches.bindings.clone());
    let (bindings, service_accounts): (Api<WorkloadIdentityBinding>, Api<ServiceAccount>) = match namespace {
        Some(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns)),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let policy_events = watcher(
        Api::<WorkloadIdentityPolicy>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .reflect(writers.policies)
    .touched_objects();
    // The cache keeps what reconciles read: managedFields (often larger than the rest of the object) and
    // kubectl's last-applied copy of the spec are read by nothing here.
    let trigger = watcher(bindings, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|b: &mut WorkloadIdentityBinding| {
            b.managed_fields_mut().clear();
            b.annotations_mut().remove("kubectl.kubernetes.io/last-applied-configuration");
        })
        .reflect(writers.bindings)
        .applied_objects()
        .predicate_filter(predicates::generation.combine(predicates::finalizers), PredicateConfig::default());
    let store = ctx.caches.bindings.clone();
    let (by_service_account, every_binding) = (store.clone(), store.clone());
    tokio::spawn(ctx.classes.clone().discover_until_served(CLASSES_RECHECK));
    let controller = Controller::for_stream(trigger, store.clone())
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .watches(service_accounts, watcher::Config::default().any_semantic(), move |sa: ServiceAccount| {
            bindings_of(&by_service_account, &sa)
        })
        // A policy added, changed or deleted may change the verdict on any binding (including ones stalled on
        // PolicyViolation, which wait for a change): judge them all again.
        .watches_stream(policy_events, move |_: WorkloadIdentityPolicy| {
            every_binding.state().iter().map(|b| ObjectRef::from_obj(&**b)).collect::<Vec<_>>()
        })
        // An exported ConfigMap edited or deleted by hand is written again at once.
        .owns_stream(exported_config_maps(client, namespace))
        .reconcile_on(classes);
    tokio::spawn(count_bindings(store, ctx.metrics.clone(), synced));
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

/// How often discovery is asked whether SecretProviderClasses are served, until they are (a binding naming
/// classes asks too, when it is reconciled).
const CLASSES_RECHECK: Duration = Duration::from_secs(60);

/// The bindings to reconcile for each SecretProviderClass event: none until the cluster serves the API (the
/// watch starts then), and after that those of the class's namespace that name it, now or when last wired.
fn class_events(
    classes: Classes,
    client: Client,
    namespace: Option<&str>,
    store: Store<WorkloadIdentityBinding>,
) -> impl Stream<Item = ObjectRef<WorkloadIdentityBinding>> + Send + 'static {
    let namespace = namespace.map(str::to_string);
    stream::once(async move { classes.served().await })
        .filter_map(|served| async move { served })
        .flat_map(move |resource| {
            let api: Api<PartialObjectMeta<DynamicObject>> = match &namespace {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
                None => Api::all_with(client.clone(), &resource),
            };
            watcher(api, watcher::Config::default().any_semantic()).default_backoff().touched_objects()
        })
        .filter_map(|event| async move {
            event
                .map_err(|e| tracing::warn!(error = %e, "watching SecretProviderClasses failed; retrying"))
                .ok()
        })
        .flat_map(move |class| stream::iter(bindings_naming(&store, &class)))
}

/// Events of the ConfigMaps bindings export to (their label selects them; metadata only: the owner reference
/// is all the trigger reads).
fn exported_config_maps(
    client: Client,
    namespace: Option<&str>,
) -> impl Stream<Item = Result<PartialObjectMeta<ConfigMap>, watcher::Error>> + Send + 'static {
    let (label, value) = EXPORT_LABEL;
    let exported = watcher::Config::default().labels(&format!("{label}={value}")).any_semantic();
    let config_maps: Api<PartialObjectMeta<ConfigMap>> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    watcher(config_maps, exported).default_backoff().touched_objects()
}

/// The bindings of `class`'s namespace that name it, or named it when idbind last wired it.
fn bindings_naming(
    store: &Store<WorkloadIdentityBinding>,
    class: &PartialObjectMeta<DynamicObject>,
) -> Vec<ObjectRef<WorkloadIdentityBinding>> {
    let ns = class.namespace();
    let name = class.name_any();
    let names_it = |b: &WorkloadIdentityBinding| {
        let named = b.spec.secret_provider_classes.iter();
        let wired = b.status.iter().flat_map(|s| s.secret_provider_classes.iter());
        named.chain(wired).any(|c| *c == name)
    };
    store
        .state()
        .iter()
        .filter(|b| b.namespace() == ns && names_it(b))
        .map(|b| ObjectRef::from_obj(&**b))
        .collect()
}

/// The bindings that name `sa`, now or as the one idbind last annotated.
fn bindings_of(
    store: &Store<WorkloadIdentityBinding>,
    sa: &ServiceAccount,
) -> Vec<ObjectRef<WorkloadIdentityBinding>> {
    let ns = sa.namespace();
    let name = sa.name_any();
    let names_it = |b: &WorkloadIdentityBinding| {
        b.spec.service_account_name == name
            || b.status.as_ref().and_then(|s| s.service_account.as_deref()) == Some(name.as_str())
    };
    store
        .state()
        .iter()
        .filter(|b| b.namespace() == ns && names_it(b))
        .map(|b| ObjectRef::from_obj(&**b))
        .collect()
}

/// Once the bindings' cache holds a full list (every binding present at start has been queued), says so
/// (`synced`), and from then on `idbind_bindings` is counted from the cache at each scrape (no API call).
async fn count_bindings(store: Store<WorkloadIdentityBinding>, metrics: Arc<Metrics>, synced: impl FnOnce()) {
    if !cache_ready(&store, Duration::MAX).await {
        return;
    }
    tracing::info!(bindings = store.state().len(), "caches synced: ready");
    synced();
    metrics.count_bindings_with(Box::new(move || {
        let bindings = store.state();
        let is_ready = |b: &&Arc<WorkloadIdentityBinding>| {
            b.status.as_ref().is_some_and(|s| conditions::is_true(&s.conditions, conditions::READY))
        };
        let ready = bindings.iter().filter(is_ready).count();
        (ready as u64, (bindings.len() - ready) as u64)
    }));
}

/// The reconcile entry point for kube-runtime: the finalizer around [`reconcile::apply`] and
/// [`reconcile::cleanup`], and the metrics of the outcome.
pub async fn reconcile(
    binding: Arc<WorkloadIdentityBinding>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let api: Api<WorkloadIdentityBinding> =
        Api::namespaced(ctx.client.clone(), &binding.namespace().unwrap_or_default());
    // What `apply` reports of its outcome; `None` when it did not run (cleanup, or the finalizer's first
    // add).
    let mut applied = None;
    let slot = &mut applied;
    let context = &ctx;
    let result = finalizer(&api, FINALIZER, binding, move |event| async move {
        match event {
            Finalizer::Apply(b) => {
                let done = reconcile::apply(&b, context).await?;
                *slot = Some(done.result);
                Ok(done.action)
            }
            Finalizer::Cleanup(b) => reconcile::cleanup::cleanup(&b, context).await,
        }
    })
    .await
    .map_err(unwrap_finalizer_error);
    let (label, category) = match (&result, applied) {
        (Ok(_), Some(result)) => result,
        (Ok(_), None) => ("ok", None),
        (Err(ReconcileError::AwaitingTurn(_)), _) => ("deferred", None),
        (Err(e), _) => ("error", Some(e.category())),
    };
    ctx.metrics.reconcile_finished(label, category.map(Reason::as_str), started.elapsed());
    result
}

/// kube-runtime's error policy: only Kubernetes errors and cleanup failures reach it (Azure outcomes of a
/// reconcile are status).
pub fn error_policy(
    binding: Arc<WorkloadIdentityBinding>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    if let ReconcileError::AwaitingTurn(wait) = error {
        return Action::requeue(*wait);
    }
    tracing::warn!(binding = %key(&binding), %error, "reconcile failed");
    Action::requeue(ctx.backoff(&key(&binding), None))
}

/// The reconcile's and the cleanup's own errors keep their category (a throttled cleanup is Throttled in the
/// metrics, not FinalizerFailed); only the finalizer helper's own failures are FinalizerFailed.
fn unwrap_finalizer_error(e: kube::runtime::finalizer::Error<ReconcileError>) -> ReconcileError {
    use kube::runtime::finalizer::Error;
    match e {
        Error::ApplyFailed(e) | Error::CleanupFailed(e) => e,
        e => ReconcileError::Finalizer(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::finalizer::Error;

    use super::*;
    use crate::azure::AzureError;

    #[test]
    fn a_failed_cleanup_keeps_its_category() {
        let throttled = || AzureError::Arm {
            operation: "UserAssignedIdentities_Delete",
            status: 429,
            code: "TooManyRequests".into(),
            message: "slow down".into(),
            retry_after: None,
        };
        let table: Vec<(Error<ReconcileError>, Reason)> = vec![
            (Error::CleanupFailed(ReconcileError::Azure(throttled())), Reason::Throttled),
            (Error::ApplyFailed(ReconcileError::Azure(throttled())), Reason::Throttled),
            (Error::UnnamedObject, Reason::FinalizerFailed),
        ];
        for (error, category) in table {
            let text = error.to_string();
            assert_eq!(unwrap_finalizer_error(error).category(), category, "{text}");
        }
    }
}
