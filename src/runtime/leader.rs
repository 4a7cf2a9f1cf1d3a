//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas exactly one reconciles
//! (writes to Azure and to status) while the others stand by with warm caches.
//!
//! The protocol is client-go's, on a Lease this module reads and writes itself:
//! - A candidate takes the Lease when it does not exist (create), when nobody holds it (`holderIdentity`
//!   empty, as after a graceful release), or when it has expired (`renewTime + leaseDurationSeconds < now`).
//!   Every write is a replace conditional on the `resourceVersion` just read; a 409 means another candidate
//!   wrote first and won. Two candidates therefore never both complete a takeover of the same Lease version.
//! - The leader renews every renew period. It counts itself leader only until `renew deadline` after the
//!   start of its last successful renewal; the deadline is shorter than the lease duration, so a leader cut
//!   off from the API server stops believing it leads before any standby may take over. The gap between the
//!   two (5 s by default) is also the clock skew between nodes this tolerates, since expiry compares the
//!   leader's `renewTime` with the standby's clock.
//! - On a graceful stop the leader releases the Lease (holder cleared, `leaseDurationSeconds` 1, `renewTime`
//!   now), so a standby takes over within one renew period instead of a lease duration. A crashed leader is
//!   replaced once its lease expires.
//!
//! Least privilege: this needs only `get`, `create` and `update` on `leases` in the Lease's own namespace
//! (`get`/`update` may be narrowed with `resourceNames` to the Lease's name; `create` cannot be, because the
//! name is not known when create is authorised). It never lists, watches, patches or deletes: a standby polls
//! the one Lease by name every renew period.
//!
//! Leadership is published on a `tokio::sync::watch` channel. It can go from `true` to `false` (renewals
//! failed past the deadline, or the Lease was found held by someone else); the elector then keeps
//! campaigning, and it is the caller's choice whether to wait for leadership again or to exit (client-go's
//! convention, and the safest: the restarted process begins with fresh state).

use std::{sync::Arc, time::Duration};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use tokio::{
    sync::watch,
    task::JoinHandle,
    time::{Instant, sleep_until, timeout, timeout_at},
};
use tokio_util::sync::CancellationToken;

use crate::telemetry::Metrics;

/// How long a Lease stays valid after its last renewal (client-go's and controller-runtime's default).
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the leader renews, and how often a standby looks at the Lease.
pub const DEFAULT_RENEW_PERIOD: Duration = Duration::from_secs(2);
/// How long the leader keeps leading while renewals fail.
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);

/// What a leader election needs: which Lease, who this candidate is, and the timings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderConfig {
    /// The Lease's namespace: the operator's own, where its Role grants access to leases.
    pub namespace: String,
    /// The Lease's name, the same for every replica of one operator installation.
    pub lease_name: String,
    /// This candidate, unique among the replicas: the pod name (the Downward API's `metadata.name`). A
    /// restarted container keeps its pod name and so resumes its own lease at once.
    pub identity: String,
    /// Written to `leaseDurationSeconds` (rounded up to whole seconds): how long standbys wait after the last
    /// renewal before they consider the leader gone.
    pub lease_duration: Duration,
    /// The leader renews this often; a standby polls the Lease this often.
    pub renew_period: Duration,
    /// The leader steps down when it has not renewed for this long. Must be shorter than `lease_duration`
    /// (the difference is the clock skew tolerated) and longer than `renew_period`.
    pub renew_deadline: Duration,
}

impl LeaderConfig {
    /// The defaults: 15 s lease, renewals every 2 s, stepping down after 10 s without one.
    pub fn new(
        namespace: impl Into<String>,
        lease_name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        LeaderConfig {
            namespace: namespace.into(),
            lease_name: lease_name.into(),
            identity: identity.into(),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_period: DEFAULT_RENEW_PERIOD,
            renew_deadline: DEFAULT_RENEW_DEADLINE,
        }
    }

