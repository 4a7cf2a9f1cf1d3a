//! The workload proof: a pod of the bound ServiceAccount, set up as the azure-workload-identity webhook and
//! the kubelet set it up and running Azure's official Python SDKs unchanged, reads its secret from Key Vault
//! at the first try once `kubectl wait --for=condition=Ready` returns, with Azure's propagation delays on (a
//! new federated credential unusable for a while, role assignments effective only after a while). The
//! simulator's Key Vault is reached by its real host name through the simulator's proxy.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use idbind::core::conditions::{ACCESS_VERIFIED, FEDERATION_VERIFIED, READY};
use idbind::core::reason::Reason;
use idbind_testkit::{
    e2e::{
        Env, KV_RG, TestError, TestResult, install_operator_rbac, install_verification,
        start_without_operator,
    },
    process::Operator,
    workload::{Pod, Read, Workload},
};

const SECRET: &str = "db-password";
const VALUE: &str = "s3cr3t-value";

/// Propagation as the tests play it: short, but long enough that a read right after the writes fails.
const FIC_PROPAGATION_MS: u64 = 4_000;
const ROLE_PROPAGATION_MS: u64 = 8_000;

/// The control plane, a simulator with its proxy, propagation windows and a secret in kv-shop, and the
/// operator as a process with verification at `mode` (its windows well above the simulator's).
async fn start(prefix: &str, mode: &str) -> Result<(Env, Operator), TestError> {
    start_with_windows(prefix, mode, FIC_PROPAGATION_MS, ROLE_PROPAGATION_MS).await
}

