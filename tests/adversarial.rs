//! The stateful adversarial test: two tenants and a cluster administrator take seeded random actions against
//! one operator watching every namespace (the real API server, the simulator, the operator as a process), and
//! after every step a checker asserts the trust model's invariants (SECURITY.md) on the simulator's full
//! state and on the cluster.
//!
//! Tenants create, edit and delete bindings (with `deletionPolicy: Retain` too); forge ownership tags in any
//! letter case on identities named like another tenant's; bring the administrator's shared identities, the
//! operator's own identity and each other's; ask for roles on Azure resources (their own, the other tenant's,
//! resource groups, the subscription, spelled with `\`, `..` and look-alike provider names); name
//! SecretProviderClasses (of the azure provider or another) and export ConfigMaps (fresh ones, their own, and
//! `kube-root-ca.crt` dressed with an owner reference to their binding); annotate ServiceAccounts by hand;
//! and (with the rights of whoever can write status) forge a binding's status. The administrator applies,
//! narrows and deletes policies (prefix patterns, `{namespace}` patterns, mistakes such as listing the
//! operator's identity) and binds the operator's own ServiceAccount. Namespaces are closed (the shipped
//! default: a namespace no policy selects binds nothing) and verification proves federation.
//!
//! `ADVERSARIAL_SEEDS` (comma-separated, default `1`) and `ADVERSARIAL_STEPS` (default 16) size the run:
//! `make test` runs this bounded form, `make adversarial` a long one. `IDBIND_TEST_OPERATOR` runs another
//! build of the operator (an older one, to show what the checker finds there). The figures are printed at the
//! end.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use idbind::core::conditions::{READY, STALLED};
use idbind::{
    azure::AzureApi,
    core::{
        naming,
        resource_id::{ResourceId, USER_ASSIGNED_IDENTITY},
    },
};
use serde_json::{Value, json};

use idbind_testkit::{
    e2e::{
        APP_ID, APP_SECRET, KV_RG, Namespace, RG, SUB, TestError, TestResult, eventually, install_class_crd,
        install_verification,
    },
    tenancy::{self, CLUSTER, Cluster},
};

const ROLES: [&str; 2] = ["Key Vault Secrets User", "Key Vault Reader"];
/// The data roles tenants ask for on Storage accounts: a reader, and one no default allows.
const DATA_ROLES: [&str; 2] = ["Storage Blob Data Reader", "Storage Blob Data Contributor"];
/// The identities the administrator made for tenants to bring (no idbind tags).
const SHARED: [&str; 2] = ["adv-shared-1", "adv-shared-2"];

/// splitmix64: a seeded, reproducible sequence without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }
}

/// What an actor does in one step, with its weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Act {
    CreateBinding,
    ForgeTags,
    BringIdentity,
    ShareIdentity,
    EditRoles,
    DeleteBinding,
    ForgeStatus,
    AnnotateByHand,
    BindOperatorServiceAccount,
    ApplyPolicy,
    DeletePolicy,
    AzureRoles,
    WireClass,
    Export,
    ExportRootCa,
    NarrowPolicy,
    DeleteRetained,
}

const ACTS: [(Act, usize); 17] = [
    (Act::CreateBinding, 12),
    (Act::ForgeTags, 6),
    (Act::BringIdentity, 6),
    (Act::ShareIdentity, 4),
    (Act::EditRoles, 8),
    (Act::DeleteBinding, 6),
    (Act::ForgeStatus, 6),
    (Act::AnnotateByHand, 4),
    (Act::BindOperatorServiceAccount, 3),
    (Act::ApplyPolicy, 12),
    (Act::DeletePolicy, 5),
    (Act::AzureRoles, 12),
    (Act::WireClass, 5),
    (Act::Export, 5),
    (Act::ExportRootCa, 3),
    (Act::NarrowPolicy, 6),
    (Act::DeleteRetained, 4),
];

/// One run: the actors, what the checker must hold them to, and the tally.
struct Run<'c> {
    cluster: &'c Cluster,
    tenants: Vec<Namespace<'c>>,
    admin: Namespace<'c>,
    rng: Rng,
    names: u32,
    seed: u64,
    step: usize,
    act: Act,
    /// ServiceAccounts annotated by hand: (namespace, name, client id), never to change.
    by_hand: Vec<(String, String, String)>,
    /// What a binding ever named, by (namespace, name): the only objects idbind may write (I8, I9).
    named: Named,
    policies: BTreeSet<String>,
    acts: BTreeMap<Act, u32>,
    refused_by_api_server: u32,
    checks: u64,
    violations: Vec<String>,
}

