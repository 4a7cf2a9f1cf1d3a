//! One benchmark size: control plane + simulator + release operator, N bindings applied at once, convergence,
//! spec edits under backlog, a restart, and steady state over several resyncs.

use std::sync::PoisonError;
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use idbind_testenv::{ControlPlane, Lifetime};
use serde_json::{Value, json};

use crate::{
    model::{self, APP, ID_RG, KV_RG, LOCATION, SECRET, SUB},
    procs::{self, Proc, ProcStat, proc_stat},
    prom,
    watch::Watch,
};

pub struct Options {
    pub idbind: PathBuf,
    /// The `idbind-sim` binary.
    pub sim: PathBuf,
    pub work: PathBuf,
    pub crds: PathBuf,
}

/// Settings of one size.
#[derive(Clone, Debug)]
pub struct Size {
    pub n: usize,
    /// Limits and the operator's budget multiplied by this; latencies divided by it.
    pub scale: f64,
    pub concurrency: u32,
    /// Resync during convergence (the operator's default, 600 s, divided by `scale`).
    pub converge_resync: u64,
    /// Short resync for the steady-state phase.
    pub steady_resync: u64,
    /// Steady state lasts this many resync periods (plus 10 % for the resync jitter).
    pub steady_periods: f64,
}

const PROBE: &str = "probe/probe";
const CHUNK: usize = 500;

pub(crate) fn log(t0: Instant, msg: impl AsRef<str>) {
    eprintln!("[bench {:>7.1}s] {}", t0.elapsed().as_secs_f64(), msg.as_ref());
}

pub(crate) fn binding_json(ns: &str, name: &str, vault: usize, roles: &[&str]) -> Value {
    let vault_id = format!(
        "/subscriptions/{}/resourceGroups/{KV_RG}/providers/Microsoft.KeyVault/vaults/{}",
        model::vault_sub(vault),
        model::vault_name(vault)
    );
    json!({
        "apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "serviceAccountName": name,
            "identity": {"name": format!("{ns}-{name}"), "resourceGroup": ID_RG, "location": LOCATION},
            "keyVaults": [{"resourceId": vault_id, "roles": roles}],
        }
    })
}

pub(crate) fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// (namespace, name, vault) of bench binding i: 1,000 per namespace, vaults round-robin.
fn bench_binding(i: usize, vaults: usize) -> (String, String, usize) {
    (format!("bench-{}", i / 1000), format!("b{i:05}"), i % vaults)
}

pub(crate) fn kubectl_create(cp: &ControlPlane, file: &Path) -> Result<()> {
    cp.kubectl_ok(&["create", "-f", &file.display().to_string()]).map(|_| ())
}

pub(crate) struct Operator {
    proc: Proc,
    http: String,
}

/// Who an operator is: its cluster's name, the app it signs in as, the namespace it watches (all when none).
pub(crate) struct Member<'a> {
    pub cluster: &'a str,
    pub app: &'a str,
    pub namespace: Option<&'a str>,
}

/// The one operator of the size runs.
const ALONE: Member<'static> = Member { cluster: "bench", app: APP, namespace: None };

impl Operator {
    pub(crate) fn check_alive(&mut self) -> Result<()> {
        self.proc.check_alive()
    }

    pub(crate) fn stop(&mut self) {
        self.proc.stop(Duration::from_secs(30));
    }

    pub(crate) fn metrics(&self) -> Result<String> {
        procs::get(&format!("{}/metrics", self.http))
    }
    fn stat(&self) -> ProcStat {
        proc_stat(self.proc.pid()).unwrap_or_default()
    }
}

pub(crate) struct Env<'a> {
    pub opts: &'a Options,
    pub size: &'a Size,
    pub cp: &'a ControlPlane,
    pub dir: PathBuf,
    pub endpoint: Value,
}

