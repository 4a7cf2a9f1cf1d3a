//! The fleet phase: K clusters' operators in one subscription. Each cluster's idbind has its own name, its
//! own app (principal) and its own namespace of bindings, N in total, all applied at once; they share the
//! simulator's limits as clusters share a subscription's (the managed-identity limits are per subscription,
//! whoever calls). The bound is the one N bindings have in a single cluster: the subscription's limits do not
//! grow with the number of clusters. Reported: time until every binding is Ready against that bound, each
//! operator's own finish (fairness), the 429s by operation and by the limit each operator learned from, and
//! every request beyond what the same N cost one operator alone.

use std::{
    collections::BTreeMap,
    fs, thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::{
    model::{self, KV_RG, SUB},
    prom,
    run::{self, Env, Member, Options, Size},
    watch::Watch,
};

/// Settings of the fleet phase.
pub struct Fleet {
    /// Operators (clusters).
    pub k: usize,
    /// Bindings over all of them.
    pub n: usize,
    pub concurrency: u32,
    /// The simulator's strict Retry-After profile ([`model::strict`]) instead of its kind default.
    pub strict: bool,
}

fn namespace(member: usize) -> String {
    format!("fleet-{member}")
}

pub fn run(opts: &Options, fleet: &Fleet) -> Result<Value> {
    let t_start = Instant::now();
    let (n, k) = (fleet.n, fleet.k);
    let profile = if fleet.strict { "strict" } else { "kind" };
    let dir = opts.work.join(format!("fleet-k{k}-n{n}-{profile}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let dir = fs::canonicalize(&dir)?;
    run::log(
        t_start,
        format!("fleet K={k} N={n} ({profile} Retry-After): starting a control plane and the simulator"),
    );
    let (cp, _sim, endpoint) = run::start_world(opts, &dir, |ca| {
        let mut config = model::fleet_config(n, k, ca);
        if fleet.strict {
            model::strict(&mut config);
        }
        config
    })?;
    let size = Size {
        n,
        scale: 1.0,
        concurrency: fleet.concurrency,
        converge_resync: 600,
        steady_resync: 600,
        steady_periods: 0.0,
    };
    let env = Env { opts, size: &size, cp: &cp, dir: dir.clone(), endpoint };

    // Each member's namespace and ServiceAccounts, and a policy letting every one bind the bench's vault.
    let mut setup: Vec<Value> = (0..k)
        .map(|m| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace(m)}}))
        .collect();
    setup.push(json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityPolicy",
        "metadata": {"name": "fleet"}, "spec": {"namespaces": ["fleet-*"],
        "keyVaults": [{"subscriptionId": SUB, "resourceGroup": KV_RG}]}}));
    let mut service_accounts = Vec::new();
    let mut bindings = Vec::new();
    for i in 0..n {
        let (ns, name) = (namespace(i % k), format!("b{i:05}"));
        service_accounts.push(
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}}),
        );
        bindings.push(run::binding_json(&ns, &name, 0, &["Key Vault Secrets User"]));
    }
    setup.extend(service_accounts);
    let setup_file = dir.join("setup.json");
    fs::write(&setup_file, run::list(setup).to_string())?;
    run::kubectl_create(&cp, &setup_file)?;
    let bindings_file = dir.join("bindings.json");
    fs::write(&bindings_file, run::list(bindings).to_string())?;

    let apps: Vec<(String, String)> = (0..k).map(model::fleet_app).collect();
    let names: Vec<String> = (0..k).map(namespace).collect();
    let mut operators = Vec::new();
    for (m, (app, _)) in apps.iter().enumerate() {
        let member = Member { cluster: &names[m], app, namespace: Some(&names[m]) };
        operators.push(env.start_member(&names[m], size.converge_resync, false, &member)?);
    }
    let watch = Watch::start(&cp)?;
    env.reset_counters()?;
    let (bound, _) = model::lower_bound(n, 1.0);
    run::log(
        t_start,
        format!("applying {n} bindings over {k} clusters; the subscription's bound: {bound:.1} s"),
    );
    let t0 = Instant::now();
    run::kubectl_create(&cp, &bindings_file)?;

    let timeout = Duration::from_secs_f64(bound * 3.0 + 300.0);
    let mut finished: Vec<Option<f64>> = vec![None; k];
    let mut last_log = Instant::now();
    let all_ready = loop {
        let ready_by_member = watch.snapshot(|s| {
            let mut by: BTreeMap<String, usize> = BTreeMap::new();
            for (key, b) in &s.bindings {
                if b.ready {
                    *by.entry(key.split('/').next().unwrap_or_default().to_string()).or_default() += 1;
                }
            }
            by
        });
        let t = t0.elapsed().as_secs_f64();
        for (m, done) in finished.iter_mut().enumerate() {
            let wanted = (m..n).step_by(k).count();
            if done.is_none() && ready_by_member.get(&names[m]).copied().unwrap_or(0) >= wanted {
                *done = Some(t);
            }
        }
        if finished.iter().all(Option::is_some) {
            break t;
        }
        if t0.elapsed() > timeout {
            run::log(t_start, format!("TIMEOUT after {t:.0} s: {ready_by_member:?}"));
            break f64::NAN;
        }
        for op in &mut operators {
            op.check_alive()?;
        }
        if last_log.elapsed() >= Duration::from_secs(10) {
            run::log(t_start, format!("{ready_by_member:?} Ready at {t:.0} s (bound {bound:.0} s)"));
            last_log = Instant::now();
        }
        thread::sleep(Duration::from_millis(250));
    };
    let counters = env.counters()?;
    let mut members = Vec::new();
    for (m, op) in operators.iter().enumerate() {
        let metrics = op.metrics().context("an operator's /metrics")?;
        let by_limit = |name: &str| -> BTreeMap<String, f64> {
            prom::samples(&metrics)
                .into_iter()
                .filter(|(n, _, _)| n == name)
                .filter_map(|(_, labels, v)| Some((prom::label(&labels, "limit")?.to_string(), v)))
                .collect()
        };
        members.push(json!({
            "cluster": names[m],
            "bindings": (m..n).step_by(k).count(),
            "allReadySeconds": finished[m],
            "throttledByLimit": by_limit("idbind_azure_throttled_total"),
            "learnedRateAtEnd": by_limit("idbind_budget_rate"),
        }));
    }
    watch.stop();
    for op in &mut operators {
        op.stop();
    }
    let finishes: Vec<f64> = finished.iter().flatten().copied().collect();
    let fastest = finishes.iter().copied().fold(f64::INFINITY, f64::min);
    let slowest = finishes.iter().copied().fold(0.0, f64::max);
    let summary = run::summarize_counters(&counters);
    let total = summary["total"].as_u64().unwrap_or(0);
    let throttled = summary["throttled429"].as_u64().unwrap_or(0);
    run::log(
        t_start,
        format!(
            "fleet K={k} N={n} ({profile}): all Ready after {all_ready:.1} s (bound {bound:.1} s, ratio {:.2}), {throttled} \
             x 429 of {total} requests, slowest/fastest cluster {:.2}",
            all_ready / bound,
            slowest / fastest
        ),
    );
    Ok(json!({
        "k": k,
        "n": n,
        "retryAfter": profile,
        "ranAt": crate::now_utc(),
        "boundSeconds": bound,
        "allReadySeconds": all_ready,
        "ratio": all_ready / bound,
        "requests": summary,
        "throttledShare": if total > 0 { throttled as f64 / total as f64 } else { 0.0 },
        "slowestOverFastest": slowest / fastest,
        "members": members,
        "counters": counters,
    }))
}