fn binding(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": name}, "spec": spec})
}

fn vaults(role: &str) -> Value {
    json!([{"name": "kv-shop", "resourceGroup": KV_RG, "roles": [role]}])
}

/// The Storage account Azure holds for tenant namespace `ns`, in its own group `rg-<ns>_data`.
fn storage_of(ns: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/rg-{ns}_data/providers/Microsoft.Storage/storageAccounts/data"
    )
}

/// What bindings named outside Azure, by (namespace, name).
#[derive(Default)]
pub struct Named {
    pub service_accounts: BTreeSet<(String, String)>,
    pub classes: BTreeSet<(String, String)>,
    pub config_maps: BTreeSet<(String, String)>,
}

fn identity_id(name: &str) -> String {
    ResourceId::resource_group_scope(SUB, RG).provider_resource(USER_ASSIGNED_IDENTITY, name).to_string()
}

impl<'c> Run<'c> {
    fn name(&mut self, prefix: &str) -> String {
        self.names += 1;
        // Now and then the longest name Kubernetes allows (253 characters, labels of at most 63).
        if self.rng.percent(10) {
            let label = "l".repeat(63);
            let head = format!("{prefix}-{}", self.names);
            return format!("{head}{}.{label}.{label}.{label}", "x".repeat(61 - head.len()));
        }
        format!("{prefix}-{}", self.names)
    }

    /// Where the run is, for a violation's message.
    fn at(&self) -> String {
        format!("seed {} step {} ({:?})", self.seed, self.step, self.act)
    }

    fn tenant(&mut self) -> usize {
        self.rng.below(self.tenants.len())
    }

    /// A ServiceAccount and a binding of it in tenant `t`; an API server refusal is counted, not an error.
    fn bind(&mut self, t: usize, name: &str, spec: Value) -> TestResult {
        let sa = spec["serviceAccountName"].as_str().unwrap_or_default().to_string();
        let tenant = &self.tenants[t];
        if tenant.kubectl(&["get", "sa", &sa, "--ignore-not-found", "-o", "name"])?.trim().is_empty() {
            tenant.kubectl(&["create", "serviceaccount", &sa])?;
        }
        let ns = tenant.ns.clone();
        if let Err(e) = tenant.apply(&binding(name, spec.clone())) {
            self.refused_by_api_server += 1;
            println!("  refused by the API server: {}", e.to_string().lines().next().unwrap_or_default());
            return Ok(());
        }
        self.named.service_accounts.insert((ns.clone(), sa));
        for class in spec["secretProviderClasses"].as_array().into_iter().flatten() {
            self.named.classes.insert((ns.clone(), text(class)));
        }
        if let Some(export) = spec["export"]["configMapName"].as_str() {
            self.named.config_maps.insert((ns, export.to_string()));
        }
        Ok(())
    }

    async fn act(&mut self, act: Act) -> TestResult {
        match act {
            Act::CreateBinding => self.create_binding(),
            Act::ForgeTags => self.forge_tags().await,
            Act::BringIdentity => self.bring_identity(),
            Act::ShareIdentity => self.share_identity(),
            Act::EditRoles => self.edit_roles(),
            Act::DeleteBinding => self.delete_binding(),
            Act::ForgeStatus => self.forge_status().await,
            Act::AnnotateByHand => self.annotate_by_hand(),
            Act::BindOperatorServiceAccount => self.bind_operator_service_account(),
            Act::ApplyPolicy => self.apply_policy(),
            Act::DeletePolicy => self.delete_policy(),
            Act::AzureRoles => self.azure_roles(),
            Act::WireClass => self.wire_class(),
            Act::Export => self.export(),
            Act::ExportRootCa => self.export_root_ca().await,
            Act::NarrowPolicy => self.narrow_policy(),
            Act::DeleteRetained => self.delete_retained(),
        }
    }

