//! The chaos soak (issue 7): many bindings under random creates, edits and deletes while Azure fails (~10% of
//! requests answered 500, 503 or 429, latency spikes, dropped connections), the API server is restarted
//! (every watch drops), the simulator is restarted from its persisted state on the same address, and the
//! operator (the real `idbind run` process) is killed with SIGKILL and started again. Then the chaos stops,
//! every live binding must become Ready for its current generation, every deleted one must be gone, and a
//! checker compares the simulator's whole state with the specs: exactly what the live (and retained) bindings
//! ask for, no duplicate, no stray identity, no orphaned role assignment. The diff must be empty.
//!
//! Knobs (environment):
//! - `SOAK_SEED`: replay a run (every run prints its seed; the chaos schedule and the operations follow from
//!   it, except where an operation waits for Ready, and the operator's and the faults' timing do not).
//! - `SOAK_SECONDS` (default 60): length of the chaos phase.
//! - `SOAK_BINDINGS` (default 200, the figure): the live population the run builds up to and keeps
//!   churning around.
//! - `SOAK_OPS_PER_SEC`: operation rate (default: enough to create the population in about 70% of the chaos
//!   phase, at least 2/s).
//! - `SOAK_CONVERGE_SECONDS` (default 240): how long convergence after the chaos may take.
//! - `SOAK_RENAME_ANYTIME` (default 1): rename identities (`identity.name`) also while a binding is not yet
//!   Ready; 0 renames only bindings Ready for their generation. (A rename that raced the first status write
//!   once left the first identity behind; the test at the end pins the fix.)
//!
//! `cargo test --test soak` runs the bounded form; `make soak` the long one (600 s).

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use idbind::api::binding::WorkloadIdentityBinding;
use idbind::core::conditions::READY;
use idbind_sim::{FaultAction, FaultRule, SimConfig, State};
use idbind_testkit::{
    chaos::{Rng, persist_in, restart_simulator},
    e2e::{
        Env, KV_RG, SUB, TestError, TestResult, identities, install_operator_rbac, start_without_operator,
    },
    process::Operator,
};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use serde_json::{Value, json};

/// The roles the default policy allows.
const ROLES: [&str; 4] =
    ["Key Vault Secrets User", "Key Vault Certificate User", "Key Vault Crypto User", "Key Vault Reader"];
/// Two RBAC vaults, so edits can move roles between them.
const VAULTS: [&str; 2] = ["kv-shop", "kv-two"];
const CLIENT_ID_ANNOTATION: &str = "azure.workload.identity/client-id";
const FIELD_MANAGER: &str = "idbind-soak";

fn env_num(name: &str, default: f64) -> Result<f64, TestError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().parse().map_err(|e| format!("{name}={v}: {e}"))?),
        _ => Ok(default),
    }
}

/// What the test asked of one binding.
#[derive(Clone, Debug, PartialEq)]
struct Spec {
    sa: String,
    /// `identity.name`; None: idbind's default name.
    identity: Option<String>,
    /// (vault, roles), at most one entry per vault.
    vaults: Vec<(String, Vec<String>)>,
    retain: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fate {
    Live,
    /// Deleted with deletionPolicy Delete: nothing may remain.
    Deleted,
    /// Deleted with Retain once Ready for its last spec: that spec's identity and role assignments must
    /// remain, and its federated credential must be gone (the namespace may later be someone else's).
    Retained,
}

#[derive(Clone, Debug)]
struct Binding {
    name: String,
    spec: Spec,
    fate: Fate,
    renames: u32,
}

fn manifest(name: &str, spec: &Spec) -> Value {
    let mut s = json!({"serviceAccountName": spec.sa, "deletionPolicy": if spec.retain { "Retain" } else { "Delete" }});
    if let Some(identity) = &spec.identity {
        s["identity"] = json!({"name": identity});
    }
    if !spec.vaults.is_empty() {
        s["keyVaults"] = spec
            .vaults
            .iter()
            .map(|(v, roles)| json!({"name": v, "resourceGroup": KV_RG, "roles": roles}))
            .collect();
    }
    json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": name}, "spec": s})
}

fn random_roles(rng: &mut Rng) -> Vec<String> {
    let n = 1 + rng.below(3);
    let mut roles: Vec<String> = Vec::new();
    while roles.len() < n {
        let r = rng.pick(&ROLES).to_string();
        if !roles.contains(&r) {
            roles.push(r);
        }
    }
    roles
}

fn vault_scope(vault: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{KV_RG}/providers/Microsoft.KeyVault/vaults/{vault}")
        .to_ascii_lowercase()
}

fn role_guid(role: &str) -> String {
    idbind::core::roles::BUILTIN_ROLES
        .iter()
        .find(|r| r.name == role)
        .map(|r| r.guid.to_string())
        .unwrap_or_else(|| format!("unknown role {role}"))
}

/// Errors worth retrying while the API server restarts: anything but a definite client error.
fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 404 || s.code == 409 || s.code == 429 || s.code >= 500,
        _ => true,
    }
}

