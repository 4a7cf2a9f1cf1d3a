//! A real Kubernetes control plane on loopback: etcd, kube-apiserver (RBAC, ServiceAccount token issuing,
//! OIDC discovery) and kube-controller-manager (namespace deletion, garbage collection, default
//! ServiceAccounts), built from Go modules by `make controlplane` into `.cache/controlplane/bin`.
//!
//! Tests call [`shared`] (one control plane per test binary, torn down when the binary exits); humans use
//! `make up` / `make down`, which run the `idbind-testenv` binary.

// A test and benchmark harness, not the product: process control through libc (prctl, setsid, kill) for the
// control plane it starts; each use carries a SAFETY note.
#![allow(unsafe_code)]

use std::sync::PoisonError;
use std::{
    fs,
    net::TcpListener,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Mutex, OnceLock, mpsc},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

pub mod node;

/// Where the control-plane binaries are: `$IDBIND_CONTROLPLANE_BIN`, else the workspace cache.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("IDBIND_CONTROLPLANE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".cache/controlplane/bin"))
}

/// The repository root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The API server's audit log, in the plane's folder.
const AUDIT_LOG: &str = "logs/audit.log";

/// What the API server logs (see [`ControlPlane::audit_events`]): requests by ServiceAccounts on the objects
/// idbind keeps in step, nothing else (no request or response bodies).
const AUDIT_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
    verbs: ["get", "create", "update", "patch", "delete"]
    resources:
      - group: ""
        resources: ["configmaps", "serviceaccounts"]
      - group: "secrets-store.csi.x-k8s.io"
        resources: ["secretproviderclasses"]
  - level: None
"#;

/// How the processes relate to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
    /// Killed when the thread that started them ends (tests).
    TiedToCaller,
    /// Detached in their own session; `stop_detached` ends them (`make up`).
    Detached,
}

/// A running control plane.
pub struct ControlPlane {
    dir: PathBuf,
    server: String,
    lifetime: Lifetime,
    /// The processes, by name, in start order. Behind a lock so that [`ControlPlane::restart_apiserver`]
    /// works on the shared (`&'static`) plane.
    children: Mutex<Vec<(String, Child)>>,
    /// kube-apiserver's flags, kept so a restart serves the same port, certificates and keys.
    apiserver_args: Vec<String>,
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and kube-controller-manager with their state under `dir` (wiped first) and
    /// waits until the API server is ready and the `default` namespace has its ServiceAccount.
    pub fn start(dir: &Path, lifetime: Lifetime) -> Result<Self> {
        Self::start_with(dir, lifetime, Listen::Loopback)
    }