    /// Checks the names are set and `0 < renew_period < renew_deadline < lease_duration`, without which two
    /// replicas could both believe they lead.
    pub fn validate(&self) -> Result<(), LeaderError> {
        let invalid = |reason: &'static str| Err(LeaderError::InvalidConfig(reason));
        if self.namespace.is_empty() {
            return invalid("the Lease namespace is empty");
        }
        if self.lease_name.is_empty() {
            return invalid("the Lease name is empty");
        }
        if self.identity.is_empty() {
            return invalid("the candidate identity is empty (set it to the pod name)");
        }
        if self.renew_period.is_zero() {
            return invalid("the renew period must be positive");
        }
        if self.renew_deadline <= self.renew_period {
            return invalid("the renew deadline must be longer than the renew period");
        }
        if self.lease_duration <= self.renew_deadline {
            return invalid("the lease duration must be longer than the renew deadline");
        }
        if self.lease_duration_seconds().is_none() {
            return invalid("the lease duration does not fit leaseDurationSeconds");
        }
        Ok(())
    }

    /// `leaseDurationSeconds`: the duration rounded up, so standbys never wait less than we assume.
    fn lease_duration_seconds(&self) -> Option<i32> {
        let secs = self.lease_duration.as_secs() + u64::from(self.lease_duration.subsec_nanos() > 0);
        i32::try_from(secs).ok()
    }
}

/// What went wrong with the election.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("invalid leader election settings: {0}")]
    InvalidConfig(&'static str),
    #[error("{action} Lease {namespace}/{name}: {source}")]
    Api {
        action: &'static str,
        namespace: String,
        name: String,
        /// Boxed: kube's error is large, and this one travels up every campaign attempt.
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{action} Lease {namespace}/{name}: no answer within {timeout:?}")]
    TimedOut { action: &'static str, namespace: String, name: String, timeout: Duration },
    #[error("releasing Lease {namespace}/{name}: it kept changing under us")]
    ReleaseRaced { namespace: String, name: String },
    #[error("the leader election task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Who may write the Lease, as judged from a spec just read.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Claim {
    /// It names us: renew it.
    Ours,
    /// Nobody holds it (never held, or released): take it.
    Free,
    /// Its holder stopped renewing more than a lease duration ago: take it.
    Expired { holder: String },
    /// Someone else holds it until `expires`.
    Held { holder: String, expires: Option<Timestamp> },
}

/// Pure: what `spec` means for candidate `me` at wall-clock `now`. A lease without a usable
/// `leaseDurationSeconds` is judged with ours; a held lease without `renewTime` is expired (nothing shows its
/// holder alive).
fn classify(spec: Option<&LeaseSpec>, me: &str, now: Timestamp, default_duration_seconds: i32) -> Claim {
    let Some(holder) = spec.and_then(|s| s.holder_identity.as_deref()).filter(|h| !h.is_empty()) else {
        return Claim::Free;
    };
    if holder == me {
        return Claim::Ours;
    }
    let holder = holder.to_string();
    let duration =
        spec.and_then(|s| s.lease_duration_seconds).filter(|d| *d > 0).unwrap_or(default_duration_seconds);
    let Some(MicroTime(renewed)) = spec.and_then(|s| s.renew_time.clone()) else {
        return Claim::Expired { holder };
    };
    let valid_for = SignedDuration::from_secs(i64::from(duration));
    if now.duration_since(renewed) > valid_for {
        Claim::Expired { holder }
    } else {
        Claim::Held { holder, expires: renewed.checked_add(valid_for).ok() }
    }
}

/// Pure: the spec we write to hold the Lease at `now`, from the one we read (if any). Renewing our own lease
/// keeps `acquireTime` and `leaseTransitions`; taking it from anyone else (or from nobody) restarts
/// `acquireTime` and counts a transition, as client-go does.
fn claimed_spec(previous: Option<&LeaseSpec>, me: &str, now: Timestamp, duration_seconds: i32) -> LeaseSpec {
    let mut spec = previous.cloned().unwrap_or_default();
    let ours = spec.holder_identity.as_deref() == Some(me);
    if !ours {
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(match previous {
            Some(p) => p.lease_transitions.unwrap_or(0).saturating_add(1),
            None => 0,
        });
    } else if spec.acquire_time.is_none() {
        spec.acquire_time = Some(MicroTime(now));
    }
    spec.holder_identity = Some(me.to_string());
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(duration_seconds);
    spec
}

/// Pure: the spec that hands the Lease back: no holder, expiring a second after `now`, so a standby that
/// reads it before noticing the empty holder still takes it almost at once.
fn released_spec(previous: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
    let mut spec = previous.cloned().unwrap_or_default();
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(now));
    spec
}

fn holder(lease: &Lease) -> Option<&str> {
    lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref())
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// The state of a campaign between attempts.
struct Campaign {
    /// The start of the last successful renewal, while leading.
    renewed_at: Option<Instant>,
    next_attempt: Instant,
    /// The last attempt's error, logged once per distinct error: a standby without RBAC would otherwise warn
    /// every period forever.
    last_error: Option<String>,
}

impl Campaign {
    fn failed(&mut self, e: &LeaderError) {
        let message = e.to_string();
        if self.last_error.as_deref() == Some(message.as_str()) {
            tracing::debug!(error = %message, "leader election attempt failed again");
        } else {
            tracing::warn!(error = %message, leading = self.renewed_at.is_some(), "leader election attempt failed; retrying");
        }
        self.last_error = Some(message);
    }
}

/// The result of one attempt to acquire or renew.
#[derive(Debug)]
enum Attempt {
    Leading,
    Standby { holder: Option<String>, expires: Option<Timestamp> },
}

/// One candidate in the election. [`LeaderElector::run`] campaigns until a shutdown signal;
/// [`LeaderElector::spawn`] does so on a task and returns a handle.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderConfig,
    duration_seconds: i32,
    metrics: Option<Arc<Metrics>>,
    /// The Lease as we last read or wrote it: its `resourceVersion` makes the next renewal conditional, so a
    /// renewal needs one request instead of a read and a write.
    observed: Option<Lease>,
}