/// Runs `op` until it succeeds, retrying transient failures (the API server may be restarting). Applies are
/// idempotent, so a retry after an answer lost on the way is harmless.
async fn retrying<T, F, Fut>(what: &str, mut op: F) -> Result<T, TestError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let start = Instant::now();
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if transient(&e) && start.elapsed() < Duration::from_secs(180) => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(format!("{what}: {e}").into()),
        }
    }
}

struct Kube {
    wibs: Api<WorkloadIdentityBinding>,
    sas: Api<ServiceAccount>,
}

impl Kube {
    async fn new(env: &Env) -> Result<Kube, TestError> {
        let mut config = kube::Config::from_custom_kubeconfig(
            Kubeconfig::read_from(env.plane.kubeconfig())?,
            &KubeConfigOptions::default(),
        )
        .await?;
        config.connect_timeout = Some(Duration::from_secs(5));
        config.read_timeout = Some(Duration::from_secs(30));
        let client = Client::try_from(config)?;
        Ok(Kube { wibs: Api::namespaced(client.clone(), &env.ns), sas: Api::namespaced(client, &env.ns) })
    }

    async fn apply_binding(&self, name: &str, spec: &Spec) -> TestResult {
        let m = manifest(name, spec);
        let (pp, patch) = (PatchParams::apply(FIELD_MANAGER).force(), Patch::Apply(&m));
        retrying(&format!("apply {name}"), || self.wibs.patch(name, &pp, &patch)).await?;
        Ok(())
    }

    async fn create(&self, b: &Binding) -> TestResult {
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": b.spec.sa}});
        let (pp, patch) = (PatchParams::apply(FIELD_MANAGER).force(), Patch::Apply(&sa));
        retrying(&format!("apply sa {}", b.spec.sa), || self.sas.patch(&b.spec.sa, &pp, &patch)).await?;
        self.apply_binding(&b.name, &b.spec).await
    }

    async fn delete(&self, name: &str) -> TestResult {
        retrying(&format!("delete {name}"), || async {
            match self.wibs.delete(name, &DeleteParams::default()).await {
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                other => other.map(|_| ()),
            }
        })
        .await
    }

    /// Ready for its current generation.
    async fn ready(&self, name: &str) -> Result<bool, TestError> {
        let b = retrying(&format!("get {name}"), || self.wibs.get(name)).await?;
        Ok(is_ready(&b))
    }

    async fn list(&self) -> Result<Vec<WorkloadIdentityBinding>, TestError> {
        let lp = ListParams::default();
        Ok(retrying("list bindings", || self.wibs.list(&lp)).await?.items)
    }
}

fn is_ready(b: &WorkloadIdentityBinding) -> bool {
    let Some(status) = &b.status else { return false };
    status.observed_generation.is_some()
        && status.observed_generation == b.metadata.generation
        && status.conditions.iter().any(|c| c.type_ == READY && c.status == "True")
}

fn ready_reason(b: &WorkloadIdentityBinding) -> String {
    let Some(status) = &b.status else {
        return "no status".into();
    };
    let ready = status.conditions.iter().find(|c| c.type_ == READY);
    format!(
        "generation {:?} observed {:?} Ready={} {}: {}",
        b.metadata.generation,
        status.observed_generation,
        ready.map_or("-", |c| c.status.as_str()),
        ready.map_or("", |c| c.reason.as_str()),
        ready.map_or("", |c| c.message.as_str())
    )
}