    /// [`ControlPlane::start`], listening where `listen` says. With [`Listen::NodeBridge`] (see [`node`]) the
    /// API server also authorizes kubelets (Node authorizer, NodeRestriction), reaches the kubelet with a
    /// client certificate for logs and exec, publishes its address in the `kubernetes` Service's endpoints,
    /// and kube-controller-manager runs what Deployments, Services and a node need.
    pub fn start_with(dir: &Path, lifetime: Lifetime, listen: Listen) -> Result<Self> {
        let bin = bin_dir();
        for b in ["etcd", "kube-apiserver", "kube-controller-manager", "kubectl"] {
            if !bin.join(b).is_file() {
                bail!("{} is missing: run `make controlplane` first", bin.join(b).display());
            }
        }
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("wiping {}", dir.display()))?;
        }
        fs::create_dir_all(dir.join("logs"))?;
        let dir = fs::canonicalize(dir)?;
        let certs = dir.join("pki");
        fs::create_dir_all(&certs)?;
        let address = listen.address();
        make_pki(&certs, listen)?;

        let [etcd_client, etcd_peer, api_port] = free_ports()?;
        let server = format!("https://{address}:{api_port}");
        let token = random_hex(32)?;
        let mut tokens = format!("{token},idbind-admin,idbind-admin,\"system:masters\"\n");
        if listen == Listen::NodeBridge {
            // The kubelet's credential: the identity the Node authorizer and NodeRestriction expect.
            let node_token = random_hex(32)?;
            fs::write(certs.join("node.token"), &node_token)?;
            tokens.push_str(&format!(
                "{node_token},system:node:{name},system:node:{name},\"system:nodes\"\n",
                name = node::NODE_NAME
            ));
        }
        fs::write(certs.join("tokens.csv"), tokens)?;
        fs::write(dir.join("audit-policy.yaml"), AUDIT_POLICY)?;
        write_kubeconfig(&dir.join("kubeconfig"), &server, &certs.join("ca.crt"), "idbind-admin", &token)?;

        let mut plane = ControlPlane {
            dir: dir.clone(),
            server: server.clone(),
            lifetime,
            children: Mutex::new(Vec::new()),
            apiserver_args: Vec::new(),
        };
        let etcd_url = format!("http://127.0.0.1:{etcd_client}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer}");
        plane.spawn(
            lifetime,
            "etcd",
            &[
                "--name=default".into(),
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=default={peer_url}"),
                // Test data is disposable; fsync dominates etcd latency on small VMs.
                "--unsafe-no-fsync".into(),
                "--log-level=warn".into(),
            ],
        )?;
        let p = |f: &str| certs.join(f).display().to_string();
        plane.apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            format!("--bind-address={address}"),
            format!("--advertise-address={address}"),
            format!("--secure-port={api_port}"),
            format!("--tls-cert-file={}", p("apiserver.crt")),
            format!("--tls-private-key-file={}", p("apiserver.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            format!("--token-auth-file={}", p("tokens.csv")),
            // As on OpenShift: setting an owner reference's blockOwnerDeletion needs update on the owner's
            // finalizers, so the tests prove the operator's RBAC has what such clusters ask.
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement,NodeRestriction".into(),
            // The issuer is the API server itself, so /.well-known/openid-configuration and the JWKS are
            // served from the URL the tokens name, as on AKS.
            format!("--service-account-issuer={server}"),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            format!("--cert-dir={}", dir.join("apiserver-certs").display()),
            "--profiling=false".into(),
            // What ServiceAccounts (the operator's, in the tests) read and write of the objects idbind keeps
            // in step, so a test can count idbind's writes: see [`ControlPlane::audit_events`].
            format!("--audit-policy-file={}", dir.join("audit-policy.yaml").display()),
            format!("--audit-log-path={}", dir.join(AUDIT_LOG).display()),
            "--v=0".into(),
        ];
        match listen {
            Listen::Loopback => plane.apiserver_args.extend([
                "--authorization-mode=RBAC".into(),
                // The kubernetes Service endpoint cannot point at loopback; nothing here needs it.
                "--endpoint-reconciler-type=none".into(),
            ]),
            Listen::NodeBridge => plane.apiserver_args.extend([
                "--authorization-mode=Node,RBAC".into(),
                // Pods reach the API server as the kubernetes Service (kube-proxy routes it here).
                "--endpoint-reconciler-type=lease".into(),
                // For logs and exec: the kubelet has no DNS name, and it authenticates the API server by this
                // certificate (its webhook authorization then asks the API server about this user).
                "--kubelet-preferred-address-types=InternalIP,Hostname".into(),
                format!("--kubelet-client-certificate={}", p("kubelet-client.crt")),
                format!("--kubelet-client-key={}", p("kubelet-client.key")),
                // The kubelet serves a certificate of this CA ([`node`] gives it), so the API server verifies
                // it.
                format!("--kubelet-certificate-authority={}", p("ca.crt")),
            ]),
        }
        let apiserver_args = plane.apiserver_args.clone();
        plane.spawn(lifetime, "kube-apiserver", &apiserver_args)?;
        plane.wait_ready(Duration::from_secs(120))?;
        // Let anyone fetch the issuer's discovery document and keys, like AKS's public issuer: the
        // simulator's Entra endpoint reads them without a Kubernetes credential.
        plane.kubectl_ok(&[
            "create",
            "clusterrolebinding",
            "idbind-oidc-discovery-public",
            "--clusterrole=system:service-account-issuer-discovery",
            "--group=system:unauthenticated",
        ])?;
        // root-ca-cert-publisher writes the kube-root-ca.crt ConfigMap of every namespace, as on every
        // cluster (tests show idbind never fights it).
        let mut controllers =
            "namespace,garbagecollector,serviceaccount,clusterrole-aggregation,root-ca-cert-publisher"
                .to_string();
        if listen == Listen::NodeBridge {
            plane.kubectl_ok(&[
                "create",
                "clusterrolebinding",
                "idbind-apiserver-kubelet-client",
                "--clusterrole=system:kubelet-api-admin",
                &format!("--user={KUBELET_CLIENT_USER}"),
            ])?;
            // Deployments and ReplicaSets make pods; nodelifecycle lifts the new node's not-ready taint;
            // endpoints and endpointslices follow pods' readiness; podgc removes pods of a node that is gone.
            controllers
                .push_str(",deployment,replicaset,nodelifecycle,endpoint,endpointslice,podgc,disruption");
        }
        plane.spawn(
            lifetime,
            "kube-controller-manager",
            &[
                format!("--kubeconfig={}", dir.join("kubeconfig").display()),
                format!("--controllers={controllers}"),
                format!("--root-ca-file={}", p("ca.crt")),
                "--leader-elect=false".into(),
                "--secure-port=0".into(),
                "--v=0".into(),
            ],
        )?;
        plane.wait_for(Duration::from_secs(60), "the default ServiceAccount", |p| {
            p.kubectl(&["get", "serviceaccount", "default", "-n", "default"])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        })?;
        Ok(plane)
    }

    /// The API server's audit events so far (one JSON object per request, as it logged them), each
    /// `ResponseComplete`: every `get`, `create`, `update`, `patch` and `delete` by a ServiceAccount of
    /// ConfigMaps, ServiceAccounts and SecretProviderClasses (the objects idbind keeps in step), with its
    /// user, verb, `objectRef` and `responseStatus`. Each is written as its request completes: wait for what
    /// should be there rather than expect it the moment a client saw the answer.
    pub fn audit_events(&self) -> Result<Vec<serde_json::Value>> {
        let text = match fs::read_to_string(self.dir.join(AUDIT_LOG)) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e.into()),
        };
        // A line being written as this reads it is incomplete: it is the next call's.
        text.lines().filter(|l| l.ends_with('}')).map(|l| Ok(serde_json::from_str(l)?)).collect()
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The API server's URL, which is also the ServiceAccount token issuer.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The CA that signed the API server's serving certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("pki/ca.crt")
    }

    /// The folder holding state, logs and kubeconfig.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A `kubectl` command (our pinned build) against this control plane as admin.
    pub fn kubectl(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin_dir().join("kubectl"));
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig().display()))
            .arg(format!("--cache-dir={}", self.dir.join("kubectl-cache").display()))
            .args(args);
        cmd
    }

    /// Runs kubectl and fails with its stderr unless it succeeds; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.kubectl(args).output()?;
        if !out.status.success() {
            bail!("kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs kubectl until it succeeds (for what the API server publishes asynchronously, such as a new CRD's
    /// OpenAPI document that `kubectl explain` reads); returns the last stdout.
    pub fn kubectl_eventually(&self, args: &[&str], timeout: Duration) -> Result<String> {
        let start = Instant::now();
        loop {
            match self.kubectl_ok(args) {
                Ok(out) => return Ok(out),
                Err(e) if start.elapsed() > timeout => {
                    return Err(e.context(format!("still failing after {timeout:?}")));
                }
                Err(_) => thread::sleep(Duration::from_millis(250)),
            }
        }
    }

    /// Waits until discovery serves `resource` (e.g. `workloadidentitybindings.idbind.dev`), which lags a
    /// CRD's Established condition; kubectl's short names and `explain` need it.
    pub fn wait_for_discovery(&self, group: &str, short_name: &str, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            let out = self
                .kubectl(&["api-resources", &format!("--api-group={group}"), "--cached=false"])
                .output()?;
            if out.status.success()
                && String::from_utf8_lossy(&out.stdout).split_whitespace().any(|w| w == short_name)
            {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!("discovery did not list {short_name} in {group} within {timeout:?}");
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Creates a namespace with a unique name for one test.
    pub fn fresh_namespace(&self, prefix: &str) -> Result<String> {
        let name = format!("{prefix}-{}", random_hex(4)?);
        self.kubectl_ok(&["create", "namespace", &name])?;
        Ok(name)
    }

    /// Kills kube-apiserver (SIGKILL, as a crashed or evicted API server: every watch and connection drops at
    /// once) and starts it again with the same flags, so it serves the same URL, certificates, tokens and
    /// etcd data and clients reconnect on their own. Returns once it is ready again. etcd and
    /// kube-controller-manager keep running. Its log continues in `logs/kube-apiserver.log`. For a plane
    /// started with [`Lifetime::TiedToCaller`], the new process is tied to a thread that lives as long as
    /// this process (not to the caller's).
    pub fn restart_apiserver(&self) -> Result<()> {
        let name = "kube-apiserver";
        {
            let mut children = self.children.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(slot) = children.iter_mut().find(|(n, _)| n == name) else {
                bail!("{name} is not managed by this handle (detached?)");
            };
            let _ = slot.1.kill();
            slot.1.wait().with_context(|| format!("waiting for the killed {name}"))?;
            let mut cmd = self.command(self.lifetime, name, &self.apiserver_args, true)?;
            let child = match self.lifetime {
                Lifetime::TiedToCaller => spawn_from_keeper(cmd),
                Lifetime::Detached => cmd.spawn(),
            }
            .with_context(|| format!("restarting {name}"))?;
            fs::write(self.dir.join(format!("{name}.pid")), child.id().to_string())?;
            slot.1 = child;
        }
        self.wait_ready(Duration::from_secs(120))
    }

    fn spawn(&mut self, lifetime: Lifetime, name: &str, args: &[String]) -> Result<()> {
        let mut cmd = self.command(lifetime, name, args, false)?;
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        fs::write(self.dir.join(format!("{name}.pid")), child.id().to_string())?;
        self.children.get_mut().unwrap_or_else(PoisonError::into_inner).push((name.to_string(), child));
        Ok(())
    }

    /// The command for one process, its output going to `logs/<name>.log` (appended to on a restart).
    fn command(&self, lifetime: Lifetime, name: &str, args: &[String], append_log: bool) -> Result<Command> {
        logged_command(&self.dir.join("logs"), &bin_dir().join(name), name, lifetime, args, append_log)
    }

    fn wait_ready(&self, timeout: Duration) -> Result<()> {
        self.wait_for(timeout, "kube-apiserver /readyz", |p| {
            p.kubectl(&["get", "--raw=/readyz"]).output().map(|o| o.status.success()).unwrap_or(false)
        })
    }

    fn wait_for(&self, timeout: Duration, what: &str, ready: impl Fn(&Self) -> bool) -> Result<()> {
        let start = Instant::now();
        loop {
            if ready(self) {
                return Ok(());
            }
            for (_, child) in self.children.lock().unwrap_or_else(PoisonError::into_inner).iter_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "a control-plane process exited ({status}) while waiting for {what}; logs in {}",
                        self.dir.join("logs").display()
                    );
                }
            }
            if start.elapsed() > timeout {
                bail!(
                    "timed out after {timeout:?} waiting for {what}; logs in {}",
                    self.dir.join("logs").display()
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Leaves the processes running (for `make up`); `stop_detached` ends them.
    pub fn detach(mut self) {
        self.children.get_mut().unwrap_or_else(PoisonError::into_inner).clear();
    }

    fn stop(&mut self) {
        let children = self.children.get_mut().unwrap_or_else(PoisonError::into_inner);
        for (_, child) in children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
        children.clear();
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The command running `program` with `args`, its output going to `<logs>/<name>.log` (appended to when
/// `append_log`), tied to the caller or detached as `lifetime` says.
pub(crate) fn logged_command(
    logs: &Path,
    program: &Path,
    name: &str,
    lifetime: Lifetime,
    args: &[String],
    append_log: bool,
) -> Result<Command> {
    let log_path = logs.join(format!("{name}.log"));
    let log = if append_log {
        fs::File::options().create(true).append(true).open(log_path)?
    } else {
        fs::File::create(log_path)?
    };
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    // SAFETY: only async-signal-safe libc calls run between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            match lifetime {
                Lifetime::TiedToCaller => {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Lifetime::Detached => {
                    libc::setsid();
                }
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// Ends the processes whose pids `pid_files` hold: `signal` to all at once, SIGKILL to any still there after
/// 10 s; removes the files.
pub(crate) fn stop_pid_files(pid_files: &[PathBuf], signal: i32) {
    let pids: Vec<i32> =
        pid_files.iter().filter_map(|f| fs::read_to_string(f).ok()?.trim().parse().ok()).collect();
    for pid in &pids {
        // SAFETY: kill(2) with a pid we started; a stale pid of a gone process returns ESRCH.
        unsafe { libc::kill(*pid, signal) };
    }
    for _ in 0..200 {
        if !pids.iter().any(|pid| running(*pid)) {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    for pid in &pids {
        // SAFETY: as above; the process ignored `signal` for 10 s.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    for f in pid_files {
        let _ = fs::remove_file(f);
    }
}

/// Whether process `pid` exists and has not exited: a zombie (exited, not yet reaped by its parent, which for
/// a detached process is an init that may reap late) counts as gone.
pub(crate) fn running(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) STATE ...": the state follows the last ')'.
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next()) != Some('Z'),
        Err(_) => false,
    }
}

/// Ends a control plane started with [`Lifetime::Detached`] under `dir`.
pub fn stop_detached(dir: &Path) -> Result<()> {
    // One after the other: an API server whose etcd is gone takes 10 s to give up.
    for name in ["kube-controller-manager", "kube-apiserver", "etcd"] {
        stop_pid_files(&[dir.join(format!("{name}.pid"))], libc::SIGTERM);
    }
    Ok(())
}

/// Spawns `cmd` so that it dies with this process (SIGKILL when the test binary ends, however it ends): for
/// processes a test starts besides the control plane, such as the operator itself.
pub fn spawn_tied(mut cmd: Command) -> std::io::Result<Child> {
    // SAFETY: only the async-signal-safe prctl runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    spawn_from_keeper(cmd)
}

/// Spawns `cmd` from one thread that lives as long as this process, so that a process tied to its parent
/// thread (PR_SET_PDEATHSIG, [`Lifetime::TiedToCaller`]) dies with the process and not when the thread that
/// asked for it ends (test threads come and go).
fn spawn_from_keeper(cmd: Command) -> std::io::Result<Child> {
    type Job = (Command, mpsc::Sender<std::io::Result<Child>>);
    static KEEPER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    let jobs = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("control-plane-keeper".into())
            .spawn(move || {
                // The sender lives in a static, so this loop never ends.
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawning the control-plane keeper thread");
        tx
    });
    let (reply, answer) = mpsc::channel();
    jobs.send((cmd, reply)).map_err(|_| std::io::Error::other("the control-plane keeper thread is gone"))?;
    answer.recv().map_err(|_| std::io::Error::other("the control-plane keeper thread is gone"))?
}

/// One control plane per test binary, started on first use by a thread that lives as long as the process, so
/// the processes die with the test binary (PR_SET_PDEATHSIG follows the thread that spawned them, and test
/// threads come and go).
pub fn shared() -> &'static ControlPlane {
    static PLANE: OnceLock<ControlPlane> = OnceLock::new();
    PLANE.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        let root = workspace_root().join(".cache/test-clusters");
        remove_dead_clusters(&root);
        let dir = root.join(format!(
            "{}-{}",
            std::env::current_exe()
                .ok()
                .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .unwrap_or_default(),
            std::process::id()
        ));
        thread::Builder::new()
            .name("control-plane".into())
            .spawn(move || {
                let started = ControlPlane::start(&dir, Lifetime::TiedToCaller);
                match started {
                    Ok(plane) => {
                        // The plane lives in the static; this thread only keeps the processes tied.
                        let _ = tx.send(Ok(plane));
                        loop {
                            thread::park();
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
            .expect("spawning the control-plane thread");
        match rx.recv() {
            Ok(Ok(plane)) => plane,
            Ok(Err(e)) => panic!("starting the test control plane: {e:#}"),
            Err(_) => panic!("the control-plane thread died"),
        }
    })
}

/// Test binaries cannot clean up after themselves (statics are never dropped), so each one removes the
/// folders of earlier test binaries whose process is gone (`<name>-<pid>`).
fn remove_dead_clusters(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.rsplit('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        // SAFETY: signal 0 only probes whether the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        if !alive {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// [`shared`], with idbind's CRDs (`crds/`, or the folder `IDBIND_TEST_CRDS` names: an older build's, to show
/// what a test finds there) installed once per test binary and served by discovery (tests in one binary run
/// concurrently, and two concurrent applies of a new CRD race).
pub fn shared_with_crds() -> &'static ControlPlane {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    let plane = shared();
    INSTALLED.get_or_init(|| {
        let crds = std::env::var_os("IDBIND_TEST_CRDS")
            .map_or_else(|| workspace_root().join("crds"), PathBuf::from)
            .display()
            .to_string();
        let installed = plane
            .kubectl_ok(&["apply", "--server-side", "-f", &crds])
            .and_then(|_| {
                plane.kubectl_ok(&[
                    "wait",
                    "--for=condition=Established",
                    "--timeout=60s",
                    "crd/workloadidentitybindings.idbind.dev",
                    "crd/workloadidentitypolicies.idbind.dev",
                ])
            })
            .and_then(|_| plane.wait_for_discovery("idbind.dev", "wib", Duration::from_secs(60)))
            .and_then(|_| plane.wait_for_discovery("idbind.dev", "wip", Duration::from_secs(60)));
        if let Err(e) = installed {
            panic!("installing the CRDs: {e:#}");
        }
    });
    plane
}

fn free_ports<const N: usize>() -> Result<[u16; N]> {
    // Hold all listeners at once so the ports differ; the OS will not hand them out again at once.
    let listeners = (0..N).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<Vec<_>>>()?;
    let mut ports = [0u16; N];
    for (port, l) in ports.iter_mut().zip(&listeners) {
        *port = l.local_addr()?.port();
    }
    Ok(ports)
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    use std::io::Read;
    fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .context("running openssl (install it: apt-get install openssl)")?;
    if !out.status.success() {
        bail!("openssl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Where the API server listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listen {
    /// 127.0.0.1: only processes of this machine reach it (every test but the node's, and `make up`).
    Loopback,
    /// The node's bridge address ([`node::GATEWAY`]), which pods reach (the bridge must exist first:
    /// [`node::Node::prepare`]).
    NodeBridge,
}

impl Listen {
    fn address(self) -> &'static str {
        match self {
            Listen::Loopback => "127.0.0.1",
            Listen::NodeBridge => node::GATEWAY,
        }
    }
}

/// The user the API server is when it calls a kubelet (its client certificate's CN).
const KUBELET_CLIENT_USER: &str = "idbind-apiserver-kubelet-client";

/// A CA, the API server's serving certificate for 127.0.0.1/localhost (and, for a node, the bridge address
/// and the kubernetes Service's ClusterIP and names, which in-cluster clients dial), the RSA key that signs
/// ServiceAccount tokens (RS256, as on AKS) and, for a node, the API server's client certificate for
/// kubelets.
fn make_pki(dir: &Path, listen: Listen) -> Result<()> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "30",
            "-subj",
            "/CN=idbind-test-ca",
        ],
    )?;
    let mut san = "IP:127.0.0.1,DNS:localhost".to_string();
    if listen == Listen::NodeBridge {
        san.push_str(&format!(
            ",IP:{},IP:{},DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc",
            node::GATEWAY,
            node::KUBERNETES_SERVICE_IP
        ));
    }
    signed_by_ca(
        dir,
        "apiserver",
        "/CN=kube-apiserver",
        &format!("subjectAltName={san}\nextendedKeyUsage=serverAuth\n"),
    )?;
    openssl(dir, &["genrsa", "-out", "sa.key", "2048"])?;
    openssl(dir, &["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
    if listen == Listen::NodeBridge {
        signed_by_ca(
            dir,
            "kubelet-client",
            &format!("/CN={KUBELET_CLIENT_USER}"),
            "extendedKeyUsage=clientAuth\n",
        )?;
        signed_by_ca(
            dir,
            "kubelet-serving",
            &format!("/O=system:nodes/CN=system:node:{}", node::NODE_NAME),
            &format!(
                "subjectAltName=IP:{},DNS:{}\nextendedKeyUsage=serverAuth\n",
                node::GATEWAY,
                node::NODE_NAME
            ),
        )?;
    }
    Ok(())
}

/// `NAME.key` and `NAME.crt`, a certificate for `subject` with the extensions `ext`, signed by `ca.crt`.
pub(crate) fn signed_by_ca(dir: &Path, name: &str, subject: &str, ext: &str) -> Result<()> {
    let (key, csr, crt, ext_file) =
        (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"), format!("{name}.ext"));
    openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subject])?;
    fs::write(dir.join(&ext_file), ext)?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "30",
            "-extfile",
            &ext_file,
        ],
    )
}

/// A kubeconfig for `user`, signed in with `token`, trusting `ca` for `server`.
pub(crate) fn write_kubeconfig(path: &Path, server: &str, ca: &Path, user: &str, token: &str) -> Result<()> {
    let cfg = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: idbind-local\n  cluster:\n    server: \
         {server}\n    certificate-authority: {ca}\nusers:\n- name: {user}\n  user:\n    token: \
         {token}\ncontexts:\n- name: idbind-local\n  context:\n    cluster: idbind-local\n    user: \
         {user}\ncurrent-context: idbind-local\n",
        ca = ca.display()
    );
    fs::write(path, cfg)?;
    Ok(())
}
