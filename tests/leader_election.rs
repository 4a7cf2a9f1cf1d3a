//! Leader election against a real kube-apiserver, each candidate signed in as a ServiceAccount that may only
//! `create` leases and `get`/`update` the one Lease by name in its namespace (the operator's Role), so every
//! test also proves that this is all leader election needs.
//!
//! Timings are shortened (lease 3 s, renewals every 0.5 s, deadline 2 s) and every wait is on a condition: a
//! leadership flag through its watch channel, or the Lease as the API server has it.

use std::{
    io::Write,
    net::SocketAddr,
    process::Stdio,
    time::{Duration, Instant},
};

use idbind::runtime::leader::{LeaderConfig, LeaderElection, LeaderElector, LeaderError};
use idbind_testenv::ControlPlane;
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::PostParams,
    config::{KubeConfigOptions, Kubeconfig},
};
use serde_json::json;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};

type TestError = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), TestError>;

const LEASE_NAME: &str = "idbind-leader";
const SERVICE_ACCOUNT: &str = "idbind-operator";
const LEASE: Duration = Duration::from_secs(3);
const RENEW: Duration = Duration::from_millis(500);
const DEADLINE: Duration = Duration::from_secs(2);
/// Generous bound for things that should happen within a few renew periods.
const PATIENCE: Duration = Duration::from_secs(15);

/// One test's namespace, with the operator's ServiceAccount and leader-election Role in it.
struct Setup {
    plane: &'static ControlPlane,
    ns: String,
    token: String,
    admin: Client,
}

