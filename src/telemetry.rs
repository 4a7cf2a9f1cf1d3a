//! Prometheus metrics and logging set-up.
//!
//! Every metric is labelled only by values from small, closed sets (a result, an error category, an ARM
//! operation, an HTTP status, readiness), never by object name or namespace: a label per binding would grow
//! the series count with the cluster and make `/metrics` the operator's biggest cost. Per-object detail
//! belongs in logs, Events and status conditions.
//!
//! The exposition is the classic Prometheus text format (0.0.4), which every scraper reads (Prometheus, Azure
//! Monitor managed Prometheus, the OpenTelemetry collector, `curl`).

use std::{
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use crate::azure::{
    budget::{SharedBudget, SharedLimit},
    governed::ArmObserver,
};
use prometheus_client::{
    encoding::{EncodeLabelSet, prometheus_text},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Metric, Registry},
};

/// Reconcile and ARM latencies: from a cache-only no-op (a few ms) to a slow ARM write with retries inside
/// the SDK (tens of seconds).
const LATENCY_BUCKETS: [f64; 14] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0];

/// Budget waits: usually zero (not observed as a wait at all by most callers), up to the refill time of an
/// exhausted bucket.
const WAIT_BUCKETS: [f64; 11] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CategoryLabels {
    category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ArmLabels {
    operation: &'static str,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadyLabels {
    ready: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HeapLabels {
    kind: &'static str,
}

/// Reads (live bytes allocated, bytes the allocator keeps resident), for `idbind_heap_bytes`.
pub type HeapStats = fn() -> Option<(u64, u64)>;

static HEAP_STATS: std::sync::OnceLock<HeapStats> = std::sync::OnceLock::new();

/// The binary sets this to its allocator's statistics (the library does not choose the allocator); without it
/// `idbind_heap_bytes` is absent.
pub fn set_heap_stats(stats: HeapStats) {
    let _ = HEAP_STATS.set(stats);
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

const RECONCILES_HELP: &str = "Finished reconciles of WorkloadIdentityBindings, by result (ok, error, or \
                               deferred: left to come back at its turn at the request budget)";
const THROTTLED_HELP: &str = "Azure's 429s to requests the client-side budget admitted, by the shared limit \
                               they were for: someone else (another cluster's operator) spends it too";
const BUDGET_RATE_HELP: &str = "Requests per second idbind allows itself of each limit it shares with other \
                                callers: the documented rate until a 429 teaches less, growing back while \
                                none comes";
const HEAP_HELP: &str = "Heap bytes by kind: allocated (live objects: caches, in-flight work) and resident (what \
                         the allocator holds from the OS)";

/// `metric`, registered under `name` with `help`.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The operator's metrics. Shared as `Arc<Metrics>`; every recording method takes `&self` and is lock-free
/// apart from the first use of a new label set.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_errors: Family<CategoryLabels, Counter>,
    reconcile_duration: Histogram,
    arm_requests: Family<ArmLabels, Counter>,
    arm_request_duration: HistogramFamily<OperationLabels>,
    budget_wait: Histogram,
    throttled: Family<LimitLabels, Counter>,
    budget_rate: Family<LimitLabels, Gauge<f64, AtomicU64>>,
    /// The budget whose learned rates `budget_rate` shows, read at each scrape.
    budget: std::sync::OnceLock<SharedBudget>,
    bindings: Family<ReadyLabels, Gauge>,
    leader: Gauge,
    heap: Family<HeapLabels, Gauge>,
    /// Counts bindings (ready, not ready) at each scrape, once the controller's cache is synced.
    binding_counter: std::sync::OnceLock<BindingCounter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("registry", &self.registry).finish_non_exhaustive()
    }
}

/// Counts the bindings the controller's cache holds: (ready, not ready).
pub type BindingCounter = Box<dyn Fn() -> (u64, u64) + Send + Sync>;

impl Metrics {
    /// A fresh registry with every metric registered (all at zero). One per process: the controller, the ARM
    /// layer and the leader elector record into the same instance.
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("idbind");
        let r = &mut registry;
        let reconciles = registered(r, "reconciles", RECONCILES_HELP, Family::default());
        let reconcile_errors = registered(
            r,
            "reconcile_errors",
            "Failed reconciles by the error's stable category (the Ready condition's reason)",
            Family::default(),
        );
        let reconcile_duration = registered(
            r,
            "reconcile_duration_seconds",
            "Time one reconcile took, from start to status written",
            latency_histogram(),
        );
        let arm_requests = registered(
            r,
            "arm_requests",
            "Azure Resource Manager requests by REST operation and HTTP status (0: no HTTP answer)",
            Family::default(),
        );
        let arm_request_duration = registered(
            r,
            "arm_request_duration_seconds",
            "Azure Resource Manager request latency by REST operation",
            Family::new_with_constructor(latency_histogram as fn() -> Histogram),
        );
        let budget_wait = registered(
            r,
            "budget_wait_seconds",
            "Time ARM requests waited for the client-side request budget (throttling by idbind itself)",
            Histogram::new(WAIT_BUCKETS),
        );
        let throttled = registered(r, "azure_throttled", THROTTLED_HELP, Family::default());
        let budget_rate = registered(r, "budget_rate", BUDGET_RATE_HELP, Family::default());
        let bindings = registered(r, "bindings", "WorkloadIdentityBindings by readiness", Family::default());
        let leader =
            registered(r, "leader", "1 while this replica holds the leader lease, else 0", Gauge::default());
        let heap = registered(r, "heap_bytes", HEAP_HELP, Family::default());
        let metrics = Metrics {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            arm_requests,
            arm_request_duration,
            budget_wait,
            throttled,
            budget_rate,
            budget: std::sync::OnceLock::new(),
            bindings,
            leader,
            heap,
            binding_counter: std::sync::OnceLock::new(),
        };
        metrics.start_at_zero();
        Arc::new(metrics)
    }

    /// Series with a known, fixed label set exist from the start, so a dashboard shows 0 and `rate()` sees
    /// the first increment, rather than no data until something happens.
    fn start_at_zero(&self) {
        for result in ["ok", "error", "deferred"] {
            let _ = self.reconciles.get_or_create(&ResultLabels { result });
        }
        for ready in ["true", "false"] {
            self.bindings.get_or_create(&ReadyLabels { ready }).set(0);
        }
        for limit in SharedLimit::ALL {
            let _ = self.throttled.get_or_create(&LimitLabels { limit: limit.label() });
        }
    }

    /// One finished reconcile. `result` is "ok", "error" or "deferred"; `category` is the error's stable
    /// PascalCase category (e.g. "Throttled", "PolicyViolation") when it failed.
    ///
    /// A failure without a category is counted as `Unknown` so the per-category counters always add up to the
    /// error count.
    pub fn reconcile_finished(&self, result: &'static str, category: Option<&str>, elapsed: Duration) {
        self.reconciles.get_or_create(&ResultLabels { result }).inc();
        if result == "error" {
            let category = category.unwrap_or("Unknown").to_string();
            self.reconcile_errors.get_or_create(&CategoryLabels { category }).inc();
        }
        // A deferral takes milliseconds and does nothing: counting it would make reconciles look faster the
        // larger the backlog.
        if result != "deferred" {
            self.reconcile_duration.observe(elapsed.as_secs_f64());
        }
    }

    /// One ARM request: operation as in the REST spec ("UserAssignedIdentities_Get"), HTTP status (0 when no
    /// HTTP answer came).
    pub fn arm_request(&self, operation: &'static str, status: u16, elapsed: Duration) {
        self.arm_requests.get_or_create(&ArmLabels { operation, code: status }).inc();
        self.arm_request_duration
            .get_or_create(&OperationLabels { operation })
            .observe(elapsed.as_secs_f64());
    }

    /// Time one ARM request waited for the client-side request budget.
    pub fn budget_waited(&self, elapsed: Duration) {
        self.budget_wait.observe(elapsed.as_secs_f64());
    }

    /// Bindings by readiness (gauge, label ready="true"|"false").
    pub fn set_bindings(&self, ready: u64, not_ready: u64) {
        self.bindings
            .get_or_create(&ReadyLabels { ready: "true" })
            .set(i64::try_from(ready).unwrap_or(i64::MAX));
        self.bindings
            .get_or_create(&ReadyLabels { ready: "false" })
            .set(i64::try_from(not_ready).unwrap_or(i64::MAX));
    }

    /// From now on `idbind_bindings` is counted by `counter` at each scrape, so it is never older than the
    /// controller's cache (a second call is ignored).
    pub fn count_bindings_with(&self, counter: BindingCounter) {
        let _ = self.binding_counter.set(counter);
    }

    /// From now on `idbind_budget_rate` shows `budget`'s learned rates at each scrape (a second call is
    /// ignored).
    pub fn watch_budget(&self, budget: SharedBudget) {
        let _ = self.budget.set(budget);
    }

    /// Azure answered 429 for `limit` although the budget admitted the request.
    pub fn azure_throttled(&self, limit: SharedLimit) {
        self.throttled.get_or_create(&LimitLabels { limit: limit.label() }).inc();
    }

    /// 1 while this replica holds the leader lease.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The Prometheus text exposition of every metric; its content type is [`Metrics::content_type`].
    pub fn encode(&self) -> String {
        if let Some(counter) = self.binding_counter.get() {
            let (ready, not_ready) = counter();
            self.set_bindings(ready, not_ready);
        }
        if let Some(budget) = self.budget.get() {
            for (limit, per_second) in budget.learned_rates() {
                self.budget_rate.get_or_create(&LimitLabels { limit: limit.label() }).set(per_second);
            }
        }
        if let Some((allocated, resident)) = HEAP_STATS.get().and_then(|stats| stats()) {
            self.heap
                .get_or_create(&HeapLabels { kind: "allocated" })
                .set(i64::try_from(allocated).unwrap_or(i64::MAX));
            self.heap
                .get_or_create(&HeapLabels { kind: "resident" })
                .set(i64::try_from(resident).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would only come from a label value the format
        // cannot carry, and a partial exposition beats none for a scrape.
        if let Err(e) = prometheus_text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        out
    }

    /// The content type of [`Metrics::encode`]'s output (Prometheus text format 0.0.4).
    pub fn content_type() -> &'static str {
        prometheus_text::CONTENT_TYPE
    }
}

/// Installs the global tracing subscriber: JSON lines (json=true) or human text, level from RUST_LOG (default
/// "info,kube=warn").
///
/// kube's own INFO lines (every watch restart) drown the operator's, hence `kube=warn` by default. A second
/// call is a no-op, so tests and embedders may call it freely.
///
/// Whatever RUST_LOG asks for, the Azure SDK and the HTTP stack never log below INFO: at DEBUG, azure_core
/// prints every request with its `Authorization: Bearer …` header, and the HTTP and OAuth crates below it can
/// print token responses (tests/operator_as_pod.rs runs the operator at trace level and looks for tokens in
/// its log).
pub fn init_logging(json: bool) {
    use tracing_subscriber::{
        EnvFilter, Layer, filter::filter_fn, fmt, layer::SubscriberExt, util::SubscriberInitExt,
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn"));
    let no_secrets =
        filter_fn(|meta| *meta.level() <= tracing::Level::INFO || !may_log_secrets(meta.target()));
    // Span fields (reconcile's object name, the ARM operation) go on every JSON line, so a log query can
    // follow one reconcile without parsing messages.
    let layer = if json {
        fmt::layer().json().with_current_span(true).with_span_list(false).boxed()
    } else {
        // Colours only for a person at a terminal: a log file or a collector would get escape codes.
        fmt::layer().with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())).boxed()
    };
    let installed =
        tracing_subscriber::registry().with(layer.with_filter(filter).with_filter(no_secrets)).try_init();
    if installed.is_err() {
        tracing::debug!("a tracing subscriber was already installed; keeping it");
    }
}