    /// A role on an Azure resource: the tenant's own Storage account, the other tenant's, either spelled with
    /// `\` and `..` to land on the other, a look-alike provider name, the account's resource group, or the
    /// subscription; a reader role, or a writer no default allows.
    fn azure_roles(&mut self) -> TestResult {
        let t = self.tenant();
        let (own, other) =
            (self.tenants[t].ns.clone(), self.tenants[(t + 1) % self.tenants.len()].ns.clone());
        let mine = storage_of(&own);
        let theirs = storage_of(&other);
        let scope = match self.rng.below(7) {
            0 | 1 => mine.clone(),
            2 => theirs,
            3 => format!(
                "{mine}/x\\..\\..\\..\\..\\..\\..\\..\\resourceGroups\\rg-{other}_data\\providers\\\
                 Microsoft.Storage\\storageAccounts\\data"
            ),
            4 => mine.replace(
                "Microsoft.Storage",
                if self.rng.percent(50) { "MICROSOFT.STORAGE" } else { "Microsoft.St\u{3bf}rage" },
            ),
            5 => format!("/subscriptions/{SUB}/resourceGroups/rg-{own}_data"),
            _ => format!("/subscriptions/{SUB}"),
        };
        let role = if self.rng.percent(80) { DATA_ROLES[0] } else { DATA_ROLES[1] };
        let name = self.name("data");
        let spec = json!({"serviceAccountName": format!("sa-{}", self.names),
                          "azureRoles": [{"scope": scope, "roles": [role]}]});
        self.bind(t, &name, spec)
    }

    /// A class of the tenant's (of the azure provider, now and then another's), named by a new binding.
    fn wire_class(&mut self) -> TestResult {
        let t = self.tenant();
        let class = format!("cls-{}", self.names + 1);
        let provider = if self.rng.percent(80) { "azure" } else { "gcp" };
        let manifest = json!({"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
            "metadata": {"name": class}, "spec": {"provider": provider, "parameters": {"keyvaultName": "kv-shop"}}});
        self.tenants[t].apply(&manifest)?;
        let name = self.name("wired");
        let spec = json!({"serviceAccountName": format!("sa-{}", self.names), "keyVaults": vaults(ROLES[0]),
                          "secretProviderClasses": [class]});
        self.bind(t, &name, spec)
    }