/// Figures of a run.
#[derive(Default, Debug)]
struct Figures {
    creates: u32,
    edits: u32,
    deletes: u32,
    retained_deletes: u32,
    renames: u32,
    apiserver_restarts: u32,
    sim_restarts: u32,
    operator_kills: u32,
    /// Fault hits by kind (500, 503, 429, latency, drop), over all simulator instances.
    faults: BTreeMap<String, u64>,
    /// ARM/Entra requests served, over all simulator instances.
    requests: u64,
}

/// ~10% of every ARM and Entra request fails (500, 503, 429 with Retry-After), 3% are delayed by 1.5 s, 1%
/// lose their connection.
fn chaos_faults() -> Vec<FaultRule> {
    let rule = |action, rate| FaultRule { operation: "*".into(), action, rate, times: None };
    vec![
        rule(FaultAction::Error { status: 500, retry_after_secs: None }, 0.035),
        rule(FaultAction::Error { status: 503, retry_after_secs: None }, 0.035),
        rule(FaultAction::Error { status: 429, retry_after_secs: Some(1) }, 0.035),
        rule(FaultAction::Latency { ms: 1500 }, 0.03),
        rule(FaultAction::Drop, 0.01),
    ]
}

fn fault_kind(action: &FaultAction) -> String {
    match action {
        FaultAction::Error { status, .. } | FaultAction::Code { status, .. } => status.to_string(),
        FaultAction::Latency { .. } => "latency".into(),
        FaultAction::Drop => "drop".into(),
    }
}

/// Adds the fault hits of the running simulator (they reset with its faults and on restart).
fn tally_faults(figures: &mut Figures, env: &Env) {
    for f in env.sim.faults() {
        *figures.faults.entry(fault_kind(&f.rule.action)).or_default() += f.hits;
    }
}

/// Adds the requests the running simulator served (they reset on restart).
fn tally_requests(figures: &mut Figures, env: &Env) {
    figures.requests += env.sim.counters().0.values().flat_map(|m| m.values()).sum::<u64>();
}

#[derive(Clone, Copy, Debug)]
enum Chaos {
    ApiServer,
    Simulator,
    Operator,
}

/// What the chaos task owns: the environment (its simulator is replaced on restarts), the simulator's config,
/// the running operator and every operator log.
struct Rig {
    /// None only while the simulator restarts.
    env: Option<Env>,
    config: SimConfig,
    operator: Option<Operator>,
    runs: u32,
    logs: Vec<std::path::PathBuf>,
    figures: Figures,
}

impl Rig {
    fn env(&self) -> &Env {
        self.env.as_ref().expect("the environment is only taken while the simulator restarts")
    }

    /// Starts the next operator run (`kubectl create token` needs the API server: it is up between chaos
    /// events).
    fn start_operator(&mut self) -> TestResult {
        self.runs += 1;
        let op = Operator::start(self.env(), &format!("soak-{}", self.runs), &[])?;
        self.logs.push(op.log.clone());
        self.operator = Some(op);
        Ok(())
    }

    async fn act(&mut self, what: Chaos, rng: &mut Rng) -> TestResult {
        match what {
            Chaos::ApiServer => {
                let plane = self.env().plane;
                let before = plane.server().to_string();
                tokio::task::spawn_blocking(move || plane.restart_apiserver()).await??;
                assert_eq!(plane.server(), before, "the API server keeps its URL");
                self.figures.apiserver_restarts += 1;
            }
            Chaos::Simulator => {
                let env = self.env.as_ref().ok_or("no environment")?;
                tally_faults(&mut self.figures, env);
                tally_requests(&mut self.figures, env);
                let Env { plane, sim, ns } = self.env.take().ok_or("no environment")?;
                let url = sim.https_url().map(str::to_string);
                let sim = restart_simulator(sim, &self.config, Duration::from_millis(rng.below(2000) as u64))
                    .await?;
                sim.set_faults(chaos_faults());
                assert_eq!(sim.https_url().map(str::to_string), url, "the simulator keeps its address");
                self.env = Some(Env { plane, sim, ns });
                self.figures.sim_restarts += 1;
            }
            Chaos::Operator => {
                if let Some(op) = self.operator.take() {
                    op.kill()?;
                }
                // As a pod's container restarts: a moment later.
                tokio::time::sleep(Duration::from_millis(rng.below(1000) as u64)).await;
                self.start_operator()?;
                self.figures.operator_kills += 1;
            }
        }
        Ok(())
    }
}