/// [`start`] with the simulator's propagation windows given.
async fn start_with_windows(
    prefix: &str,
    mode: &str,
    fic_propagation_ms: u64,
    role_propagation_ms: u64,
) -> Result<(Env, Operator), TestError> {
    let env = start_without_operator(prefix, |config| {
        config.proxy_addr = Some(([127, 0, 0, 1], 0).into());
        config.behaviour.fic_propagation_ms = fic_propagation_ms;
        config.behaviour.role_propagation_ms = role_propagation_ms;
    })
    .await?;
    env.sim.set_secret("kv-shop", SECRET, VALUE).await?;
    install_operator_rbac(env.plane, &env.ns, &[])?;
    install_verification(&env)?;
    let proxy = env.sim.proxy_url().ok_or("no proxy")?;
    let operator = Operator::start(
        &env,
        "workload",
        &[
            ("IDBIND_VERIFY", mode),
            ("IDBIND_VERIFY_FEDERATION_WINDOW_SECONDS", "60"),
            ("IDBIND_VERIFY_ACCESS_WINDOW_SECONDS", "60"),
            // Egress as a cluster behind a proxy has it: Azure's hosts through it, the API server and the ARM
            // endpoint (the simulator's own listener) direct.
            ("HTTPS_PROXY", &proxy),
            ("NO_PROXY", "127.0.0.1,localhost"),
        ],
    )?;
    Ok((env, operator))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_workload_reads_its_secret_once_ready_and_only_while_granted() -> TestResult {
    let (env, _operator) = start("workload", "access").await?;
    let mut workload = Workload::start(&env)?;
    env.ready_binding("orders", &["Key Vault Secrets User"])?;
    assert_eq!(workload.read(&env, &env.ns, "orders", "kv-shop", SECRET)?, Read::Value(VALUE.into()));
    for part in [FEDERATION_VERIFIED, ACCESS_VERIFIED] {
        assert_eq!(env.condition("orders", part)?, ("True".into(), Reason::Verified.into()), "{part}");
    }

    // Another ServiceAccount's binding, with no role on the vault, cannot read it.
    env.ready_binding("reports", &[])?;
    let refused = workload.read(&env, &env.ns, "reports", "kv-shop", SECRET)?;
    assert!(
        matches!(&refused, Read::Refused { status: 403, error } if error.contains("ForbiddenByRbac")),
        "{refused:?}"
    );

    // The role taken away: Key Vault refuses the read once the removal has propagated.
    env.binding("orders", "orders", &[])?;
    idbind_testkit::e2e::eventually("the role assignment removed", Duration::from_secs(60), || {
        let state = env.sim.state_typed();
        let left =
            idbind_testkit::azure_rbac::workload_assignments(&state, idbind_testkit::e2e::APP_OBJECT_ID);
        Ok(left.is_empty().then_some(()))
    })
    .await?;
    let removed = Instant::now();
    let read = idbind_testkit::e2e::eventually("the read refused", Duration::from_secs(60), || {
        let read = workload.read(&env, &env.ns, "orders", "kv-shop", SECRET)?;
        Ok(matches!(read, Read::Refused { .. }).then_some(read))
    })
    .await?;
    assert!(
        matches!(&read, Read::Refused { status: 403, error } if error.contains("ForbiddenByRbac")),
        "{read:?}"
    );
    assert!(
        removed.elapsed() >= Duration::from_millis(ROLE_PROPAGATION_MS / 2),
        "the removal took effect only after its propagation window"
    );
    Ok(())
}

/// What `bindings` bindings created at once give: for each, how long after `kubectl apply` the test saw it
/// Ready, and what a workload read at once gave.
struct Figures {
    to_ready: Vec<Duration>,
    /// Time from the test seeing Ready to the read's answer (the read happens right after, one at a time).
    read_lag: Vec<Duration>,
    failed: BTreeMap<String, Read>,
}

impl Figures {
    fn summary(&self, label: &str) -> String {
        let n = self.to_ready.len();
        let ok = n - self.failed.len();
        format!(
            "{label}: {ok}/{n} first reads succeeded; time to Ready median {:.1} s, max {:.1} s; read done \
             at most {:.2} s after Ready was seen",
            percentile(&self.to_ready, 0.5),
            percentile(&self.to_ready, 1.0),
            percentile(&self.read_lag, 1.0),
        )
    }
}

fn percentile(values: &[Duration], q: f64) -> f64 {
    let mut sorted: Vec<f64> = values.iter().map(Duration::as_secs_f64).collect();
    sorted.sort_by(f64::total_cmp);
    let rank = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(rank).copied().unwrap_or(0.0)
}

/// Creates `count` ServiceAccounts and their bindings (Key Vault Secrets User on kv-shop) in one apply, then
/// watches them become Ready and has a pod of each read the secret at once, with no retry.
async fn fifty_at_once(env: &Env, count: usize) -> Result<Figures, TestError> {
    let names: Vec<String> = (0..count).map(|i| format!("app-{i:02}")).collect();
    let mut items = Vec::new();
    for name in &names {
        items.push(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}));
        items.push(json!({
            "apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": name},
            "spec": {"serviceAccountName": name,
                     "keyVaults": [{"name": "kv-shop", "resourceGroup": KV_RG, "roles": ["Key Vault Secrets User"]}]},
        }));
    }
    let mut workload = Workload::start(env)?;
    // The kubelet projects the token when the pod starts; the pods start with their bindings.
    let mut token_files = BTreeMap::new();
    env.apply(&json!({"apiVersion": "v1", "kind": "List", "items": items}))?;
    let applied = Instant::now();
    for name in &names {
        token_files.insert(name.clone(), workload.mount_token(env, &env.ns, name)?);
    }
    let mut figures = Figures { to_ready: Vec::new(), read_lag: Vec::new(), failed: BTreeMap::new() };
    let mut done = BTreeSet::new();
    while done.len() < count {
        if applied.elapsed() > Duration::from_secs(300) {
            return Err(format!("only {} of {count} bindings Ready after 300 s", done.len()).into());
        }
        let listed: Value = serde_json::from_str(&env.kubectl(&["get", "wib,sa", "-o", "json"])?)?;
        let seen = Instant::now();
        let items = listed["items"].as_array().cloned().unwrap_or_default();
        let accounts: BTreeMap<&str, &Value> = items
            .iter()
            .filter(|o| o["kind"] == "ServiceAccount")
            .map(|o| (o["metadata"]["name"].as_str().unwrap_or_default(), o))
            .collect();
        for binding in items.iter().filter(|o| o["kind"] == "WorkloadIdentityBinding" && ready(o)) {
            let name = binding["metadata"]["name"].as_str().unwrap_or_default().to_string();
            if done.contains(&name) {
                continue;
            }
            let account = accounts.get(name.as_str()).ok_or("a Ready binding without its ServiceAccount")?;
            let pod = Pod::of(env, account, token_files[&name].clone());
            let read = workload.read_as(&pod, "kv-shop", SECRET)?;
            figures.to_ready.push(seen - applied);
            figures.read_lag.push(seen.elapsed());
            if read != Read::Value(VALUE.into()) {
                figures.failed.insert(name.clone(), read);
            }
            done.insert(name);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(figures)
}

/// Ready=True for the binding's current generation.
fn ready(binding: &Value) -> bool {
    let generation = &binding["metadata"]["generation"];
    binding["status"]["conditions"]
        .as_array()
        .is_some_and(|conditions| conditions.iter().any(|c| c["type"] == READY && c["status"] == "True"))
        && &binding["status"]["observedGeneration"] == generation
}

/// The measure: 50 bindings created at once with propagation on. With verification, every workload
/// read right after Ready succeeds at the first try; without it, Ready comes before Azure has propagated and
/// reads fail (which shows this measure can fail).
#[tokio::test(flavor = "multi_thread")]
async fn fifty_bindings_at_once_every_first_read_after_ready_succeeds() -> TestResult {
    let (env, operator) = start("workload-50", "access").await?;
    let verified = fifty_at_once(&env, 50).await?;
    drop(operator);
    // Without verification Ready does not wait for propagation, so its time to Ready does not depend on the
    // windows; they are long here so that a loaded machine, slow to see Ready, still reads inside them.
    let (env_off, _operator) = start_with_windows("workload-50-off", "off", 60_000, 60_000).await?;
    let unverified = fifty_at_once(&env_off, 50).await?;
    println!("{}", verified.summary("verification on "));
    println!("{}", unverified.summary("verification off"));
    println!(
        "added time to Ready: median {:+.1} s, max {:+.1} s",
        percentile(&verified.to_ready, 0.5) - percentile(&unverified.to_ready, 0.5),
        percentile(&verified.to_ready, 1.0) - percentile(&unverified.to_ready, 1.0),
    );
    // Token requests count the operator's ARM sign-ins, its verification exchanges and the workloads' own
    // (one each); only the operator lists secrets, the workloads get one.
    for (label, env) in [("on", &env), ("off", &env_off)] {
        let counters = env.sim.counters();
        let by_status = |op: &str| counters.0.get(op).cloned().unwrap_or_default();
        println!(
            "verification {label}: Token {:?}, Secrets_List {:?}, Secrets_Get {:?}",
            by_status("Token"),
            by_status("Secrets_List"),
            by_status("Secrets_Get")
        );
    }
    assert!(verified.failed.is_empty(), "first reads that failed after Ready: {:?}", verified.failed);
    assert!(
        !unverified.failed.is_empty(),
        "without verification some reads right after Ready must meet propagation"
    );
    Ok(())
}