    /// An export ConfigMap: a fresh name, or one the tenant made itself (never idbind's to write).
    fn export(&mut self) -> TestResult {
        let t = self.tenant();
        let config_map = format!("exp-{}", self.names + 1);
        if self.rng.percent(40) {
            let mine = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": config_map},
                              "data": {"owner": "the tenant"}});
            self.tenants[t].apply(&mine)?;
        }
        let name = self.name("export");
        let spec = json!({"serviceAccountName": format!("sa-{}", self.names), "keyVaults": vaults(ROLES[1]),
                          "export": {"configMapName": config_map}});
        self.bind(t, &name, spec)
    }

    /// Issue 23's reproduction 5: the tenant names `kube-root-ca.crt` as its export and dresses it with an
    /// owner reference to its binding, as its controller.
    async fn export_root_ca(&mut self) -> TestResult {
        let t = self.tenant();
        let name = self.name("rootca");
        let spec = json!({"serviceAccountName": format!("sa-{}", self.names), "keyVaults": vaults(ROLES[1]),
                          "export": {"configMapName": "kube-root-ca.crt"}});
        self.bind(t, &name, spec)?;
        let tenant = &self.tenants[t];
        let uid = tenant.kubectl(&["get", "wib", &name, "-o", "jsonpath={.metadata.uid}"])?;
        let owner = json!({"metadata": {"ownerReferences": [{"apiVersion": "idbind.dev/v1alpha1",
            "kind": "WorkloadIdentityBinding", "name": name, "uid": uid.trim(), "controller": true}]}});
        tenant.kubectl(&[
            "patch",
            "configmap",
            "kube-root-ca.crt",
            "--type=merge",
            "-p",
            &owner.to_string(),
        ])?;
        Ok(())
    }

    /// The administrator narrows the policy of a tenant's namespace: the vault group without one role, or
    /// nothing but the identity.
    fn narrow_policy(&mut self) -> TestResult {
        let t = self.tenant();
        let ns = self.tenants[t].ns.clone();
        let spec = if self.rng.percent(50) {
            json!({"namespaces": [ns], "keyVaults": [{"resourceGroup": KV_RG}], "roles": [ROLES[self.rng.below(2)]]})
        } else {
            json!({"namespaces": [ns]})
        };
        let name = format!("adv-policy-{}", self.rng.below(4));
        self.apply_named_policy(&name, spec)
    }

    /// A binding set to `deletionPolicy: Retain`, then deleted.
    fn delete_retained(&mut self) -> TestResult {
        let Some((ns, name)) = self.live_binding(false)? else { return Ok(()) };
        let plane = self.cluster.env.plane;
        let retain = r#"{"spec":{"deletionPolicy":"Retain"}}"#;
        plane.kubectl_ok(&["patch", "wib", &name, "-n", &ns, "--type=merge", "-p", retain])?;
        plane.kubectl_ok(&["delete", "wib", &name, "-n", &ns, "--timeout=120s"])?;
        Ok(())
    }

    /// Applies policy `name` with `spec`, recording it; a refusal by the API server breaks I7 (the
    /// administrator's documented policies must be accepted).
    fn apply_named_policy(&mut self, name: &str, spec: Value) -> TestResult {
        let policy = json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityPolicy",
                            "metadata": {"name": name}, "spec": spec});
        match self.admin.apply(&policy) {
            Ok(()) => {
                self.policies.insert(name.to_string());
            }
            Err(e) => {
                let at = self.at();
                self.violations
                    .push(format!("{at}: I7 the API server refused a documented policy ({spec}): {e}"));
            }
        }
        Ok(())
    }

    fn create_binding(&mut self) -> TestResult {
        let (t, name, role) = (self.tenant(), self.name("app"), *self.rng.pick(&ROLES));
        let spec = json!({"serviceAccountName": format!("sa-{}", self.names), "keyVaults": vaults(role)});
        self.bind(t, &name, spec)
    }

    /// An attacker names its identity like the one a victim's binding will get, with ownership tags in some
    /// letter case naming the victim; then the victim's binding arrives.
    async fn forge_tags(&mut self) -> TestResult {
        let attacker = self.tenant();
        let victim = (attacker + 1) % self.tenants.len();
        let victim_binding = format!("victim-{}", self.names + 1);
        let victim_ns = self.tenants[victim].ns.clone();
        let prefix = *self.rng.pick(&["IDBIND.dev", "idbind.DEV", "Idbind.Dev", "iDbInD.dEv", "idbind.dev"]);
        let tags = json!({format!("{prefix}.cluster"): CLUSTER, format!("{prefix}.namespace"): victim_ns,
                          format!("{prefix}.binding"): victim_binding});
        let identity =
            json!({"name": naming::identity_name(CLUSTER, &victim_ns, &victim_binding), "tags": tags});
        let name = self.name("grab");
        let spec = json!({"serviceAccountName": format!("evil-{}", self.names), "identity": identity,
                          "keyVaults": vaults(ROLES[1])});
        self.bind(attacker, &name, spec)?;
        self.settle().await?;
        self.names += 1;
        let spec = json!({"serviceAccountName": format!("sa-{}", self.names), "keyVaults": vaults(ROLES[0])});
        self.bind(victim, &victim_binding, spec)
    }

    /// A tenant brings an identity: one the administrator shares, the operator's own, or another tenant's.
    fn bring_identity(&mut self) -> TestResult {
        let t = self.tenant();
        let mut candidates: Vec<String> = SHARED.iter().map(|n| identity_id(n)).collect();
        candidates.push(self.cluster.operator_identity.to_string());
        let others = self.managed_identities_not_of(&self.tenants[t].ns);
        if !others.is_empty() {
            candidates.push(self.rng.pick(&others).clone());
        }
        let target = self.rng.pick(&candidates).clone();
        let (name, role) = (self.name("bring"), *self.rng.pick(&ROLES));
        let spec = json!({"serviceAccountName": format!("sa-{}", self.names), "identity": {"resourceId": target},
                          "keyVaults": vaults(role)});
        self.bind(t, &name, spec)
    }

    /// Both tenants bring the same shared identity, each with another role.
    fn share_identity(&mut self) -> TestResult {
        let shared = identity_id(SHARED[self.rng.below(SHARED.len())]);
        for (t, role) in ROLES.iter().enumerate() {
            let name = self.name("share");
            let spec = json!({"serviceAccountName": format!("sa-{}", self.names),
                              "identity": {"resourceId": shared}, "keyVaults": vaults(role)});
            self.bind(t, &name, spec)?;
        }
        Ok(())
    }

    fn edit_roles(&mut self) -> TestResult {
        let Some((ns, name)) = self.live_binding(false)? else { return Ok(()) };
        let role = *self.rng.pick(&ROLES);
        let patch = json!({"spec": {"keyVaults": vaults(role)}}).to_string();
        let args = ["patch", "wib", &name, "-n", &ns, "--type=merge", "-p", &patch];
        self.cluster.env.plane.kubectl_ok(&args)?;
        Ok(())
    }

    fn delete_binding(&mut self) -> TestResult {
        let Some((ns, name)) = self.live_binding(false)? else { return Ok(()) };
        self.cluster.env.plane.kubectl_ok(&["delete", "wib", &name, "-n", &ns, "--timeout=120s"])?;
        Ok(())
    }

    /// Whoever can write status points a Ready binding at another binding's identity, as managed or brought
    /// (its next resync retires what the status names); the step ends when the operator has written its own
    /// status back (or the binding is gone).
    async fn forge_status(&mut self) -> TestResult {
        let Some((ns, name)) = self.live_binding(true)? else { return Ok(()) };
        let others = self.managed_identities_not_of(&ns);
        if others.is_empty() {
            return Ok(());
        }
        let forged = self.rng.pick(&others).clone();
        let managed = self.rng.percent(70);
        let patch = json!({"status": {"identity": {"resourceId": forged, "name": "x", "managed": managed}}});
        let patch = patch.to_string();
        let args = ["patch", "wib", &name, "-n", &ns, "--subresource=status", "--type=merge", "-p", &patch];
        self.cluster.env.plane.kubectl_ok(&args)?;
        let plane = self.cluster.env.plane;
        eventually(&format!("{ns}/{name}'s status rewritten"), Duration::from_secs(90), || {
            let path = "jsonpath={.status.identity.resourceId}";
            let out = plane.kubectl(&["get", "wib", &name, "-n", &ns, "-o", path]).output()?;
            let now = String::from_utf8_lossy(&out.stdout).trim().to_string();
            Ok((!out.status.success() || now != forged).then_some(()))
        })
        .await
    }

    fn annotate_by_hand(&mut self) -> TestResult {
        let t = self.tenant();
        let (sa, value) = (format!("hand-{}", self.names + 1), format!("set-by-hand-{}", self.names + 1));
        let tenant = &self.tenants[t];
        tenant.kubectl(&["create", "serviceaccount", &sa])?;
        tenant.kubectl(&["annotate", "sa", &sa, &format!("azure.workload.identity/client-id={value}")])?;
        self.by_hand.push((tenant.ns.clone(), sa.clone(), value));
        let name = self.name("hand");
        self.bind(t, &name, json!({"serviceAccountName": sa, "keyVaults": vaults(ROLES[0])}))
    }

    fn bind_operator_service_account(&mut self) -> TestResult {
        let name = self.name("take-operator");
        if let Err(e) = self.admin.apply(&binding(&name, json!({"serviceAccountName": "operator"}))) {
            self.violations
                .push(format!("{}: I7 the API server refused an administrator's binding: {e}", self.at()));
        }
        Ok(())
    }

    /// The administrator applies one of four policies: tenants' namespaces by name or by prefix pattern, the
    /// vault group, both roles, and some identities to bring (now and then the operator's, by mistake); or
    /// one for every tenant with `{namespace}` patterns: each its own Storage account, with the data reader.
    fn apply_policy(&mut self) -> TestResult {
        if self.rng.percent(30) {
            let relative = json!({"namespaces": ["adv-*"],
                "azureScopes": [{"resourceGroup": "rg-{namespace}_*", "resourceTypes": ["Microsoft.Storage/storageAccounts"]}],
                "roles": [DATA_ROLES[0]]});
            return self.apply_named_policy("adv-relative", relative);
        }
        let t = self.tenant();
        let ns = self.tenants[t].ns.clone();
        let pattern = match self.rng.below(3) {
            0 => ns,
            1 => format!("{}*", ns.trim_end_matches(|c: char| c.is_ascii_hexdigit())),
            _ => "adv-*".to_string(),
        };
        let mut identities: Vec<String> =
            SHARED.iter().filter(|_| self.rng.percent(60)).map(|n| identity_id(n)).collect();
        if self.rng.percent(20) {
            identities.push(self.cluster.operator_identity.to_string());
        }
        let name = format!("adv-policy-{}", self.rng.below(4));
        let spec = json!({"namespaces": [pattern], "keyVaults": [{"resourceGroup": KV_RG}], "roles": ROLES,
                          "existingIdentities": identities});
        self.apply_named_policy(&name, spec)
    }

    fn delete_policy(&mut self) -> TestResult {
        let names: Vec<String> = self.policies.iter().cloned().collect();
        if names.is_empty() {
            return Ok(());
        }
        let name = self.rng.pick(&names).clone();
        self.cluster.env.plane.kubectl_ok(&["delete", "wip", &name, "--ignore-not-found"])?;
        self.policies.remove(&name);
        Ok(())
    }

    /// Every binding of the run's namespaces, as the API server has it.
    fn bindings(&self) -> Result<Vec<Value>, TestError> {
        let listed: Value =
            serde_json::from_str(&self.cluster.env.plane.kubectl_ok(&["get", "wib", "-A", "-o", "json"])?)?;
        let ours: BTreeSet<&str> =
            self.tenants.iter().map(|t| t.ns.as_str()).chain([self.admin.ns.as_str()]).collect();
        Ok(listed["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["metadata"]["namespace"].as_str().is_some_and(|ns| ours.contains(ns)))
            .cloned()
            .collect())
    }

    /// A random tenant's binding not being deleted (a Ready one, if `ready`).
    fn live_binding(&mut self, ready: bool) -> Result<Option<(String, String)>, TestError> {
        let admin = self.admin.ns.clone();
        let live: Vec<(String, String)> = self
            .bindings()?
            .iter()
            .filter(|b| {
                b["metadata"]["deletionTimestamp"].is_null() && b["metadata"]["namespace"] != admin.as_str()
            })
            .filter(|b| !ready || condition(b, READY).0 == "True")
            .map(|b| (text(&b["metadata"]["namespace"]), text(&b["metadata"]["name"])))
            .collect();
        Ok((!live.is_empty()).then(|| self.rng.pick(&live).clone()))
    }

    /// Identities whose exact ownership tags name a namespace other than `ns`.
    fn managed_identities_not_of(&self, ns: &str) -> Vec<String> {
        all_identities(&self.cluster.env.sim.state_typed())
            .into_iter()
            .filter(|(_, i)| i.tags.get("idbind.dev.namespace").is_some_and(|n| n != ns))
            .map(|(id, _)| id)
            .collect()
    }

    /// Waits until every binding is judged for its current spec (Ready or Stalled) and every deletion done.
    async fn settle(&self) -> TestResult {
        let mut pending: Vec<String> = Vec::new();
        let settled = eventually("every binding settled", Duration::from_secs(120), || {
            pending = self
                .bindings()?
                .iter()
                .filter(|b| {
                    let current = b["status"]["observedGeneration"] == b["metadata"]["generation"];
                    let judged = [READY, STALLED].iter().any(|t| condition(b, t).0 == "True");
                    !b["metadata"]["deletionTimestamp"].is_null() || !current || !judged
                })
                .map(|b| {
                    let (ns, name) = (text(&b["metadata"]["namespace"]), text(&b["metadata"]["name"]));
                    format!("{ns}/{name} (Ready: {:?})", condition(b, READY))
                })
                .collect();
            Ok(pending.is_empty().then_some(()))
        })
        .await;
        settled.map_err(|e| format!("{e}; not settled: {}", pending.join(", ")).into())
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// (status, reason) of a binding's condition.
fn condition(b: &Value, type_: &str) -> (String, String) {
    let all = b["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let c = all.into_iter().find(|c| c["type"] == type_).unwrap_or(Value::Null);
    (text(&c["status"]), text(&c["reason"]))
}

/// Every identity in the simulator, by resource id.
fn all_identities(state: &idbind_sim::state::State) -> Vec<(String, idbind_sim::state::Identity)> {
    let mut all = Vec::new();
    for (sub, s) in &state.subscriptions {
        for (rg, g) in &s.resource_groups {
            for i in g.identities.values() {
                let id = ResourceId::resource_group_scope(sub, rg)
                    .provider_resource(USER_ASSIGNED_IDENTITY, &i.name);
                all.push((id.to_string(), i.clone()));
            }
        }
    }
    all
}

#[path = "adversarial/check.rs"]
mod check;

#[tokio::test(flavor = "multi_thread")]
async fn tenants_and_an_admin_acting_at_random_never_break_the_trust_model() -> TestResult {
    let _turn = tenancy::serial().await;
    let seeds: Vec<u64> = std::env::var("ADVERSARIAL_SEEDS")
        .unwrap_or_else(|_| "1".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let steps: usize = std::env::var("ADVERSARIAL_STEPS").map_or(Ok(16), |s| s.parse())?;
    let mut total = check::Figures::default();
    for seed in seeds {
        // The shipped default (closed namespaces), verification proving federation, and the CSI driver's
        // class CRD.
        let closed = [
            ("IDBIND_OPEN_NAMESPACES", "false"),
            ("IDBIND_VERIFY", "federation"),
            ("IDBIND_VERIFY_FEDERATION_WINDOW_SECONDS", "60"),
        ];
        let cluster = tenancy::start_with("adv-a", &closed, |env| {
            install_verification(env)?;
            install_class_crd(env.plane)
        })
        .await?;
        let figures = run(&cluster, seed, steps).await?;
        println!("{}", figures.line());
        total.add(&figures);
    }
    println!("adversarial total: {}", total.line());
    assert!(total.violations.is_empty(), "invariants broken:\n{}", total.violations.join("\n"));
    Ok(())
}

/// One seeded run of `steps` steps on a fresh operator.
async fn run(cluster: &Cluster, seed: u64, steps: usize) -> Result<check::Figures, TestError> {
    let api = idbind_testkit::arm_api(&cluster.env.sim, APP_ID, APP_SECRET)?;
    for name in SHARED {
        api.put_identity(&identity_id(name).parse()?, "westeurope", &Default::default()).await?;
    }
    let operator_ns = cluster.operator_namespace.clone();
    let annotation = format!("azure.workload.identity/client-id={}", cluster.operator_client_id);
    cluster.env.plane.kubectl_ok(&[
        "annotate",
        "sa",
        "operator",
        "-n",
        &operator_ns,
        &annotation,
        "--overwrite",
    ])?;
    let tenants = vec![cluster.env.here(), cluster.env.other_namespace("adv-b")?];
    // Each tenant's own Storage account, in a group of its own (`rg-<namespace>_data`).
    let mut accounts = idbind_sim::Seed::default();
    for tenant in &tenants {
        accounts.add_resource_id(&storage_of(&tenant.ns))?;
    }
    cluster.env.sim.seed(accounts).await?;
    // The administrator gives idbind's identity its README roles on the new groups too.
    let operator =
        cluster.identity(&cluster.operator_identity.to_string()).ok_or("the operator's identity")?;
    let identities = [ResourceId::resource_group_scope(SUB, RG).to_string()];
    idbind_testkit::azure_rbac::grant_operator_roles_now(
        &cluster.env.sim,
        &operator.principal_id,
        &identities,
    )
    .await?;
    let mut run = Run {
        cluster,
        tenants,
        admin: Namespace { plane: cluster.env.plane, ns: operator_ns },
        rng: Rng(seed),
        names: 0,
        seed,
        step: 0,
        act: Act::CreateBinding,
        by_hand: Vec::new(),
        named: Named::default(),
        policies: BTreeSet::new(),
        acts: BTreeMap::new(),
        refused_by_api_server: 0,
        checks: 0,
        violations: Vec::new(),
    };
    let baseline = check::Baseline::take(&run)?;
    let weights: usize = ACTS.iter().map(|(_, w)| w).sum();
    for step in 1..=steps {
        run.step = step;
        let mut roll = run.rng.below(weights);
        let act = ACTS
            .iter()
            .find(|(_, w)| {
                let hit = roll < *w;
                roll = roll.saturating_sub(*w);
                hit
            })
            .map_or(Act::CreateBinding, |(a, _)| *a);
        println!("seed {seed} step {step}: {act:?}");
        run.act = act;
        *run.acts.entry(act).or_default() += 1;
        run.act(act).await?;
        if let Err(e) = run.settle().await {
            run.violations.push(format!("{}: I0 liveness: {e}", run.at()));
            continue;
        }
        check::invariants(&mut run, &baseline).await?;
        if step % 4 == 0 || step == steps {
            check::steady_state(&mut run).await?;
        }
    }
    Ok(check::Figures::of(&run))
}