impl Setup {
    async fn new(prefix: &str) -> Result<Setup, TestError> {
        let plane = idbind_testenv::shared();
        let ns = plane.fresh_namespace(prefix)?;
        kubectl_apply(
            plane,
            &ns,
            &json!({"apiVersion": "v1", "kind": "List", "items": [
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE_ACCOUNT}},
                {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "idbind-leader-election"}, "rules": [
                    // create cannot be narrowed by name: the name is not known when it is authorised.
                    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
                    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [LEASE_NAME], "verbs": ["get", "update"]},
                ]},
                {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "idbind-leader-election"},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "idbind-leader-election"},
                 "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": ns}]},
            ]}),
        )?;
        // The authorizer learns of new RBAC objects through its informers: wait until it has.
        let who = format!("--as=system:serviceaccount:{ns}:{SERVICE_ACCOUNT}");
        let can = |verb: &str, resource: &str| -> Result<bool, TestError> {
            let out = plane.kubectl(&["auth", "can-i", verb, resource, "-n", &ns, &who]).output()?;
            Ok(String::from_utf8_lossy(&out.stdout).trim() == "yes")
        };
        let start = Instant::now();
        while !(can("create", "leases.coordination.k8s.io")?
            && can("update", &format!("leases.coordination.k8s.io/{LEASE_NAME}"))?)
        {
            if start.elapsed() > PATIENCE {
                return Err("the leader-election Role never took effect".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            !can("list", "leases.coordination.k8s.io")?
                && !can("watch", "leases.coordination.k8s.io")?
                && !can("patch", &format!("leases.coordination.k8s.io/{LEASE_NAME}"))?,
            "the test Role must stay least-privilege"
        );
        let token = plane
            .kubectl_ok(&["create", "token", SERVICE_ACCOUNT, "-n", &ns, "--duration=1h"])?
            .trim()
            .to_string();
        let admin = client_from(Kubeconfig::read_from(plane.kubeconfig())?).await?;
        Ok(Setup { plane, ns, token, admin })
    }

    /// A client signed in as the operator's ServiceAccount, through `server` (the API server itself, or a
    /// relay in front of it).
    async fn operator_client(&self, server: &str) -> Result<Client, TestError> {
        let kubeconfig = json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "operator",
            "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": self.plane.ca_file()}}],
            "users": [{"name": "operator", "user": {"token": self.token}}],
            "contexts": [{"name": "operator", "context": {"cluster": "local", "user": "operator", "namespace": self.ns}}],
        });
        client_from(serde_json::from_value(kubeconfig)?).await
    }

    fn config(&self, identity: &str) -> LeaderConfig {
        LeaderConfig {
            lease_duration: LEASE,
            renew_period: RENEW,
            renew_deadline: DEADLINE,
            ..LeaderConfig::new(&self.ns, LEASE_NAME, identity)
        }
    }

    async fn candidate(&self, identity: &str) -> Result<LeaderElection, TestError> {
        self.candidate_with(identity, self.plane.server(), self.config(identity)).await
    }

    async fn candidate_with(
        &self,
        identity: &str,
        server: &str,
        config: LeaderConfig,
    ) -> Result<LeaderElection, TestError> {
        assert_eq!(config.identity, identity);
        Ok(LeaderElector::new(self.operator_client(server).await?, config)?.spawn())
    }

    /// The Lease as the API server has it.
    async fn lease(&self) -> Result<LeaseSpec, TestError> {
        Ok(Api::<Lease>::namespaced(self.admin.clone(), &self.ns)
            .get(LEASE_NAME)
            .await?
            .spec
            .unwrap_or_default())
    }

    /// Polls the Lease until `check` accepts it.
    async fn wait_lease(
        &self,
        what: &str,
        check: impl Fn(&LeaseSpec) -> bool,
    ) -> Result<LeaseSpec, TestError> {
        let start = Instant::now();
        loop {
            let lease = self.lease().await?;
            if check(&lease) {
                return Ok(lease);
            }
            if start.elapsed() > PATIENCE {
                return Err(format!("timed out waiting for the Lease: {what}; last {lease:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn client_from(kubeconfig: Kubeconfig) -> Result<Client, TestError> {
    Ok(Client::try_from(
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?,
    )?)
}

fn kubectl_apply(plane: &ControlPlane, ns: &str, manifest: &serde_json::Value) -> TestResult {
    let mut child = plane
        .kubectl(&["apply", "-n", ns, "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().ok_or("no stdin")?.write_all(manifest.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
    }
    Ok(())
}

/// Waits until the flag reads `want`; returns how long that took. `what` names the wait in its error.
async fn wait_flag(
    what: &str,
    flag: &mut watch::Receiver<bool>,
    want: bool,
    within: Duration,
) -> Result<Duration, TestError> {
    let start = Instant::now();
    match tokio::time::timeout(within, flag.wait_for(|l| *l == want)).await {
        Ok(Ok(_)) => Ok(start.elapsed()),
        Ok(Err(_)) => Err(format!("{what}: the candidate's task ended").into()),
        Err(_) => Err(format!("{what}: leadership did not become {want} within {within:?}").into()),
    }
}

/// Counts the moments at which both candidates believed they led, from every change of either flag until both
/// candidates' tasks have ended (a candidate whose task ended leads no more).
fn count_double_leadership(
    mut a: watch::Receiver<bool>,
    mut b: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let (mut a_running, mut b_running, mut overlaps) = (true, true, 0);
        loop {
            let a_leads = a_running && *a.borrow_and_update();
            let b_leads = b_running && *b.borrow_and_update();
            overlaps += usize::from(a_leads && b_leads);
            if !a_running && !b_running {
                return overlaps;
            }
            tokio::select! {
                changed = a.changed(), if a_running => a_running = changed.is_ok(),
                changed = b.changed(), if b_running => b_running = changed.is_ok(),
            }
        }
    })
}

fn micro(t: &Option<MicroTime>) -> Option<Timestamp> {
    t.as_ref().map(|m| m.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn of_two_candidates_started_together_only_one_leads_and_the_lease_names_it() -> TestResult {
    let s = Setup::new("leader-two").await?;
    let (a, b) = (s.candidate("candidate-a").await?, s.candidate("candidate-b").await?);
    let overlaps = count_double_leadership(a.subscribe(), b.subscribe());
    let (mut a_flag, mut b_flag) = (a.subscribe(), b.subscribe());
    let leader = tokio::time::timeout(PATIENCE, async {
        tokio::select! {
            _ = a_flag.wait_for(|l| *l) => "candidate-a",
            _ = b_flag.wait_for(|l| *l) => "candidate-b",
        }
    })
    .await
    .map_err(|_| format!("neither candidate led within {PATIENCE:?}"))?;
    let (leading, standing_by) = if leader == "candidate-a" { (&a, &b) } else { (&b, &a) };

    let lease = s.lease().await?;
    assert_eq!(lease.holder_identity.as_deref(), Some(leader));
    assert_eq!(lease.lease_duration_seconds, Some(3));
    assert_eq!(lease.lease_transitions, Some(0), "created by the winner");
    assert!(lease.acquire_time.is_some() && lease.renew_time.is_some(), "{lease:?}");

    // Over several renewals the leader keeps the Lease and the other keeps standing by.
    let mut renewed = micro(&lease.renew_time);
    for _ in 0..4 {
        let next = s.wait_lease("renewed again", |l| micro(&l.renew_time) > renewed).await?;
        assert_eq!(next.holder_identity.as_deref(), Some(leader), "{next:?}");
        assert_eq!(next.acquire_time, lease.acquire_time, "a renewal keeps acquireTime");
        assert_eq!(next.lease_transitions, Some(0));
        assert!(leading.is_leader() && !standing_by.is_leader());
        renewed = micro(&next.renew_time);
    }

    b.stop().await?;
    a.stop().await?;
    assert_eq!(overlaps.await?, 0, "both candidates believed they led at once");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_leader_is_replaced_within_the_lease_duration() -> TestResult {
    let s = Setup::new("leader-crash").await?;
    let a = s.candidate("candidate-a").await?;
    wait_flag("A leads", &mut a.subscribe(), true, PATIENCE).await?;
    let b = s.candidate("candidate-b").await?;
    let mut b_flag = b.subscribe();
    // B has looked at the Lease and stands by while A renews.
    let held = s.lease().await?;
    s.wait_lease("renewed by A while B runs", |l| micro(&l.renew_time) > micro(&held.renew_time)).await?;
    assert!(!b.is_leader());

    // A dies without releasing: it simply stops renewing.
    let crashed = Instant::now();
    a.abort();
    wait_flag("B takes over from the crashed A", &mut b_flag, true, LEASE + PATIENCE).await?;
    let handover = crashed.elapsed();
    eprintln!("crash handover: {handover:?} (lease {LEASE:?}, renew period {RENEW:?})");
    assert!(handover <= LEASE + RENEW, "B took {handover:?} to take over a lease of {LEASE:?}");
    // A's last renewal was at most a renew period (plus a request) before the crash, so B must have waited
    // out most of the lease rather than taking a live one.
    assert!(handover >= LEASE - 2 * RENEW, "B took the lease after only {handover:?}");

    let lease = s.lease().await?;
    assert_eq!(lease.holder_identity.as_deref(), Some("candidate-b"));
    assert_eq!(lease.lease_transitions, Some(1));
    assert!(micro(&lease.acquire_time) > micro(&held.acquire_time), "{lease:?}");
    b.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_graceful_stop_releases_the_lease_and_the_standby_leads_at_once() -> TestResult {
    let s = Setup::new("leader-release").await?;
    // A long lease, so that waiting it out could not pass for a prompt handover.
    let long = |identity: &str| LeaderConfig {
        lease_duration: Duration::from_secs(20),
        renew_deadline: Duration::from_secs(10),
        ..s.config(identity)
    };
    let a = s.candidate_with("candidate-a", s.plane.server(), long("candidate-a")).await?;
    let mut a_flag = a.subscribe();
    wait_flag("A leads", &mut a_flag, true, PATIENCE).await?;
    let b = s.candidate_with("candidate-b", s.plane.server(), long("candidate-b")).await?;
    let mut b_flag = b.subscribe();
    let overlaps = count_double_leadership(a.subscribe(), b.subscribe());
    let held = s.lease().await?;
    s.wait_lease("renewed by A while B runs", |l| micro(&l.renew_time) > micro(&held.renew_time)).await?;
    assert!(!b.is_leader());

    let stopping = Instant::now();
    a.stop().await?;
    let released = Instant::now();
    assert!(!*a_flag.borrow(), "a stopped candidate does not lead");
    wait_flag("B leads after A's release", &mut b_flag, true, PATIENCE).await?;
    let (stop_took, handover) = (released - stopping, released.elapsed());
    eprintln!(
        "graceful handover: release took {stop_took:?}, then B led after {handover:?} (renew period \
         {RENEW:?}, lease 20 s)"
    );
    assert!(handover <= RENEW + Duration::from_millis(500), "B took {handover:?} after the release");

    let lease = s.lease().await?;
    assert_eq!(lease.holder_identity.as_deref(), Some("candidate-b"));
    assert_eq!(lease.lease_transitions, Some(1));
    assert_eq!(lease.lease_duration_seconds, Some(20), "B writes its own duration over the released 1 s");

    // B's release leaves a Lease that names nobody and expires in a second.
    b.stop().await?;
    let lease = s.lease().await?;
    assert_eq!((lease.holder_identity, lease.lease_duration_seconds), (None, Some(1)));
    assert_eq!(overlaps.await?, 0);
    Ok(())
}

/// A TCP relay in front of the API server that can be cut like a network partition: afterwards it relays
/// nothing and new connections hang (a refused connection would fail fast instead).
struct Relay {
    url: String,
    cut: watch::Sender<bool>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> std::io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        // The API server's certificate is for 127.0.0.1, whatever the port.
        let url = format!("https://{}", listener.local_addr()?);
        let (cut, is_cut) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut is_cut = is_cut.clone();
                tokio::spawn(async move {
                    if !*is_cut.borrow() {
                        let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        let cut_now = tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => false,
                            _ = is_cut.wait_for(|c| *c) => true,
                        };
                        if !cut_now {
                            return;
                        }
                    }
                    // Partitioned: hold the client's socket open and say nothing, until the test ends.
                    let _silent = inbound;
                    std::future::pending::<()>().await;
                });
            }
        });
        Ok(Relay { url, cut })
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_cut_off_from_the_api_server_steps_down_before_its_lease_expires() -> TestResult {
    let s = Setup::new("leader-partition").await?;
    let upstream: SocketAddr = s.plane.server().trim_start_matches("https://").parse()?;
    let relay = Relay::start(upstream).await?;
    let a = s.candidate_with("candidate-a", &relay.url, s.config("candidate-a")).await?;
    let mut a_flag = a.subscribe();
    wait_flag("A leads", &mut a_flag, true, PATIENCE).await?;
    let b = s.candidate("candidate-b").await?;
    let mut b_flag = b.subscribe();
    let held = s.lease().await?;
    s.wait_lease("renewed by A through the relay", |l| micro(&l.renew_time) > micro(&held.renew_time))
        .await?;

    let cut = Instant::now();
    let _ = relay.cut.send(true);
    let stepped_down = wait_flag("A steps down when cut off", &mut a_flag, false, PATIENCE).await?;
    assert!(!*b_flag.borrow(), "B led before A stepped down");
    eprintln!("partitioned leader stepped down after {stepped_down:?} (renew deadline {DEADLINE:?})");
    assert!(
        stepped_down <= DEADLINE + Duration::from_millis(250),
        "A kept leading {stepped_down:?} without renewing"
    );
    assert!(stepped_down >= DEADLINE - 2 * RENEW, "A gave up after only {stepped_down:?}");

    let handover = cut.elapsed() + wait_flag("B leads after the cut", &mut b_flag, true, PATIENCE).await?;
    eprintln!("partition handover: B led {handover:?} after the cut");
    assert!(handover <= LEASE + RENEW, "{handover:?}");
    assert!(!*a_flag.borrow());
    assert_eq!(s.lease().await?.holder_identity.as_deref(), Some("candidate-b"));

    b.stop().await?;
    // A cannot reach the API server to release: its stop gives up after the renew deadline.
    let stopping = Instant::now();
    let stopped = a.stop().await;
    assert!(matches!(stopped, Err(LeaderError::TimedOut { action: "releasing", .. })), "{stopped:?}");
    assert!(stopping.elapsed() < DEADLINE + Duration::from_secs(1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_that_finds_its_lease_taken_steps_down_and_leaves_it_alone() -> TestResult {
    let s = Setup::new("leader-taken").await?;
    let a = s.candidate("candidate-a").await?;
    let mut a_flag = a.subscribe();
    wait_flag("A leads", &mut a_flag, true, PATIENCE).await?;

    // Someone else (an operator of an older version, a human) writes the Lease over A's.
    let leases = Api::<Lease>::namespaced(s.admin.clone(), &s.ns);
    let mut lease = leases.get(LEASE_NAME).await?;
    lease.spec = Some(LeaseSpec {
        holder_identity: Some("intruder".into()),
        renew_time: Some(MicroTime(Timestamp::now())),
        lease_duration_seconds: Some(3600),
        ..lease.spec.unwrap_or_default()
    });
    leases.replace(LEASE_NAME, &PostParams::default(), &lease).await?;

    let took = wait_flag("A steps down when its Lease is taken", &mut a_flag, false, PATIENCE).await?;
    eprintln!("leader noticed the takeover after {took:?}");
    assert!(took <= RENEW + Duration::from_millis(500), "{took:?}");
    // Standing by, and its stop releases nothing it does not hold.
    a.stop().await?;
    let lease = s.lease().await?;
    assert_eq!(
        (lease.holder_identity.as_deref(), lease.lease_duration_seconds),
        (Some("intruder"), Some(3600))
    );
    Ok(())
}