impl Env<'_> {
    fn sim_admin(&self) -> String {
        format!("{}/_sim", self.endpoint["http"].as_str().unwrap_or_default())
    }

    pub(crate) fn counters(&self) -> Result<Value> {
        Ok(serde_json::from_str(&procs::get(&format!("{}/counters", self.sim_admin()))?)?)
    }

    pub(crate) fn reset_counters(&self) -> Result<()> {
        procs::http("DELETE", &format!("{}/counters", self.sim_admin()), Duration::from_secs(10)).map(|_| ())
    }

    /// The release operator; with `verify`, `IDBIND_VERIFY=access` and Azure's hosts (Key Vault's data plane)
    /// through the simulator's proxy, as a cluster with an egress proxy has them.
    fn start_operator(&self, tag: &str, resync: u64, verify: bool) -> Result<Operator> {
        self.start_member(tag, resync, verify, &ALONE)
    }

    /// An operator as `member`.
    pub(crate) fn start_member(
        &self,
        tag: &str,
        resync: u64,
        verify: bool,
        member: &Member<'_>,
    ) -> Result<Operator> {
        let port = procs::free_port()?;
        let mut cmd = Command::new(&self.opts.idbind);
        let e = &self.endpoint;
        cmd.arg("run").env_clear();
        for keep in ["PATH", "HOME", "RUST_LOG"] {
            if let Some(v) = std::env::var_os(keep) {
                cmd.env(keep, v);
            }
        }
        cmd.env("KUBECONFIG", self.cp.kubeconfig())
            .env("IDBIND_CLUSTER_NAME", member.cluster)
            .env("IDBIND_OIDC_ISSUER", self.cp.server())
            .env("AZURE_SUBSCRIPTION_ID", SUB)
            .env("AZURE_TENANT_ID", e["tenantId"].as_str().unwrap_or_default())
            .env("AZURE_CLIENT_ID", member.app)
            .env("AZURE_CLIENT_SECRET", SECRET)
            .env("IDBIND_RESOURCE_GROUP", ID_RG)
            .env("IDBIND_LOCATION", LOCATION)
            .env("IDBIND_CLOUD", "custom")
            .env("IDBIND_ARM_ENDPOINT", e["https"].as_str().unwrap_or_default())
            .env("IDBIND_AUTHORITY_HOST", e["authorityHost"].as_str().unwrap_or_default())
            .env("IDBIND_CA_FILE", self.dir.join("sim/ca.pem"))
            .env("IDBIND_CONCURRENCY", self.size.concurrency.to_string())
            .env("IDBIND_RESYNC_SECONDS", resync.to_string())
            .env("IDBIND_BUDGET_SCALE", self.size.scale.to_string())
            .env("IDBIND_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("IDBIND_LEADER_ELECT", "false")
            .env("IDBIND_LOG_FORMAT", "json");
        if let Some(namespace) = member.namespace {
            cmd.env("IDBIND_WATCH_NAMESPACE", namespace);
        }
        if model::vault_count(self.size.n) > 1 {
            cmd.env("IDBIND_ALLOW_OTHER_SUBSCRIPTIONS", "true");
        }
        if verify {
            cmd.env("IDBIND_VERIFY", "access")
                .env("HTTPS_PROXY", e["proxy"].as_str().unwrap_or_default())
                .env("NO_PROXY", "127.0.0.1,localhost");
        }
        let mut proc = Proc::spawn("idbind run", cmd, &self.dir.join(format!("operator-{tag}.log")))?;
        let http = format!("http://127.0.0.1:{port}");
        // /healthz, not /readyz: readiness is the operator's business and is reported, not relied on; the
        // probe binding turning Ready is what the bench waits for.
        procs::wait_until("the operator's /healthz", Duration::from_secs(120), || {
            proc.check_alive()?;
            Ok(procs::get(&format!("{http}/healthz")).is_ok())
        })?;
        Ok(Operator { proc, http })
    }
}