/// Everything in the simulator's state that the specs do not account for, and everything they ask for that it
/// lacks.
fn diff(
    state: &State,
    bindings: &[Binding],
    ns: &str,
    issuer: &str,
    baseline: &BTreeSet<String>,
    sas: &BTreeMap<String, Option<String>>,
) -> Vec<String> {
    let mut out = Vec::new();
    let all = identities(state);
    let mut claimed = BTreeSet::new();
    let principals: BTreeSet<String> = all.iter().map(|i| i.principal_id.to_ascii_lowercase()).collect();
    for b in bindings {
        let sa_client_id = sas.get(&b.spec.sa).cloned().flatten();
        if b.fate == Fate::Deleted {
            if sa_client_id.is_some() {
                out.push(format!(
                    "{}: deleted, but ServiceAccount {} still carries a client id",
                    b.name, b.spec.sa
                ));
            }
            continue; // anything of it left shows up as a stray identity below
        }
        let ours: Vec<_> = all
            .iter()
            .filter(|i| {
                i.tags.get("idbind.dev.binding") == Some(&b.name)
                    && i.tags.get("idbind.dev.namespace").map(String::as_str) == Some(ns)
            })
            .collect();
        for i in &ours {
            claimed.insert(i.principal_id.clone());
        }
        let [identity] = ours.as_slice() else {
            out.push(format!(
                "{} ({:?}): {} identities tagged for it: {:?}",
                b.name,
                b.fate,
                ours.len(),
                ours.iter().map(|i| &i.name).collect::<Vec<_>>()
            ));
            continue;
        };
        let want_name = b
            .spec
            .identity
            .clone()
            .unwrap_or_else(|| idbind::core::naming::identity_name("e2e", ns, &b.name));
        if identity.name != want_name {
            out.push(format!("{}: identity is {}, the spec asks for {want_name}", b.name, identity.name));
        }
        let subject = format!("system:serviceaccount:{ns}:{}", b.spec.sa);
        let fics: Vec<_> = identity.federated_identity_credentials.values().collect();
        if b.fate == Fate::Retained {
            if !fics.is_empty() {
                let kept: Vec<_> = fics.iter().map(|f| (&f.name, &f.subject)).collect();
                out.push(format!("{}: retained with FICs {kept:?}, want none", b.name));
            }
        } else if fics.len() != 1 || fics[0].subject != subject || fics[0].issuer != issuer {
            out.push(format!(
                "{}: FICs {:?}, want exactly one for {subject}",
                b.name,
                fics.iter().map(|f| (&f.name, &f.subject)).collect::<Vec<_>>()
            ));
        }
        let mut want: BTreeSet<(String, String)> = BTreeSet::new();
        for (vault, roles) in &b.spec.vaults {
            for role in roles {
                want.insert((vault_scope(vault), role_guid(role)));
            }
        }
        let mut have: BTreeMap<(String, String), u32> = BTreeMap::new();
        for ra in state
            .role_assignments
            .values()
            .filter(|ra| ra.principal_id.eq_ignore_ascii_case(&identity.principal_id))
        {
            *have
                .entry((ra.scope.to_ascii_lowercase(), ra.role_definition_guid.to_ascii_lowercase()))
                .or_default() += 1;
        }
        for (k, n) in &have {
            if !want.contains(k) {
                out.push(format!("{}: extra role assignment {} on {}", b.name, k.1, k.0));
            } else if *n > 1 {
                out.push(format!("{}: {n} role assignments {} on {}", b.name, k.1, k.0));
            }
        }
        for k in &want {
            if !have.contains_key(k) {
                out.push(format!("{}: missing role assignment {} on {}", b.name, k.1, k.0));
            }
        }
        match (b.fate, sa_client_id) {
            (Fate::Live, Some(c)) if c == identity.client_id => {}
            (Fate::Live, other) => out.push(format!(
                "{}: ServiceAccount {} has client id {other:?}, the identity's is {}",
                b.name, b.spec.sa, identity.client_id
            )),
            (_, Some(c)) => out.push(format!(
                "{}: retained and deleted, but ServiceAccount {} still carries client id {c}",
                b.name, b.spec.sa
            )),
            (_, None) => {}
        }
    }
    // A FIC for a ServiceAccount anywhere but on its binding's identity.
    let mut subjects: BTreeMap<String, u32> = BTreeMap::new();
    for i in &all {
        for f in i.federated_identity_credentials.values() {
            *subjects.entry(f.subject.clone()).or_default() += 1;
        }
    }
    for (s, n) in subjects {
        if n > 1 {
            out.push(format!("{n} FICs for {s}"));
        }
    }
    for i in &all {
        if !claimed.contains(&i.principal_id) {
            out.push(format!(
                "stray identity {} (tags {:?}, {} FICs)",
                i.name,
                i.tags,
                i.federated_identity_credentials.len()
            ));
        }
    }
    for ra in state.role_assignments.values() {
        if !baseline.contains(&ra.name) && !principals.contains(&ra.principal_id.to_ascii_lowercase()) {
            out.push(format!(
                "orphaned role assignment {} ({} on {}, principal {})",
                ra.name, ra.role_definition_guid, ra.scope, ra.principal_id
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_chaos_azure_converges_to_exactly_what_the_live_bindings_ask() -> TestResult {
    let seed = match std::env::var("SOAK_SEED") {
        Ok(s) if !s.trim().is_empty() => {
            s.trim().parse::<u64>().map_err(|e| format!("SOAK_SEED={s}: {e}"))?
        }
        _ => Rng::fresh_seed(),
    };
    let chaos_secs = env_num("SOAK_SECONDS", 60.0)?;
    let population = env_num("SOAK_BINDINGS", 200.0)? as usize;
    let ops_per_sec = env_num("SOAK_OPS_PER_SEC", (population as f64 / (0.7 * 0.7 * chaos_secs)).max(2.0))?;
    let converge_secs = env_num("SOAK_CONVERGE_SECONDS", 240.0)?;
    let rename_anytime = env_num("SOAK_RENAME_ANYTIME", 1.0)? != 0.0;
    eprintln!(
        "soak: seed {seed} (replay with SOAK_SEED={seed}); {chaos_secs} s of chaos, {population} bindings, \
         {ops_per_sec:.1} operations/s"
    );
    let mut rng = Rng::new(seed);
    let t0 = Instant::now();

    // A simulator that persists its state, with a second RBAC vault.
    let mut sim_config = None;
    let state_dir = idbind_testenv::shared_with_crds().dir().join(format!("soak-sim-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state_dir);
    let env = start_without_operator("soak", |c| {
        c.seed.add_vault(SUB, KV_RG, "kv-two", true);
        persist_in(c, &state_dir);
        sim_config = Some(c.clone());
    })
    .await?;
    let config = sim_config.ok_or("the customize closure did not run")?;
    install_operator_rbac(env.plane, &env.ns, &[])?;
    // The team's policy names every role the soak asks for: Key Vault Crypto User is allowed only where a
    // policy names it.
    let roles = json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityPolicy",
        "metadata": {"name": format!("{}-soak-roles", env.ns)},
        "spec": {"namespaces": [env.ns], "keyVaults": [{"resourceGroup": KV_RG}], "roles": ROLES}});
    idbind_testkit::e2e::apply_cluster(env.plane, &roles)?;
    let issuer = env.plane.server().to_string();
    let ns = env.ns.clone();
    let kube = Kube::new(&env).await?;
    let baseline: BTreeSet<String> = env.sim.state_typed().role_assignments.keys().cloned().collect();
    let mut rig = Rig {
        env: Some(env),
        config,
        operator: None,
        runs: 0,
        logs: Vec::new(),
        figures: Figures::default(),
    };
    rig.start_operator()?;
    rig.env().sim.set_faults(chaos_faults());

    // The chaos schedule: each kind a few times (one per ~20 s, at least 3 times), at random moments between
    // 10% and 85% of the phase.
    let per_kind = ((chaos_secs / 20.0).round() as usize).max(3);
    let mut schedule: Vec<(Duration, Chaos)> = Vec::new();
    for kind in [Chaos::ApiServer, Chaos::Simulator, Chaos::Operator] {
        for _ in 0..per_kind {
            schedule.push((Duration::from_secs_f64(chaos_secs * (0.10 + 0.75 * rng.unit())), kind));
        }
    }
    schedule.sort_by_key(|(t, _)| *t);
    let mut chaos_rng = Rng::new(rng.next_u64());
    let chaos_start = Instant::now();
    let chaos = tokio::spawn(async move {
        for (at, what) in schedule {
            tokio::time::sleep_until((chaos_start + at).into()).await;
            let t = Instant::now();
            if let Err(e) = rig.act(what, &mut chaos_rng).await {
                return Err(format!("chaos {what:?}: {e}"));
            }
            eprintln!(
                "soak: {:>5.1} s  {what:?} restarted in {:.1} s",
                chaos_start.elapsed().as_secs_f64(),
                t.elapsed().as_secs_f64()
            );
        }
        Ok(rig)
    });

    // The operations: creates while the population is below its target, edits and deletes.
    let mut bindings: Vec<Binding> = Vec::new();
    let mut figures_ops = Figures::default();
    let interval = Duration::from_secs_f64(1.0 / ops_per_sec);
    let chaos_end = chaos_start + Duration::from_secs_f64(chaos_secs);
    let mut next_at = Instant::now();
    while Instant::now() < chaos_end {
        let live: Vec<usize> =
            bindings.iter().enumerate().filter(|(_, b)| b.fate == Fate::Live).map(|(i, _)| i).collect();
        let roll = rng.unit();
        let create = live.is_empty() || (live.len() < population && roll < 0.7);
        let delete = !create && rng.chance(if live.len() < population { 0.35 } else { 0.4 });
        if create {
            let name = format!("b{:04}", bindings.len());
            let mut vaults = Vec::new();
            let k = if rng.chance(0.05) {
                0
            } else if rng.chance(0.25) {
                2
            } else {
                1
            };
            let first_vault = rng.below(2);
            for j in 0..k {
                vaults.push((VAULTS[(first_vault + j) % 2].to_string(), random_roles(&mut rng)));
            }
            let spec = Spec { sa: format!("sa-{name}"), identity: None, vaults, retain: rng.chance(0.2) };
            let b = Binding { name, spec, fate: Fate::Live, renames: 0 };
            kube.create(&b).await?;
            bindings.push(b);
            figures_ops.creates += 1;
        } else if delete {
            let i = *rng.pick(&live);
            let b = &mut bindings[i];
            if b.spec.retain {
                // What a retained binding leaves is only defined once Azure matched its spec.
                if kube.ready(&b.name).await? {
                    kube.delete(&b.name).await?;
                    b.fate = Fate::Retained;
                    figures_ops.deletes += 1;
                    figures_ops.retained_deletes += 1;
                }
            } else {
                kube.delete(&b.name).await?;
                b.fate = Fate::Deleted;
                figures_ops.deletes += 1;
            }
        } else {
            let i = *rng.pick(&live);
            let b = &mut bindings[i];
            let s = &mut b.spec;
            let kind = rng.unit();
            if kind < 0.35 && !s.vaults.is_empty() {
                let j = rng.below(s.vaults.len());
                s.vaults[j].1 = random_roles(&mut rng);
            } else if kind < 0.55 && s.vaults.len() == 1 {
                // Move the roles to the other vault.
                let other = if s.vaults[0].0 == VAULTS[0] { VAULTS[1] } else { VAULTS[0] };
                s.vaults[0].0 = other.to_string();
            } else if kind < 0.70 && s.vaults.len() < 2 {
                let missing = VAULTS
                    .iter()
                    .find(|v| !s.vaults.iter().any(|(w, _)| w == *v))
                    .ok_or("no vault to add")?;
                s.vaults.push((missing.to_string(), random_roles(&mut rng)));
            } else if kind < 0.85 && !s.vaults.is_empty() {
                let j = rng.below(s.vaults.len());
                s.vaults.remove(j);
            } else if !s.retain && (rename_anytime || kube.ready(&b.name).await?) {
                // A new identity name: idbind moves everything to a new identity and deletes the old,
                // wherever the binding is in its life (unless SOAK_RENAME_ANYTIME=0).
                b.renames += 1;
                s.identity = if s.identity.is_some() && rng.chance(0.3) {
                    None
                } else {
                    Some(format!("soak-{}-r{}", b.name, b.renames))
                };
                figures_ops.renames += 1;
            } else {
                let j = rng.below(s.vaults.len().max(1));
                if s.vaults.is_empty() {
                    s.vaults.push((VAULTS[0].to_string(), random_roles(&mut rng)));
                } else {
                    s.vaults[j].1 = random_roles(&mut rng);
                }
            }
            kube.apply_binding(&b.name, &b.spec).await?;
            figures_ops.edits += 1;
        }
        next_at += interval;
        if let Some(wait) = next_at.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }
    let mut rig = chaos.await?.map_err(TestError::from)?;
    tally_faults(&mut rig.figures, rig.env.as_ref().ok_or("no environment")?);
    rig.env().sim.set_faults(Vec::new());
    let chaos_took = chaos_start.elapsed();

    // Convergence: every live binding Ready for its generation, every deleted one gone.
    let converge_start = Instant::now();
    let mut last_pending: Vec<String>;
    loop {
        let objects: BTreeMap<String, WorkloadIdentityBinding> = kube
            .list()
            .await?
            .into_iter()
            .map(|b| (b.metadata.name.clone().unwrap_or_default(), b))
            .collect();
        last_pending = Vec::new();
        for b in &bindings {
            match (b.fate, objects.get(&b.name)) {
                (Fate::Live, Some(o)) if is_ready(o) => {}
                (Fate::Live, Some(o)) => last_pending.push(format!("{}: {}", b.name, ready_reason(o))),
                (Fate::Live, None) => last_pending.push(format!("{}: missing", b.name)),
                (_, Some(o)) => {
                    last_pending.push(format!("{}: deleted but still there ({})", b.name, ready_reason(o)));
                }
                (_, None) => {}
            }
        }
        if last_pending.is_empty() || converge_start.elapsed() > Duration::from_secs_f64(converge_secs) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let converged_in = converge_start.elapsed();
    let env = rig.env.take().ok_or("no environment")?;
    tally_requests(&mut rig.figures, &env);
    let f = &rig.figures;
    let faults: u64 = f.faults.values().sum();
    let live = bindings.iter().filter(|b| b.fate == Fate::Live).count();

    let mut diff_lines = Vec::new();
    if last_pending.is_empty() {
        let lp = ListParams::default();
        let sas: BTreeMap<String, Option<String>> = retrying("list service accounts", || kube.sas.list(&lp))
            .await?
            .items
            .into_iter()
            .map(|sa| {
                (
                    sa.metadata.name.clone().unwrap_or_default(),
                    sa.metadata.annotations.as_ref().and_then(|a| a.get(CLIENT_ID_ANNOTATION).cloned()),
                )
            })
            .collect();
        let state = env.sim.state_typed();
        diff_lines = diff(&state, &bindings, &ns, &issuer, &baseline, &sas);
        // The checker is not vacuous: a spec that differs from Azure in any of these ways shows.
        let mut wrong: Vec<(&str, Vec<Binding>)> = Vec::new();
        let find = |fate: Fate, pred: &dyn Fn(&Binding) -> bool| {
            bindings.iter().position(|b| b.fate == fate && pred(b))
        };
        if let Some(i) = find(Fate::Live, &|b| !b.spec.vaults.is_empty()) {
            let mut w = bindings.clone();
            w[i].spec.vaults.pop();
            wrong.push(("a vault fewer", w));
        }
        if let Some(i) = find(Fate::Live, &|_| true) {
            let mut w = bindings.clone();
            w[i].fate = Fate::Deleted;
            wrong.push(("a live binding taken for deleted", w));
            let mut w = bindings.clone();
            w[i].spec.sa.push('x');
            wrong.push(("another ServiceAccount", w));
        }
        if let Some(i) = find(Fate::Deleted, &|_| true) {
            let mut w = bindings.clone();
            w[i].fate = Fate::Retained;
            wrong.push(("a deleted binding taken for retained", w));
        }
        for (what, w) in wrong {
            assert!(!diff(&state, &w, &ns, &issuer, &baseline, &sas).is_empty(), "the checker misses {what}");
        }
    }
    let state = env.sim.state_typed();
    eprintln!(
        "soak summary: seed {seed}; operations {} (creates {}, edits {} incl. {} identity renames, deletes \
         {} incl. {} Retain); live bindings {live}, identities {}, role assignments {}; faults injected \
         {faults} {:?} over {} ARM/Entra requests; restarts: API server {}, simulator {}, operator \
         (SIGKILL) {}; chaos {:.0} s, {} {:.1} s after it; diff {} line(s); total {:.0} s",
        figures_ops.creates + figures_ops.edits + figures_ops.deletes,
        figures_ops.creates,
        figures_ops.edits,
        figures_ops.renames,
        figures_ops.deletes,
        figures_ops.retained_deletes,
        identities(&state).len(),
        idbind_testkit::azure_rbac::workload_assignments(&state, idbind_testkit::e2e::APP_OBJECT_ID).len(),
        f.faults,
        f.requests,
        f.apiserver_restarts,
        f.sim_restarts,
        f.operator_kills,
        chaos_took.as_secs_f64(),
        if last_pending.is_empty() { "converged" } else { "NOT converged" },
        converged_in.as_secs_f64(),
        diff_lines.len(),
        t0.elapsed().as_secs_f64(),
    );
    let logs = rig.logs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" ");
    if !last_pending.is_empty() {
        return Err(format!(
            "{} binding(s) did not converge within {converge_secs} s after the chaos (seed {seed}; operator \
             logs: {logs}):\n{}",
            last_pending.len(),
            last_pending.join("\n")
        )
        .into());
    }
    if !diff_lines.is_empty() {
        return Err(format!(
            "Azure differs from the specs (seed {seed}; operator logs: {logs}):\n{}",
            diff_lines.join("\n")
        )
        .into());
    }
    assert!(
        f.apiserver_restarts >= 3 && f.sim_restarts >= 3 && f.operator_kills >= 3,
        "every kind of restart happened: {f:?}"
    );
    assert!(faults > 0, "faults were injected");
    Ok(())
}

/// What the soak found (seed 12021391808318782568 left `b0066` with two identities): the operator used to
/// move a binding off its old identity only if the binding's status named it. When the operator died after
/// creating the identity but before the first status write (or the rename reached it before that write), a
/// rename created the new identity and left the old one, with its FIC and role assignments, in Azure for
/// good. The operator now also finds the binding's identities by their ownership tags; this pins it,
/// deterministically.
#[tokio::test(flavor = "multi_thread")]
async fn a_rename_after_a_crash_before_the_first_status_write_leaves_no_identity_behind() -> TestResult {
    let env = start_without_operator("soak-rename", |_| {}).await?;
    install_operator_rbac(env.plane, &env.ns, &[])?;
    let spec = |identity: Option<&str>| Spec {
        sa: "app".into(),
        identity: identity.map(str::to_string),
        vaults: vec![("kv-shop".into(), vec![ROLES[0].into()])],
        retain: false,
    };
    let kube = Kube::new(&env).await?;
    let mut b = Binding { name: "app".into(), spec: spec(None), fate: Fate::Live, renames: 0 };
    let mut crashing = Operator::start(
        &env,
        "crash",
        &[("IDBIND_CRASH_AT", idbind::reconcile::failpoint::BEFORE_STATUS_WRITE)],
    )?;
    kube.create(&b).await?;
    assert!(
        !crashing.wait_exit(Duration::from_secs(90))?.success(),
        "the operator aborts before its first status write"
    );
    assert_eq!(identities(&env.sim.state_typed()).len(), 1, "the first identity exists");
    b.spec = spec(Some("renamed-app"));
    kube.apply_binding(&b.name, &b.spec).await?;
    let operator = Operator::start(&env, "second", &[])?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/app"])
        .map_err(|e| format!("{e}\n{}", operator.log_text()))?;
    let names: Vec<String> = identities(&env.sim.state_typed()).into_iter().map(|i| i.name).collect();
    assert_eq!(names, vec!["renamed-app".to_string()], "only the renamed identity remains");
    kube.delete(&b.name).await?;
    env.kubectl(&["wait", "--for=delete", "--timeout=90s", "wib/app"])?;
    let state = env.sim.state_typed();
    assert!(
        identities(&state).is_empty()
            && idbind_testkit::azure_rbac::workload_assignments(&state, idbind_testkit::e2e::APP_OBJECT_ID)
                .is_empty(),
        "nothing remains after delete: {:?}",
        identities(&state).iter().map(|i| &i.name).collect::<Vec<_>>()
    );
    Ok(())
}