/// Targets that log credentials or tokens at DEBUG or TRACE.
fn may_log_secrets(target: &str) -> bool {
    [
        "azure_core",
        "azure_identity",
        "azure_mgmt",
        "oauth2",
        "reqwest",
        "hyper",
        "h2",
        "rustls",
        "tower_http",
        "kube_client::client::auth",
    ]
    .iter()
    .any(|t| target.starts_with(t))
}

/// The Azure layer reports each ARM request here.
impl ArmObserver for Metrics {
    fn request(&self, operation: &'static str, status: u16, elapsed: Duration) {
        self.arm_request(operation, status, elapsed);
    }

    fn budget_waited(&self, waited: Duration) {
        Metrics::budget_waited(self, waited);
    }

    fn throttled(&self, limit: SharedLimit) {
        self.azure_throttled(limit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_with(text: &str, prefix: &str) -> Vec<String> {
        text.lines().filter(|l| l.starts_with(prefix)).map(str::to_string).collect()
    }

    #[test]
    fn fresh_metrics_expose_the_fixed_series_at_zero() {
        let m = Metrics::new();
        let text = m.encode();
        for name in [
            "idbind_reconciles_total",
            "idbind_reconcile_duration_seconds",
            "idbind_budget_wait_seconds",
            "idbind_azure_throttled_total",
            "idbind_bindings",
            "idbind_leader",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing from:\n{text}");
        }
        assert!(text.contains("idbind_reconciles_total{result=\"ok\"} 0\n"), "{text}");
        assert!(text.contains("idbind_reconciles_total{result=\"error\"} 0\n"), "{text}");
        assert!(text.contains("idbind_leader 0\n"), "{text}");
        assert!(text.contains("idbind_bindings{ready=\"true\"} 0\n"), "{text}");
        assert!(text.contains("idbind_bindings{ready=\"false\"} 0\n"), "{text}");
        assert!(text.contains("idbind_reconcile_duration_seconds_count 0\n"), "{text}");
    }

    #[test]
    fn heap_bytes_come_from_the_binary_s_allocator_statistics() {
        set_heap_stats(|| Some((12_345, 65_536)));
        let text = Metrics::new().encode();
        assert!(text.contains("idbind_heap_bytes{kind=\"allocated\"} 12345\n"), "{text}");
        assert!(text.contains("idbind_heap_bytes{kind=\"resident\"} 65536\n"), "{text}");
    }

    #[test]
    fn reconciles_count_by_result_and_errors_by_category() {
        let m = Metrics::new();
        m.reconcile_finished("ok", None, Duration::from_millis(20));
        m.reconcile_finished("ok", None, Duration::from_millis(30));
        m.reconcile_finished("error", Some("Throttled"), Duration::from_millis(700));
        m.reconcile_finished("error", Some("PolicyViolation"), Duration::from_millis(5));
        m.reconcile_finished("error", Some("Throttled"), Duration::from_secs(3));
        m.reconcile_finished("error", None, Duration::from_secs(1));
        m.reconcile_finished("deferred", None, Duration::from_millis(3));
        let text = m.encode();
        assert!(text.contains("idbind_reconciles_total{result=\"deferred\"} 1\n"), "{text}");
        assert!(text.contains("idbind_reconciles_total{result=\"ok\"} 2\n"), "{text}");
        assert!(text.contains("idbind_reconciles_total{result=\"error\"} 4\n"), "{text}");
        let mut errors = lines_with(&text, "idbind_reconcile_errors_total{");
        errors.sort();
        assert_eq!(
            errors,
            [
                "idbind_reconcile_errors_total{category=\"PolicyViolation\"} 1",
                "idbind_reconcile_errors_total{category=\"Throttled\"} 2",
                "idbind_reconcile_errors_total{category=\"Unknown\"} 1"
            ]
        );
        assert!(text.contains("idbind_reconcile_duration_seconds_count 6\n"), "{text}");
        assert!(text.contains("idbind_reconcile_duration_seconds_sum 4.755\n"), "{text}");
        // 20 ms, 30 ms and 5 ms fall at or below 50 ms; 700 ms is the only one between 0.5 and 1 s.
        assert!(text.contains("idbind_reconcile_duration_seconds_bucket{le=\"0.05\"} 3\n"), "{text}");
        assert!(text.contains("idbind_reconcile_duration_seconds_bucket{le=\"1\"} 5\n"), "{text}");
        assert!(text.contains("idbind_reconcile_duration_seconds_bucket{le=\"+Inf\"} 6\n"), "{text}");
    }

    #[test]
    fn arm_requests_count_by_operation_and_code_and_time_by_operation() {
        let m = Metrics::new();
        m.arm_request("UserAssignedIdentities_Get", 200, Duration::from_millis(40));
        m.arm_request("UserAssignedIdentities_Get", 404, Duration::from_millis(60));
        m.arm_request("UserAssignedIdentities_Get", 200, Duration::from_millis(50));
        m.arm_request("RoleAssignments_Create", 429, Duration::from_millis(10));
        m.arm_request("RoleAssignments_Create", 0, Duration::from_secs(30));
        let text = m.encode();
        let mut counts = lines_with(&text, "idbind_arm_requests_total{");
        counts.sort();
        assert_eq!(
            counts,
            [
                "idbind_arm_requests_total{operation=\"RoleAssignments_Create\",code=\"0\"} 1",
                "idbind_arm_requests_total{operation=\"RoleAssignments_Create\",code=\"429\"} 1",
                "idbind_arm_requests_total{operation=\"UserAssignedIdentities_Get\",code=\"200\"} 2",
                "idbind_arm_requests_total{operation=\"UserAssignedIdentities_Get\",code=\"404\"} 1",
            ]
        );
        assert!(
            text.contains(
                "idbind_arm_request_duration_seconds_count{operation=\"UserAssignedIdentities_Get\"} 3\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "idbind_arm_request_duration_seconds_count{operation=\"RoleAssignments_Create\"} 2\n"
            ),
            "{text}"
        );
        assert!(text.contains("idbind_arm_request_duration_seconds_bucket{operation=\"RoleAssignments_Create\",le=\"20\"} 1\n"), "{text}");
    }

    /// The demo printed `idbind_bindings{ready="true"} 0` right after two bindings went Ready, because the
    /// gauge was refreshed every 10 s: it is counted at the scrape now.
    #[test]
    fn the_bindings_gauge_is_counted_at_each_scrape() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let m = Metrics::new();
        let ready = Arc::new(AtomicU64::new(0));
        let counted = ready.clone();
        m.count_bindings_with(Box::new(move || (counted.load(Ordering::SeqCst), 2)));
        assert!(m.encode().contains("idbind_bindings{ready=\"true\"} 0\n"));
        ready.store(2, Ordering::SeqCst);
        let text = m.encode();
        assert!(text.contains("idbind_bindings{ready=\"true\"} 2\n"), "{text}");
        assert!(text.contains("idbind_bindings{ready=\"false\"} 2\n"), "{text}");
    }

    #[test]
    fn gauges_and_budget_wait_show_the_last_values() {
        let m = Metrics::new();
        m.set_bindings(7, 2);
        m.set_bindings(8, 1);
        m.set_leader(true);
        m.budget_waited(Duration::from_millis(250));
        m.budget_waited(Duration::from_secs(2));
        let text = m.encode();
        assert!(text.contains("idbind_bindings{ready=\"true\"} 8\n"), "{text}");
        assert!(text.contains("idbind_bindings{ready=\"false\"} 1\n"), "{text}");
        assert!(text.contains("idbind_leader 1\n"), "{text}");
        assert!(text.contains("idbind_budget_wait_seconds_count 2\n"), "{text}");
        assert!(text.contains("idbind_budget_wait_seconds_sum 2.25\n"), "{text}");
        m.set_leader(false);
        assert!(m.encode().contains("idbind_leader 0\n"));
    }

    #[test]
    fn content_type_is_prometheus_text() {
        assert!(Metrics::content_type().starts_with("text/plain; version=0.0.4"));
    }

    #[test]
    fn metrics_are_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Metrics>();
    }
}