/// Verification's cost (`IDBIND_VERIFY=access`): a fresh operator with it on proves every Ready binding once
/// (one TokenRequest, one Entra exchange and one Key Vault listing each; the simulator's propagation windows
/// are 0 here, so each is proven at the first attempt), then makes no verification call in a resync period.
fn verification(env: &Env<'_>, t_start: Instant, total: f64, timeout: Duration) -> Result<Value> {
    env.reset_counters()?;
    log(t_start, "restarting the operator with IDBIND_VERIFY=access");
    let started = Instant::now();
    let op = env.start_operator("verify", env.size.steady_resync, true)?;
    let proven = |c: &Value| c["Secrets_List"]["200"].as_u64().unwrap_or(0) as f64;
    procs::wait_until("every binding proven", timeout, || Ok(proven(&env.counters()?) >= total))?;
    let pass_seconds = started.elapsed().as_secs_f64();
    let pass = env.counters()?;
    env.reset_counters()?;
    let window = env.size.steady_resync as f64 * 1.1;
    log(
        t_start,
        format!("verification pass took {pass_seconds:.1} s; one resync period ({window:.0} s) after"),
    );
    thread::sleep(Duration::from_secs_f64(window));
    let after = env.counters()?;
    let reconciles = prom::sum(&op.metrics()?, "idbind_reconciles_total");
    drop(op);
    Ok(json!({
        "passSeconds": pass_seconds,
        "pass": {"counters": pass, "summary": summarize_counters(&pass)},
        "resyncWindowSeconds": window,
        "afterPass": {"counters": after, "summary": summarize_counters(&after)},
        "reconciles": reconciles,
    }))
}

/// Requests by operation and status → totals by kind (read, write, delete, token) and 429s.
pub fn summarize_counters(c: &Value) -> Value {
    let mut kinds: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    let mut throttled = 0;
    let mut total = 0;
    if let Some(ops) = c.as_object() {
        for (op, by_status) in ops {
            let kind = op_kind(op);
            for (status, n) in by_status.as_object().into_iter().flatten() {
                let n = n.as_u64().unwrap_or(0);
                *kinds.entry(kind).or_default().entry(status.clone()).or_default() += n;
                total += n;
                if status == "429" {
                    throttled += n;
                }
            }
        }
    }
    let sum = |k: &str| kinds.get(k).map(|m| m.values().sum::<u64>()).unwrap_or(0);
    json!({
        "total": total, "throttled429": throttled,
        "reads": sum("read"), "writes": sum("write"), "deletes": sum("delete"), "token": sum("token"),
        "keyVault": sum("keyvault"),
        "byKind": kinds,
    })
}

pub fn op_kind(op: &str) -> &'static str {
    // Key Vault's data plane (the simulator names its operations as the REST API does), not ARM.
    if ["Secrets_", "Certificates_", "Keys_"].iter().any(|p| op.starts_with(p)) {
        "keyvault"
    } else if op == "Token" || op.starts_with("Token") || op.contains("Oidc") || op.contains("Discovery") {
        "token"
    } else if op.ends_with("_Delete") {
        "delete"
    } else if op.ends_with("_Get") || op.contains("_List") {
        "read"
    } else if op.ends_with("_CreateOrUpdate")
        || op.ends_with("_Create")
        || op.ends_with("_Update")
        || op.ends_with("AccessPolicy")
    {
        "write"
    } else {
        "other"
    }
}

fn histogram_summary(h: &[(f64, f64)]) -> Value {
    json!({
        "count": h.last().map(|b| b.1).unwrap_or(0.0),
        "p50": prom::quantile(h, 0.5), "p90": prom::quantile(h, 0.9), "p99": prom::quantile(h, 0.99),
        "buckets": h.iter().map(|(le, c)| json!([if le.is_finite() { json!(le) } else { json!("+Inf") }, c])).collect::<Vec<_>>(),
    })
}

fn operator_view(metrics: &str) -> Value {
    // jemalloc's live and resident bytes (idbind_heap_bytes), when the operator exposes them.
    let heap = |kind: &str| {
        prom::samples(metrics)
            .into_iter()
            .find(|(name, labels, _)| {
                name == "idbind_heap_bytes" && prom::label(labels, "kind") == Some(kind)
            })
            .map(|(_, _, v)| v)
    };
    let mut arm: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    let mut errors: BTreeMap<String, f64> = BTreeMap::new();
    for (name, labels, v) in prom::samples(metrics) {
        if name == "idbind_arm_requests_total" {
            let op = prom::label(&labels, "operation").unwrap_or("?").to_string();
            let code = prom::label(&labels, "code").unwrap_or("?").to_string();
            *arm.entry(op).or_default().entry(code).or_default() += v;
        } else if name == "idbind_reconcile_errors_total" {
            *errors.entry(prom::label(&labels, "category").unwrap_or("?").to_string()).or_default() += v;
        }
    }
    json!({
        "reconciles": prom::sum(metrics, "idbind_reconciles_total"),
        "reconcileErrorsByCategory": errors,
        "armRequests": arm,
        "heapAllocatedBytes": heap("allocated"),
        "heapResidentBytes": heap("resident"),
        "budgetWaitSecondsSum": prom::sum(metrics, "idbind_budget_wait_seconds_sum"),
        "budgetWaitCount": prom::sum(metrics, "idbind_budget_wait_seconds_count"),
    })
}