impl LeaderElector {
    /// A candidate for `config`'s Lease, talking to the API server through `client`.
    pub fn new(client: Client, config: LeaderConfig) -> Result<Self, LeaderError> {
        config.validate()?;
        let duration_seconds = config
            .lease_duration_seconds()
            .ok_or(LeaderError::InvalidConfig("the lease duration does not fit leaseDurationSeconds"))?;
        Ok(LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            duration_seconds,
            metrics: None,
            observed: None,
        })
    }

    /// Also reports leadership as `idbind_leader`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Campaigns on a task of its own. Leadership is on [`LeaderElection::subscribe`];
    /// [`LeaderElection::stop`] releases the Lease and ends the task.
    pub fn spawn(self) -> LeaderElection {
        let (tx, rx) = watch::channel(false);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(self.run(shutdown.clone(), tx));
        LeaderElection { leading: rx, shutdown, task: Some(task) }
    }

    /// Campaigns for the Lease and, while leading, renews it, publishing leadership on `leading`, until
    /// `shutdown` is cancelled; then it publishes `false` and releases the Lease if it holds it. API errors
    /// while campaigning are logged and retried every renew period (they are what the renew deadline is for);
    /// only a failed release is returned.
    pub async fn run(
        mut self,
        shutdown: CancellationToken,
        leading: watch::Sender<bool>,
    ) -> Result<(), LeaderError> {
        let (deadline, period) = (self.config.renew_deadline, self.config.renew_period);
        tracing::info!(lease = %self.config.lease_name, namespace = %self.config.namespace, identity = %self.config.identity, "campaigning for leadership");
        self.publish(&leading, false);
        let mut campaign = Campaign { renewed_at: None, next_attempt: Instant::now(), last_error: None };
        loop {
            let wake = campaign
                .renewed_at
                .map_or(campaign.next_attempt, |r| campaign.next_attempt.min(r + deadline));
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = sleep_until(wake) => {}
            }
            if campaign.renewed_at.is_some_and(|r| Instant::now() >= r + deadline) {
                tracing::warn!(lease = %self.config.lease_name, renew_deadline = ?deadline, "leadership \
                    lost: no successful renewal within the renew deadline");
                campaign.renewed_at = None;
                self.publish(&leading, false);
            }
            let started = Instant::now();
            // The renewal is only as good as its start: stamp renewTime and our own deadline from the same
            // moment, before the request leaves.
            let now = Timestamp::now();
            let limit = campaign.renewed_at.map_or(started + deadline, |r| r + deadline);
            let outcome = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                outcome = timeout_at(limit, self.attempt(now)) => outcome,
            };
            campaign.next_attempt = Instant::now() + period;
            self.settle(outcome, started, &mut campaign, &leading);
        }
        self.publish(&leading, false);
        self.release().await
    }

    /// Takes in one attempt's outcome: leading, standing by (looking again when the holder's lease runs out),
    /// or failed.
    fn settle(
        &self,
        outcome: Result<Result<Attempt, LeaderError>, tokio::time::error::Elapsed>,
        started: Instant,
        campaign: &mut Campaign,
        leading: &watch::Sender<bool>,
    ) {
        match outcome {
            Ok(Ok(Attempt::Leading)) => {
                if campaign.renewed_at.is_none() {
                    tracing::info!(lease = %self.config.lease_name, identity = %self.config.identity, "acquired leadership");
                }
                campaign.renewed_at = Some(started);
                campaign.last_error = None;
                self.publish(leading, true);
            }
            Ok(Ok(Attempt::Standby { holder, expires })) => {
                if campaign.renewed_at.take().is_some() {
                    tracing::warn!(lease = %self.config.lease_name, holder = holder.as_deref().unwrap_or(""), "leadership lost: the Lease is held by another candidate");
                }
                campaign.last_error = None;
                self.publish(leading, false);
                // Look again right after the holder's lease runs out rather than up to a whole period later:
                // failover then takes the lease duration, not more.
                if let Some(until) =
                    expires.and_then(|e| Duration::try_from(e.duration_since(Timestamp::now())).ok())
                {
                    campaign.next_attempt =
                        campaign.next_attempt.min(Instant::now() + until + Duration::from_millis(10));
                }
            }
            Ok(Err(e)) => campaign.failed(&e),
            Err(_) => {
                // The deadline at the top of the loop reports a leader's loss; a standby just tries again.
                tracing::debug!(lease = %self.config.lease_name, "leader election attempt timed out");
                campaign.next_attempt = Instant::now();
            }
        }
    }

    fn publish(&self, leading: &watch::Sender<bool>, value: bool) {
        leading.send_if_modified(|current| std::mem::replace(current, value) != value);
        if let Some(m) = &self.metrics {
            m.set_leader(value);
        }
    }

    fn api_error(&self, action: &'static str, source: kube::Error) -> LeaderError {
        LeaderError::Api {
            action,
            namespace: self.config.namespace.clone(),
            name: self.config.lease_name.clone(),
            source: Box::new(source),
        }
    }

    /// One round of client-go's tryAcquireOrRenew.
    async fn attempt(&mut self, now: Timestamp) -> Result<Attempt, LeaderError> {
        let me = self.config.identity.clone();
        let name = self.config.lease_name.clone();
        // Fast path: renew the Lease we hold, conditional on the version we last wrote.
        if let Some(mut lease) = self.observed.clone().filter(|l| holder(l) == Some(me.as_str())) {
            lease.spec = Some(claimed_spec(lease.spec.as_ref(), &me, now, self.duration_seconds));
            match self.api.replace(&name, &PostParams::default(), &lease).await {
                Ok(written) => {
                    self.observed = Some(written);
                    return Ok(Attempt::Leading);
                }
                // Someone else wrote it (or deleted it): read it and judge again below.
                Err(e) if matches!(status_code(&e), Some(409 | 404)) => self.observed = None,
                Err(e) => return Err(self.api_error("renewing", e)),
            }
        }
        let Some(current) = self.api.get_opt(&name).await.map_err(|e| self.api_error("reading", e))? else {
            return self.create(now).await;
        };
        let claim = classify(current.spec.as_ref(), &me, now, self.duration_seconds);
        self.observed = Some(current.clone());
        match claim {
            Claim::Held { holder, expires } => Ok(Attempt::Standby { holder: Some(holder), expires }),
            Claim::Ours | Claim::Free | Claim::Expired { .. } => {
                if let Claim::Expired { holder } = &claim {
                    tracing::info!(lease = %name, previous = %holder, "the Lease has expired; taking it over");
                }
                self.take(current, now).await
            }
        }
    }

    /// Creates the Lease, holding it.
    async fn create(&mut self, now: Timestamp) -> Result<Attempt, LeaderError> {
        let metadata = ObjectMeta {
            name: Some(self.config.lease_name.clone()),
            namespace: Some(self.config.namespace.clone()),
            ..ObjectMeta::default()
        };
        let spec = claimed_spec(None, &self.config.identity, now, self.duration_seconds);
        match self.api.create(&PostParams::default(), &Lease { metadata, spec: Some(spec) }).await {
            Ok(written) => {
                self.observed = Some(written);
                Ok(Attempt::Leading)
            }
            // AlreadyExists: another candidate created it first.
            Err(e) if status_code(&e) == Some(409) => Ok(Attempt::Standby { holder: None, expires: None }),
            Err(e) => Err(self.api_error("creating", e)),
        }
    }

    /// Claims `lease` (free, expired, or ours), conditional on the version read.
    async fn take(&mut self, mut lease: Lease, now: Timestamp) -> Result<Attempt, LeaderError> {
        let previous_holder = holder(&lease).map(str::to_string);
        lease.spec =
            Some(claimed_spec(lease.spec.as_ref(), &self.config.identity, now, self.duration_seconds));
        match self.api.replace(&self.config.lease_name, &PostParams::default(), &lease).await {
            Ok(written) => {
                self.observed = Some(written);
                Ok(Attempt::Leading)
            }
            // Conflict: another candidate wrote between our read and our write and won. NotFound: deleted
            // meanwhile; the next attempt creates it.
            Err(e) if matches!(status_code(&e), Some(409 | 404)) => {
                Ok(Attempt::Standby { holder: previous_holder, expires: None })
            }
            Err(e) => Err(self.api_error("acquiring", e)),
        }
    }

    /// Hands the Lease back if we hold it, within one renew deadline. A Lease that names someone else (or is
    /// gone) is left alone.
    async fn release(&mut self) -> Result<(), LeaderError> {
        let limit = self.config.renew_deadline;
        let (namespace, name) = (self.config.namespace.clone(), self.config.lease_name.clone());
        match timeout(limit, self.release_now()).await {
            Ok(result) => result,
            Err(_) => Err(LeaderError::TimedOut { action: "releasing", namespace, name, timeout: limit }),
        }
    }

    async fn release_now(&mut self) -> Result<(), LeaderError> {
        let me = self.config.identity.clone();
        let name = self.config.lease_name.clone();
        // The cached version first (one request); after a conflict, what the server has now.
        for _ in 0..3 {
            let lease = match self.observed.take().filter(|l| holder(l) == Some(me.as_str())) {
                Some(lease) => lease,
                None => match self.api.get_opt(&name).await.map_err(|e| self.api_error("reading", e))? {
                    Some(lease) if holder(&lease) == Some(me.as_str()) => lease,
                    _ => return Ok(()),
                },
            };
            let mut released = lease;
            released.spec = Some(released_spec(released.spec.as_ref(), Timestamp::now()));
            match self.api.replace(&name, &PostParams::default(), &released).await {
                Ok(_) => {
                    tracing::info!(lease = %name, identity = %me, "released leadership");
                    return Ok(());
                }
                Err(e) if status_code(&e) == Some(409) => continue,
                Err(e) if status_code(&e) == Some(404) => return Ok(()),
                Err(e) => return Err(self.api_error("releasing", e)),
            }
        }
        Err(LeaderError::ReleaseRaced { namespace: self.config.namespace.clone(), name })
    }
}

