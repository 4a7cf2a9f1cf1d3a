//! GitOps health of WorkloadIdentityBindings: what Flux (kstatus, from sigs.k8s.io/cli-utils) and Argo CD
//! (our Lua health check, config/argocd/health.lua) conclude from the statuses the operator really writes,
//! read back from the real API server with `kubectl get -o json`.
//!
//! kstatus runs as the small Go program in tools/kstatus (built by `make kstatus` on first use); the Lua runs
//! in Lua 5.1 through mlua, as Argo CD runs it in gopher-lua (also Lua 5.1).

use std::{
    collections::BTreeMap,
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

use idbind::core::conditions::{READY, RECONCILING, STALLED};
use idbind::core::reason::Reason;
use idbind_testenv::{ControlPlane, workspace_root};
use idbind_testkit::e2e::{KV_RG, TestError, TestResult, eventually, start};
use mlua::{Lua, LuaSerdeExt, SerializeOptions};
use serde_json::{Value, json};

const HEALTH_LUA: &str = include_str!("../config/argocd/health.lua");
const HOLD_FINALIZER: &str = "gitops-health.test.idbind.dev/hold";

/// (status, message) per object name.
type Verdicts = BTreeMap<String, (String, String)>;

#[tokio::test(flavor = "multi_thread")]
async fn flux_and_argo_read_the_operators_statuses_as_kstatus_prescribes() -> TestResult {
    let env = start("gitops").await?;
    for sa in ["ready", "stalled", "leaving"] {
        env.kubectl(&["create", "serviceaccount", sa])?;
    }

    // Ready: everything exists in Azure and on the ServiceAccount.
    env.binding("ready", "ready", &["Key Vault Secrets User"])?;
    // Stalled: the default policy refuses Owner; retrying cannot help.
    env.binding("stalled", "stalled", &["Owner"])?;
    // Reconciling: the ServiceAccount does not exist (yet); idbind retries until it does.
    env.binding("reconciling", "nobody", &[])?;
    // Being deleted: a Ready binding whose deletion our own finalizer holds open after idbind's cleanup, so
    // the snapshot below cannot miss the Terminating phase.
    env.binding("leaving", "leaving", &[])?;

    env.wait_condition("ready", READY, "True", Reason::Reconciled, Duration::from_secs(90)).await?;
    env.wait_condition("stalled", STALLED, "True", Reason::PolicyViolation, Duration::from_secs(60)).await?;
    env.wait_condition(
        "reconciling",
        RECONCILING,
        "True",
        Reason::ServiceAccountNotFound,
        Duration::from_secs(60),
    )
    .await?;
    env.wait_condition("leaving", READY, "True", Reason::Reconciled, Duration::from_secs(90)).await?;
    env.kubectl(&[
        "patch",
        "wib",
        "leaving",
        "--type=json",
        "-p",
        &json!([{"op": "add", "path": "/metadata/finalizers/-", "value": HOLD_FINALIZER}]).to_string(),
    ])?;
    env.kubectl(&["delete", "wib", "leaving", "--wait=false"])?;
    // idbind's own finalizer goes once Azure is clean; ours keeps the object (and its deletionTimestamp)
    // until the end of the test.
    eventually("idbind's cleanup of leaving", Duration::from_secs(90), || {
        let finalizers: Value = serde_json::from_str(&env.kubectl(&[
            "get",
            "wib",
            "leaving",
            "-o",
            "jsonpath={.metadata.finalizers}",
        ])?)?;
        Ok((finalizers == json!([HOLD_FINALIZER])).then_some(()))
    })
    .await?;

    // A spec edit the operator has not acted on yet. A binding in a namespace no controller watches carries
    // the operator's real Ready status (copied from `ready`, observedGeneration and all), then its spec
    // changes: generation moves past observedGeneration while Ready still says True, exactly what a user sees
    // between `kubectl apply` and the next reconcile.
    let unwatched = env.plane.fresh_namespace("gitops-unwatched")?;
    let ready_status: Value =
        serde_json::from_str(&env.kubectl(&["get", "wib", "ready", "-o", "jsonpath={.status}"])?)?;
    let vault = |roles: &[&str]| json!([{"name": "kv-shop", "resourceGroup": KV_RG, "roles": roles}]);
    apply(
        env.plane,
        &unwatched,
        &json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": "edited"}, "spec": {"serviceAccountName": "ready", "keyVaults": vault(&["Key Vault Secrets User"])}}),
    )?;
    env.plane.kubectl_ok(&[
        "patch",
        "-n",
        &unwatched,
        "wib",
        "edited",
        "--subresource=status",
        "--type=merge",
        "-p",
        &json!({"status": ready_status}).to_string(),
    ])?;
    let edit =
        json!({"spec": {"keyVaults": vault(&["Key Vault Secrets User", "Key Vault Certificate User"])}});
    env.plane.kubectl_ok(&[
        "patch",
        "-n",
        &unwatched,
        "wib",
        "edited",
        "--type=merge",
        "-p",
        &edit.to_string(),
    ])?;

    let watched_json = env.kubectl(&["get", "wib", "-o", "json"])?;
    let unwatched_json = env.plane.kubectl_ok(&["get", "wib", "-n", &unwatched, "-o", "json"])?;
    let mut objects: Vec<Value> = Vec::new();
    for list in [&watched_json, &unwatched_json] {
        objects.extend(
            serde_json::from_str::<Value>(list)?["items"]
                .as_array()
                .ok_or("kubectl printed no items")?
                .iter()
                .cloned(),
        );
    }
    let edited = objects.iter().find(|o| o["metadata"]["name"] == "edited").ok_or("no edited binding")?;
    assert_eq!(
        (edited["metadata"]["generation"].as_i64(), edited["status"]["observedGeneration"].as_i64()),
        (Some(2), Some(1)),
        "{edited:#}"
    );
    assert!(
        objects
            .iter()
            .any(|o| o["metadata"]["name"] == "leaving" && o["metadata"]["deletionTimestamp"].is_string())
    );

    // (a) kstatus, on the Lists exactly as kubectl printed them.
    let mut flux = kstatus(&watched_json)?;
    flux.extend(kstatus(&unwatched_json)?);
    // (b) the Argo CD health check, on the same objects.
    let mut argo = Verdicts::new();
    for o in &objects {
        argo.insert(o["metadata"]["name"].as_str().ok_or("unnamed")?.to_string(), argo_health(o)?);
    }

    let stalled_message =
        condition(&objects, "stalled", STALLED)?["message"].as_str().unwrap_or_default().to_string();
    assert!(
        stalled_message.contains("Owner"),
        "the Stalled message should name the refused role: {stalled_message:?}"
    );
    let statuses = |v: &Verdicts| {
        v.iter().map(|(name, (status, _))| (name.clone(), status.clone())).collect::<BTreeMap<_, _>>()
    };
    let expect = |pairs: &[(&str, &str)]| {
        pairs.iter().map(|(n, s)| (n.to_string(), s.to_string())).collect::<BTreeMap<_, _>>()
    };
    pretty_assertions::assert_eq!(
        statuses(&flux),
        expect(&[
            ("ready", "Current"),
            ("stalled", "Failed"),
            ("reconciling", "InProgress"),
            ("edited", "InProgress"),
            ("leaving", "Terminating")
        ]),
        "kstatus: {flux:#?}"
    );
    pretty_assertions::assert_eq!(
        statuses(&argo),
        expect(&[
            ("ready", "Healthy"),
            ("stalled", "Degraded"),
            ("reconciling", "Progressing"),
            ("edited", "Progressing"),
            ("leaving", "Progressing")
        ]),
        "Argo CD: {argo:#?}"
    );
    // Both tools pass idbind's explanation on, so a failed sync says what to fix.
    assert_eq!(flux["stalled"].1, stalled_message);
    assert!(
        argo["stalled"].1.starts_with(&format!("{}: ", Reason::PolicyViolation))
            && argo["stalled"].1.ends_with(&stalled_message),
        "{:?}",
        argo["stalled"]
    );
    let reconciling_message =
        condition(&objects, "reconciling", RECONCILING)?["message"].as_str().unwrap_or_default().to_string();
    assert!(!reconciling_message.is_empty());
    assert_eq!(flux["reconciling"].1, reconciling_message);
    assert!(
        argo["reconciling"].1.starts_with(Reason::ServiceAccountNotFound.as_str()),
        "{:?}",
        argo["reconciling"]
    );
    assert!(flux["edited"].1.contains("generation is 2"), "{:?}", flux["edited"]);

    // Releasing our finalizer lets the deletion finish: the hold was the only thing left.
    env.kubectl(&[
        "patch",
        "wib",
        "leaving",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ])?;
    env.kubectl(&["wait", "--for=delete", "--timeout=30s", "wib/leaving"])?;
    env.plane.kubectl_ok(&["delete", "namespace", &unwatched, "--wait=false"])?;
    Ok(())
}

/// The Lua and kstatus agree on the corner cases the operator rarely shows, and differ on purpose where
/// kstatus must guess: no status, or a status without observedGeneration, is "Current" to kstatus (it cannot
/// tell a kind that never reports from a report not yet written) but "Progressing" to Argo CD, since idbind
/// always writes both.
#[test]
fn lua_health_matches_kstatus_on_corner_cases() -> TestResult {
    let cond = |t: &str, s: &str, reason: &str| json!({"type": t, "status": s, "reason": reason, "message": format!("{t} is {s}"), "lastTransitionTime": "2024-01-01T00:00:00Z"});
    let wib = |name: &str, generation: i64, status: Option<Value>| {
        let mut o = json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": name, "namespace": "t", "generation": generation}});
        if let Some(status) = status {
            o["status"] = status;
        }
        o
    };
    let mut cases: Vec<(Value, &str, &str)> = vec![
        // Reconciling=True wins over a Ready=True left from before (a drift repair under way).
        (
            wib(
                "ready-but-reconciling",
                3,
                Some(
                    json!({"observedGeneration": 3, "conditions": [cond(READY, "True", Reason::Reconciled.as_str()), cond(RECONCILING, "True", Reason::Throttled.as_str())]}),
                ),
            ),
            "InProgress",
            "Progressing",
        ),
        (
            wib(
                "ready-false",
                1,
                Some(
                    json!({"observedGeneration": 1, "conditions": [cond(READY, "False", Reason::AzureServerError.as_str())]}),
                ),
            ),
            "InProgress",
            "Progressing",
        ),
        (
            wib(
                "ready-unknown",
                1,
                Some(json!({"observedGeneration": 1, "conditions": [cond(READY, "Unknown", "Pending")]})),
            ),
            "InProgress",
            "Progressing",
        ),
        (
            wib(
                "stalled-and-behind",
                2,
                Some(
                    json!({"observedGeneration": 1, "conditions": [cond(READY, "False", Reason::InvalidSpec.as_str()), cond(STALLED, "True", Reason::InvalidSpec.as_str())]}),
                ),
            ),
            "InProgress",
            "Progressing",
        ),
        (
            wib(
                "stalled-false-ignored",
                1,
                Some(
                    json!({"observedGeneration": 1, "conditions": [cond(READY, "True", Reason::Reconciled.as_str()), cond(STALLED, "False", "Old")]}),
                ),
            ),
            "Current",
            "Healthy",
        ),
        (wib("no-status", 1, None), "Current", "Progressing"),
        (
            wib(
                "no-observed-generation",
                1,
                Some(json!({"conditions": [cond(READY, "True", Reason::Reconciled.as_str())]})),
            ),
            "Current",
            "Progressing",
        ),
    ];
    // Being deleted while the last status still reads Ready. (On the API server, marking a binding for
    // deletion also bumps its generation, so the real `leaving` binding above is behind as well; this one
    // isolates the deletionTimestamp rule.)
    let mut deleting = wib(
        "deleting-but-ready",
        2,
        Some(
            json!({"observedGeneration": 2, "conditions": [cond(READY, "True", Reason::Reconciled.as_str())]}),
        ),
    );
    deleting["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
    cases.push((deleting, "Terminating", "Progressing"));
    let list = json!({"apiVersion": "v1", "kind": "List", "items": cases.iter().map(|(o, _, _)| o.clone()).collect::<Vec<_>>()});
    let flux = kstatus(&list.to_string())?;
    for (object, want_kstatus, want_argo) in &cases {
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        assert_eq!(flux.get(name).map(|v| v.0.as_str()), Some(*want_kstatus), "kstatus on {name}");
        assert_eq!(argo_health(object)?.0, *want_argo, "Lua on {name}");
    }
    Ok(())
}

/// config/argocd ships the check twice (a patch for `kubectl patch`, raw Lua for tests and reading); they
/// must not drift, and the kustomize Component must produce the argocd-cm key.
#[test]
fn argocd_cm_patch_carries_exactly_health_lua() -> TestResult {
    let dir = workspace_root().join("config/argocd");
    let patch: Value = serde_yaml::from_str(&std::fs::read_to_string(dir.join("argocd-cm-patch.yaml"))?)?;
    let key = "resource.customizations.health.idbind.dev_WorkloadIdentityBinding";
    assert_eq!(patch["data"][key].as_str(), Some(HEALTH_LUA), "argocd-cm-patch.yaml differs from health.lua");

    // An Argo CD installation's kustomization using the Component: the existing argocd-cm keeps its keys and
    // gains ours. kustomize takes components by relative path only, hence a folder two levels down.
    let tmp = workspace_root().join(".cache").join(format!("argocd-component-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    std::fs::write(
        tmp.join("argocd-cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: argocd-cm, namespace: argocd}\ndata: {url: \
         https://argocd.example}\n",
    )?;
    std::fs::write(
        tmp.join("kustomization.yaml"),
        "resources: [argocd-cm.yaml]\ncomponents: [../../config/argocd]\n",
    )?;
    let out = Command::new(idbind_testenv::bin_dir().join("kubectl"))
        .args(["kustomize", &tmp.display().to_string()])
        .output()?;
    std::fs::remove_dir_all(&tmp)?;
    assert!(out.status.success(), "kubectl kustomize: {}", String::from_utf8_lossy(&out.stderr));
    let built: Value = serde_yaml::from_slice(&out.stdout)?;
    assert_eq!(built["data"]["url"].as_str(), Some("https://argocd.example"));
    assert_eq!(built["data"][key].as_str(), Some(HEALTH_LUA));
    Ok(())
}

/// Runs the Argo CD health check on one object: (hs.status, hs.message).
fn argo_health(object: &Value) -> Result<(String, String), TestError> {
    let lua = Lua::new();
    // Argo CD hands the check a Lua table of the object in which JSON nulls are absent (nil).
    let options = SerializeOptions::new().serialize_none_to_null(false).serialize_unit_to_null(false);
    let run = || -> mlua::Result<(String, String)> {
        lua.globals().set("obj", lua.to_value_with(object, options)?)?;
        let hs: mlua::Table = lua.load(HEALTH_LUA).set_name("health.lua").eval()?;
        Ok((hs.get("status")?, hs.get("message")?))
    };
    run().map_err(|e| format!("health.lua: {e}").into())
}

/// kstatus's verdict on a JSON object or List, from tools/kstatus.
fn kstatus(json: &str) -> Result<Verdicts, TestError> {
    let mut child = Command::new(kstatus_bin()?)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().ok_or("no stdin")?.write_all(json.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(format!("kstatus: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let mut verdicts = Verdicts::new();
    for line in String::from_utf8(out.stdout)?.lines() {
        let mut parts = line.splitn(3, ' ');
        let (name, status) = (
            parts.next().unwrap_or_default(),
            parts.next().ok_or_else(|| format!("kstatus printed {line:?}"))?,
        );
        verdicts.insert(name.to_string(), (status.to_string(), parts.next().unwrap_or_default().to_string()));
    }
    Ok(verdicts)
}

/// Builds tools/kstatus once per test binary (make rebuilds it only when its sources change).
fn kstatus_bin() -> Result<PathBuf, TestError> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = workspace_root();
            let out = Command::new("make")
                .args(["-s", "kstatus"])
                .current_dir(&root)
                .output()
                .map_err(|e| format!("running make kstatus: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "make kstatus failed (Go is needed, as for the control plane): {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Ok(root.join(".cache/tools/kstatus"))
        })
        .clone()
        .map_err(Into::into)
}

fn condition<'a>(objects: &'a [Value], binding: &str, type_: &str) -> Result<&'a Value, TestError> {
    let object = objects
        .iter()
        .find(|o| o["metadata"]["name"] == binding)
        .ok_or_else(|| format!("no binding {binding}"))?;
    object["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .ok_or_else(|| format!("{binding} has no {type_} condition: {object:#}").into())
}

/// `kubectl apply` of one manifest into `namespace`.
fn apply(plane: &ControlPlane, namespace: &str, manifest: &Value) -> TestResult {
    let mut child = plane
        .kubectl(&["apply", "-n", namespace, "-f", "-"])
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