fn stat_json(s: ProcStat) -> Value {
    json!({"peakRssBytes": s.peak_rss, "rssBytes": s.rss, "cpuSeconds": s.cpu_seconds})
}

/// A fresh control plane with idbind's CRDs, and the simulator with `config(the control plane's CA)`; the
/// simulator's endpoint.
pub(crate) fn start_world(
    opts: &Options,
    dir: &Path,
    config: impl FnOnce(&str) -> Value,
) -> Result<(ControlPlane, Proc, Value)> {
    let cp = ControlPlane::start(&dir.join("cluster"), Lifetime::TiedToCaller)?;
    cp.kubectl_ok(&["apply", "--server-side", "-f", &opts.crds.display().to_string()])?;
    cp.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/workloadidentitybindings.idbind.dev",
    ])?;
    // The simulator with ARM's documented limits (scaled) and the latency model.
    let sim_dir = dir.join("sim");
    fs::create_dir_all(&sim_dir)?;
    let config = config(&cp.ca_file().display().to_string());
    fs::write(sim_dir.join("config.json"), serde_json::to_string_pretty(&config)?)?;
    let mut sim_cmd = Command::new(&opts.sim);
    sim_cmd.arg("--config").arg(sim_dir.join("config.json")).arg("--state-dir").arg(&sim_dir).args([
        "--https-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
        "--proxy-addr",
        "127.0.0.1:0",
    ]);
    let mut sim = Proc::spawn("idbind-sim", sim_cmd, &dir.join("sim.log"))?;
    let endpoint_file = sim_dir.join("endpoint.json");
    procs::wait_until("the simulator's endpoint.json", Duration::from_secs(60), || {
        sim.check_alive()?;
        Ok(fs::read_to_string(&endpoint_file)
            .ok()
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .is_some_and(|v| v["http"].is_string()))
    })?;
    let endpoint: Value = serde_json::from_str(&fs::read_to_string(&endpoint_file)?)?;
    Ok((cp, sim, endpoint))
}