/// A running election (from [`LeaderElector::spawn`]).
pub struct LeaderElection {
    leading: watch::Receiver<bool>,
    shutdown: CancellationToken,
    /// Always `Some` until `stop` or `abort` takes it (they consume the handle, which has a `Drop`).
    task: Option<JoinHandle<Result<(), LeaderError>>>,
}

impl LeaderElection {
    /// Leadership as it changes: `wait_for(|l| *l)` to wait for it, `changed()` to notice its loss.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// Whether this candidate leads right now.
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// Stops campaigning and releases the Lease if held, so a standby takes over within one renew period.
    /// Stop the work that leadership guards first: once this returns, another replica may already lead.
    pub async fn stop(mut self) -> Result<(), LeaderError> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }

    /// Ends the task at once without releasing, as a crash would (the Lease then runs out).
    pub fn abort(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for LeaderElection {
    /// A dropped handle must not leave a task renewing forever in the background; it stops the task (which
    /// still releases the Lease, on its own).
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::SignedDuration;

    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn held(holder: &str, renewed: i64, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(at(renewed))),
            acquire_time: Some(MicroTime(at(0))),
            lease_duration_seconds: Some(duration),
            lease_transitions: Some(4),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn classify_decides_who_may_write() {
        let cases: Vec<(&str, Option<LeaseSpec>, i64, Claim)> = vec![
            ("no lease spec", None, 0, Claim::Free),
            ("no holder", Some(LeaseSpec::default()), 0, Claim::Free),
            (
                "empty holder",
                Some(LeaseSpec { holder_identity: Some(String::new()), ..held("x", 0, 15) }),
                1,
                Claim::Free,
            ),
            ("ours, even when expired", Some(held("me", 0, 15)), 100, Claim::Ours),
            (
                "other, fresh",
                Some(held("b", 10, 15)),
                20,
                Claim::Held { holder: "b".into(), expires: Some(at(25)) },
            ),
            (
                "other, exactly at expiry",
                Some(held("b", 10, 15)),
                25,
                Claim::Held { holder: "b".into(), expires: Some(at(25)) },
            ),
            ("other, expired", Some(held("b", 10, 15)), 26, Claim::Expired { holder: "b".into() }),
            (
                "released with duration 1",
                Some(LeaseSpec { holder_identity: Some("b".into()), ..held("b", 10, 1) }),
                12,
                Claim::Expired { holder: "b".into() },
            ),
            (
                "other, no renewTime",
                Some(LeaseSpec { renew_time: None, ..held("b", 0, 15) }),
                1,
                Claim::Expired { holder: "b".into() },
            ),
            (
                "other, no duration: ours is used",
                Some(LeaseSpec { lease_duration_seconds: None, ..held("b", 10, 0) }),
                35,
                Claim::Held { holder: "b".into(), expires: Some(at(40)) },
            ),
            (
                "other, no duration, past ours",
                Some(LeaseSpec { lease_duration_seconds: None, ..held("b", 10, 0) }),
                41,
                Claim::Expired { holder: "b".into() },
            ),
        ];
        for (name, spec, now, want) in cases {
            assert_eq!(classify(spec.as_ref(), "me", at(now), 30), want, "{name}");
        }
    }

    #[test]
    fn claiming_a_new_lease_starts_at_zero_transitions() {
        let spec = claimed_spec(None, "me", at(5), 15);
        assert_eq!(
            spec,
            LeaseSpec {
                holder_identity: Some("me".into()),
                acquire_time: Some(MicroTime(at(5))),
                renew_time: Some(MicroTime(at(5))),
                lease_duration_seconds: Some(15),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }
        );
    }

    #[test]
    fn renewing_keeps_acquire_time_and_transitions() {
        let spec = claimed_spec(Some(&held("me", 10, 15)), "me", at(12), 15);
        assert_eq!(spec, LeaseSpec { renew_time: Some(MicroTime(at(12))), ..held("me", 10, 15) });
    }

    #[test]
    fn taking_over_counts_a_transition_and_restarts_acquire_time() {
        let spec = claimed_spec(Some(&held("b", 10, 30)), "me", at(50), 15);
        assert_eq!(
            spec,
            LeaseSpec {
                holder_identity: Some("me".into()),
                acquire_time: Some(MicroTime(at(50))),
                renew_time: Some(MicroTime(at(50))),
                lease_duration_seconds: Some(15),
                lease_transitions: Some(5),
                ..LeaseSpec::default()
            }
        );
        let after_release =
            claimed_spec(Some(&released_spec(Some(&held("me", 10, 15)), at(11))), "me", at(12), 15);
        assert_eq!(
            after_release.lease_transitions,
            Some(5),
            "a released lease has no holder, so even its last holder counts a transition"
        );
    }

    #[test]
    fn releasing_clears_the_holder_and_expires_in_a_second() {
        let spec = released_spec(Some(&held("me", 10, 15)), at(11));
        assert_eq!(
            spec,
            LeaseSpec {
                holder_identity: None,
                renew_time: Some(MicroTime(at(11))),
                lease_duration_seconds: Some(1),
                ..held("me", 10, 15)
            }
        );
        assert_eq!(classify(Some(&spec), "other", at(11), 15), Claim::Free);
    }

    #[test]
    fn config_rejects_timings_that_allow_two_leaders() {
        let ok = LeaderConfig::new("idbind-system", "idbind-leader", "idbind-7d9-abc");
        assert_eq!(ok.validate().ok(), Some(()));
        assert_eq!(ok.lease_duration_seconds(), Some(15));
        let bad = |f: fn(&mut LeaderConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            c.validate()
        };
        assert!(matches!(bad(|c| c.identity.clear()), Err(LeaderError::InvalidConfig(_))));
        assert!(matches!(bad(|c| c.namespace.clear()), Err(LeaderError::InvalidConfig(_))));
        assert!(matches!(bad(|c| c.lease_name.clear()), Err(LeaderError::InvalidConfig(_))));
        assert!(matches!(bad(|c| c.renew_period = Duration::ZERO), Err(LeaderError::InvalidConfig(_))));
        assert!(matches!(bad(|c| c.renew_deadline = c.renew_period), Err(LeaderError::InvalidConfig(_))));
        assert!(matches!(bad(|c| c.lease_duration = c.renew_deadline), Err(LeaderError::InvalidConfig(_))));
        assert!(matches!(
            bad(|c| c.lease_duration = Duration::from_secs(u64::MAX)),
            Err(LeaderError::InvalidConfig(_))
        ));
        let mut fractional = ok.clone();
        fractional.lease_duration = Duration::from_millis(2500);
        fractional.renew_deadline = Duration::from_secs(2);
        fractional.renew_period = Duration::from_millis(500);
        assert_eq!(fractional.lease_duration_seconds(), Some(3), "rounded up, never down");
    }

    #[test]
    fn expiry_is_strictly_after_the_duration() {
        let spec = held("b", 0, 15);
        let renewed = at(0);
        let just_inside = renewed.checked_add(SignedDuration::from_millis(15_000)).unwrap_or(renewed);
        let just_after = renewed.checked_add(SignedDuration::from_millis(15_001)).unwrap_or(renewed);
        assert!(matches!(classify(Some(&spec), "me", just_inside, 15), Claim::Held { .. }));
        assert!(matches!(classify(Some(&spec), "me", just_after, 15), Claim::Expired { .. }));
    }
}