pub fn run(opts: &Options, size: &Size) -> Result<Value> {
    let t_start = Instant::now();
    let n = size.n;
    let dir = opts.work.join(format!("n{n}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let dir = fs::canonicalize(&dir)?;
    log(
        t_start,
        format!("N={n}: starting etcd + kube-apiserver + kube-controller-manager in {}", dir.display()),
    );
    let mut config = Value::Null;
    let (cp, sim, endpoint) = start_world(opts, &dir, |ca| {
        config = model::sim_config(n, size.scale, ca);
        config.clone()
    })?;
    let env = Env { opts, size, cp: &cp, dir: dir.clone(), endpoint };

    // Namespaces and ServiceAccounts exist before the clock starts.
    let vaults = model::vault_count(n);
    let namespaces = n.div_ceil(1000);
    let mut setup: Vec<Value> = (0..namespaces)
        .map(|k| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("bench-{k}")}}))
        .collect();
    setup.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "probe"}}));
    // Namespaces bind nothing without a policy: one selects the bench's, with its vaults (one resource group
    // per vault subscription).
    let key_vaults: Vec<Value> =
        (0..vaults).map(|v| json!({"subscriptionId": model::vault_sub(v), "resourceGroup": KV_RG})).collect();
    setup.push(json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityPolicy",
        "metadata": {"name": "bench"}, "spec": {"namespaces": ["bench-*", "probe"], "keyVaults": key_vaults}}));
    let ns_file = dir.join("namespaces.json");
    fs::write(&ns_file, list(setup).to_string())?;
    kubectl_create(&cp, &ns_file)?;
    log(t_start, format!("creating {n} ServiceAccounts"));
    let mut binding_files = Vec::new();
    for (c, chunk) in (0..n).collect::<Vec<_>>().chunks(CHUNK).enumerate() {
        let sas: Vec<Value> = chunk.iter().map(|&i| {
            let (ns, name, _) = bench_binding(i, vaults);
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}})
        }).collect();
        let f = dir.join(format!("sa-{c}.json"));
        fs::write(&f, list(sas).to_string())?;
        kubectl_create(&cp, &f)?;
        let bindings: Vec<Value> = chunk
            .iter()
            .map(|&i| {
                let (ns, name, v) = bench_binding(i, vaults);
                binding_json(&ns, &name, v, &["Key Vault Secrets User"])
            })
            .collect();
        let f = dir.join(format!("bindings-{c}.json"));
        fs::write(&f, list(bindings).to_string())?;
        binding_files.push(f);
    }
    cp.kubectl_ok(&["create", "serviceaccount", "-n", "probe", "probe"])?;

    log(
        t_start,
        format!(
            "starting the release operator (concurrency {}, budget scale {}, resync {} s)",
            size.concurrency, size.scale, size.converge_resync
        ),
    );
    let mut op = env.start_operator("converge", size.converge_resync, false)?;
    let watch = Watch::start(&cp)?;
    // The probe: one binding Ready before the backlog arrives; edited while it converges.
    let probe_file = dir.join("probe.json");
    fs::write(&probe_file, binding_json("probe", "probe", 0, &["Key Vault Secrets User"]).to_string())?;
    kubectl_create(&cp, &probe_file)?;
    watch.wait_ready(PROBE, 1, Duration::from_secs(180)).context("the probe binding before the backlog")?;
    // Let every bucket the probe touched refill before the clock starts.
    thread::sleep(Duration::from_secs_f64((5.0 / size.scale).max(1.0)));
    let base_stat = op.stat();
    let base_metrics = op.metrics()?;
    env.reset_counters()?;

    let (bound, constraints) = model::lower_bound(n, size.scale);
    log(t_start, format!("applying {n} bindings; lower bound from the simulator's limits: {bound:.1} s"));
    let t0 = Instant::now();
    let applied: Arc<Mutex<Vec<(usize, f64)>>> = Arc::default();
    let applier = {
        let files = binding_files.clone();
        let applied = applied.clone();
        let kubeconfig = cp.kubeconfig();
        thread::spawn(move || -> Result<()> {
            let mut done = 0;
            for f in files {
                let out = Command::new(idbind_testenv::bin_dir().join("kubectl"))
                    .arg(format!("--kubeconfig={}", kubeconfig.display()))
                    .args(["create", "-f"])
                    .arg(&f)
                    .output()?;
                if !out.status.success() {
                    bail!("kubectl create -f {}: {}", f.display(), String::from_utf8_lossy(&out.stderr));
                }
                done += CHUNK;
                applied
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((done, t0.elapsed().as_secs_f64()));
            }
            Ok(())
        })
    };

    // Convergence, sampled every second; spec edits of the probe while the backlog is large.
    let timeout = Duration::from_secs_f64(bound * 3.0 + 300.0);
    let probe_ready = |w: &Watch| {
        w.snapshot(|s| {
            s.bindings.get(PROBE).is_some_and(|b| b.ready && b.observed_generation == b.generation)
        })
    };
    let mut timeline: Vec<Value> = Vec::new();
    let mut edits: Vec<Value> = Vec::new();
    let mut pending_edit: Option<(i64, Instant, usize)> = None;
    let mut next_edit = Some(t0 + Duration::from_secs_f64((20.0 / size.scale).max(5.0)));
    let mut last_log = Instant::now();
    let mut edit_roles_two = true;
    let converged_at;
    loop {
        let ready = watch.ready_now() - usize::from(probe_ready(&watch));
        let s = op.stat();
        let t = t0.elapsed().as_secs_f64();
        timeline.push(json!([
            (t * 10.0).round() / 10.0,
            ready,
            s.rss,
            ((s.cpu_seconds - base_stat.cpu_seconds) * 100.0).round() / 100.0
        ]));
        if ready >= n {
            converged_at = t;
            break;
        }
        if t0.elapsed() > timeout {
            log(t_start, format!("TIMEOUT: {ready}/{n} Ready after {t:.0} s"));
            converged_at = f64::NAN;
            break;
        }
        if let Some((generation, issued, backlog)) = pending_edit {
            if let Some(done) =
                watch.snapshot(|s| s.bindings.get(PROBE).and_then(|b| b.ready_at.get(&generation).copied()))
            {
                let secs = done.duration_since(issued).as_secs_f64();
                log(t_start, format!("spec edit → Ready: {secs:.2} s with {backlog} bindings not yet Ready"));
                edits.push(json!({"generation": generation, "atSeconds": issued.duration_since(t0).as_secs_f64(), "backlog": backlog, "editToReadySeconds": secs}));
                pending_edit = None;
                next_edit = (edits.len() < 3)
                    .then(|| Instant::now() + Duration::from_secs_f64((15.0 / size.scale).max(3.0)));
            }
        } else if let Some(at) = next_edit
            && Instant::now() >= at
            && ready + n / 10 < n
        {
            let roles = if edit_roles_two {
                r#"["Key Vault Secrets User","Key Vault Certificate User"]"#
            } else {
                r#"["Key Vault Secrets User"]"#
            };
            edit_roles_two = !edit_roles_two;
            let vault_id = format!(
                "/subscriptions/{SUB}/resourceGroups/{KV_RG}/providers/Microsoft.KeyVault/vaults/{}",
                model::vault_name(0)
            );
            let patch =
                format!(r#"{{"spec":{{"keyVaults":[{{"resourceId":"{vault_id}","roles":{roles}}}]}}}}"#);
            let issued = Instant::now();
            let out = cp.kubectl_ok(&[
                "patch",
                "workloadidentitybinding.idbind.dev",
                "-n",
                "probe",
                "probe",
                "--type=merge",
                "-p",
                &patch,
                "-o",
                "jsonpath={.metadata.generation}",
            ])?;
            let generation: i64 = out.trim().parse().context("the probe's generation after the patch")?;
            pending_edit = Some((generation, issued, n - ready));
            next_edit = None;
        }
        if last_log.elapsed() >= Duration::from_secs(10) {
            let applied_now = applied
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .last()
                .map(|a| a.0.min(n))
                .unwrap_or(0);
            log(
                t_start,
                format!(
                    "{ready}/{n} Ready at {t:.0} s (bound {bound:.0} s), {applied_now} applied, operator \
                     RSS {:.1} MiB, CPU {:.1} s",
                    s.rss as f64 / 1048576.0,
                    s.cpu_seconds - base_stat.cpu_seconds
                ),
            );
            last_log = Instant::now();
        }
        op.proc.check_alive()?;
        thread::sleep(Duration::from_millis(1000));
    }
    let conv_stat = op.stat();
    let conv_metrics = op.metrics()?;
    let conv_counters = env.counters()?;
    match applier.join() {
        Ok(r) => r?,
        Err(_) => bail!("the apply thread panicked"),
    }
    // An edit still in flight at convergence: wait for it (bounded).
    if let Some((generation, issued, backlog)) = pending_edit {
        match watch.wait_ready(PROBE, generation, Duration::from_secs(120)) {
            Ok(done) => edits.push(json!({"generation": generation, "atSeconds": issued.duration_since(t0).as_secs_f64(), "backlog": backlog, "editToReadySeconds": done.duration_since(issued).as_secs_f64()})),
            Err(e) => edits.push(json!({"generation": generation, "atSeconds": issued.duration_since(t0).as_secs_f64(), "backlog": backlog, "error": e.to_string()})),
        }
    }
    log(
        t_start,
        format!(
            "converged: {n} Ready in {converged_at:.1} s, bound {bound:.1} s, ratio {:.3}",
            converged_at / bound
        ),
    );

    // Per-binding apply → Ready, from the watch (first event ≈ creation).
    let mut latencies: Vec<f64> = watch.snapshot(|s| {
        s.bindings
            .iter()
            .filter(|(k, _)| k.as_str() != PROBE)
            .filter_map(|(_, b)| Some(b.ready_at.get(&1)?.duration_since(b.seen?).as_secs_f64()))
            .collect()
    });
    let mut ready_times: Vec<f64> = watch.snapshot(|s| {
        s.bindings
            .iter()
            .filter(|(k, _)| k.as_str() != PROBE)
            .filter_map(|(_, b)| Some(b.ready_at.get(&1)?.saturating_duration_since(t0).as_secs_f64()))
            .collect()
    });
    ready_times.sort_by(f64::total_cmp);
    let apply_done =
        applied.lock().unwrap_or_else(PoisonError::into_inner).last().map(|a| a.1).unwrap_or(0.0);
    let reconcile_hist = prom::histogram_delta(
        &prom::histogram(&conv_metrics, "idbind_reconcile_duration_seconds"),
        &prom::histogram(&base_metrics, "idbind_reconcile_duration_seconds"),
    );

    // Steady state: a fresh operator process with a short resync. Its first pass (every binding once, as
    // after any restart or leader change) is measured on its own; then the counters start from zero for
    // `steady_periods` resync periods.
    op.proc.stop(Duration::from_secs(30));
    let restart_at = Instant::now();
    env.reset_counters()?;
    log(
        t_start,
        format!(
            "restarting the operator with IDBIND_RESYNC_SECONDS={} for the steady state",
            size.steady_resync
        ),
    );
    let op2 = env.start_operator("steady", size.steady_resync, false)?;
    let total = (n + 1) as f64;
    let pass_timeout = Duration::from_secs_f64(bound * 2.0 + 300.0);
    procs::wait_until("the restarted operator's first pass", pass_timeout, || {
        Ok(op2.metrics().map(|m| prom::sum(&m, "idbind_reconciles_total")).unwrap_or(0.0) >= total)
    })?;
    let restart_pass_seconds = restart_at.elapsed().as_secs_f64();
    let restart_counters = env.counters()?;
    env.reset_counters()?;
    let steady_base = op2.metrics()?;
    let steady_base_stat = op2.stat();
    let window = size.steady_resync as f64 * size.steady_periods * 1.1;
    log(t_start, format!("restart pass took {restart_pass_seconds:.1} s; steady state for {window:.0} s"));
    let steady_start = Instant::now();
    while steady_start.elapsed().as_secs_f64() < window {
        thread::sleep(Duration::from_secs(5));
        if steady_start.elapsed().as_secs_f64() as u64 % 60 < 5 {
            let c = summarize_counters(&env.counters()?);
            log(
                t_start,
                format!(
                    "steady state: {:.0}/{window:.0} s, reads {}, writes {}, deletes {}, 429 {}",
                    steady_start.elapsed().as_secs_f64(),
                    c["reads"],
                    c["writes"],
                    c["deletes"],
                    c["throttled429"]
                ),
            );
        }
    }
    let steady_counters = env.counters()?;
    let steady_metrics = op2.metrics()?;
    let steady_stat = op2.stat();
    let readyz = procs::get(&format!("{}/readyz", op2.http))
        .map(|b| b.trim().to_string())
        .unwrap_or_else(|e| e.to_string());
    let not_ready_after = total as usize - watch.ready_now();
    drop(op2);
    let verification = verification(&env, t_start, total, pass_timeout)?;
    watch.stop();
    drop(sim);

    let steady_sum = summarize_counters(&steady_counters);
    let reconciles_in_window = prom::sum(&steady_metrics, "idbind_reconciles_total")
        - prom::sum(&steady_base, "idbind_reconciles_total");
    let periods = window / size.steady_resync as f64;
    let per = |k: &str| steady_sum[k].as_u64().unwrap_or(0) as f64 / (total * periods);
    let per_reconcile = |k: &str| steady_sum[k].as_u64().unwrap_or(0) as f64 / reconciles_in_window.max(1.0);
    let conv_sum = summarize_counters(&conv_counters);
    let steady_hist = prom::histogram_delta(
        &prom::histogram(&steady_metrics, "idbind_reconcile_duration_seconds"),
        &prom::histogram(&steady_base, "idbind_reconcile_duration_seconds"),
    );

    let result = json!({
        "n": n,
        "scale": size.scale,
        "ranAt": crate::now_utc(),
        "wallSeconds": t_start.elapsed().as_secs_f64(),
        "settings": {
            "concurrency": size.concurrency, "budgetScale": size.scale,
            "convergeResyncSeconds": size.converge_resync, "steadyResyncSeconds": size.steady_resync,
            "vaults": vaults, "vaultSubscriptions": vaults, "namespaces": namespaces,
            "simConfig": config,
        },
        "convergence": {
            "seconds": converged_at,
            "lowerBoundSeconds": bound,
            "ratio": converged_at / bound,
            "constraints": constraints.iter().map(|c| json!({"name": c.name, "seconds": c.seconds, "derivation": c.derivation})).collect::<Vec<_>>(),
            "applySeconds": apply_done,
            "applyToReady": {"p50": prom::percentile(&mut latencies, 0.5), "p90": prom::percentile(&mut latencies, 0.9), "p99": prom::percentile(&mut latencies, 0.99), "max": latencies.iter().copied().fold(f64::NAN, f64::max)},
            "reconcileDuration": histogram_summary(&reconcile_hist),
            "reconcileSecondsSum": prom::sum(&conv_metrics, "idbind_reconcile_duration_seconds_sum") - prom::sum(&base_metrics, "idbind_reconcile_duration_seconds_sum"),
            "counters": conv_counters,
            "summary": conv_sum,
            "perBinding": {
                "reads": conv_sum["reads"].as_u64().unwrap_or(0) as f64 / n as f64,
                "writes": conv_sum["writes"].as_u64().unwrap_or(0) as f64 / n as f64,
                "throttled429": conv_sum["throttled429"].as_u64().unwrap_or(0) as f64 / n as f64,
                "reconciles": (prom::sum(&conv_metrics, "idbind_reconciles_total") - prom::sum(&base_metrics, "idbind_reconciles_total")) / n as f64,
            },
            "operator": operator_view(&conv_metrics),
            "operatorBaseline": operator_view(&base_metrics),
            "process": {"baseline": stat_json(base_stat), "end": stat_json(conv_stat), "cpuSecondsForRun": conv_stat.cpu_seconds - base_stat.cpu_seconds,
                "rssGrowthBytesPerBinding": (conv_stat.rss as f64 - base_stat.rss as f64) / n as f64},
            "timeline": {"columns": ["seconds", "ready", "rssBytes", "cpuSeconds"], "rows": timeline},
            "boundCurve": (0..=200).map(|i| {
                let t = bound * 1.05 * f64::from(i) / 200.0;
                json!([(t * 100.0).round() / 100.0, model::bound_ready_at(n, size.scale, t)])
            }).collect::<Vec<_>>(),
            "readyTimes": ready_times.iter().map(|t| (t * 100.0).round() / 100.0).collect::<Vec<_>>(),
        },
        "editsUnderBacklog": edits,
        "restart": {"firstPassSeconds": restart_pass_seconds, "counters": restart_counters, "summary": summarize_counters(&restart_counters)},
        "steadyState": {
            "windowSeconds": window, "resyncSeconds": size.steady_resync, "periods": periods,
            "reconciles": reconciles_in_window,
            "counters": steady_counters, "summary": steady_sum,
            // In steady state every reconcile is one binding's resync, so per reconcile is per binding per
            // resync; per period divides by the window instead (the jitter of up to 10 % makes that one a
            // little lower).
            "perBindingPerResync": {"reads": per_reconcile("reads"), "writes": per_reconcile("writes"), "deletes": per_reconcile("deletes"), "token": per_reconcile("token")},
            "perBindingPerPeriod": {"reads": per("reads"), "writes": per("writes"), "deletes": per("deletes"), "token": per("token")},
            "reconcileDuration": histogram_summary(&steady_hist),
            "process": {"start": stat_json(steady_base_stat), "end": stat_json(steady_stat), "cpuSeconds": steady_stat.cpu_seconds - steady_base_stat.cpu_seconds},
            "notReadyAtEnd": not_ready_after,
            "operatorReadyz": readyz,
        },
        "verification": verification,
    });
    drop(cp);
    log(t_start, format!("N={n} done"));
    Ok(result)
}
