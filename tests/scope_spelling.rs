//! Issue 23, reproduction 2, end to end (real API server, the simulator over HTTPS, the operator in this
//! process): an `azureRoles` scope spelled with `\` and `..` reads as a resource the tenant may name (an
//! accessPolicies child of its own vault, a Storage account its policy's name pattern allows), while the URL
//! parser under the Azure clients (WHATWG: `\` is `/` in an https URL, then `..` resolves) sends the GET and
//! the role assignment's PUT to another team's vault, another resource group's Storage account, the
//! subscription, or the resource group holding every identity idbind manages.
//!
//! Each spelling is refused, naming `spec.azureRoles[0].scope`, and Azure is left as it was: no write, no
//! role assignment anywhere. Where it is refused depends on the cluster: the API server's schema refuses it
//! at admission; an API server that still serves an older CRD (Helm never upgrades a chart's CRDs), or an
//! object stored before the upgrade, lets it through, and then the operator refuses it (`InvalidSpec`). Each
//! test checks the operator's own judgement too, whatever the API server did, through `idbind plan`'s
//! [`dry_run`]. The tests select their namespace with a policy that allows only the team's own resources, so
//! they hold whichever default the operator has for namespaces no policy selects.

use std::{sync::Arc, time::Duration};

use idbind::core::conditions::READY;
use idbind::core::reason::Reason;
use idbind::{
    api::{binding::WorkloadIdentityBinding, policy::WorkloadIdentityPolicySpec},
    azure::governed::Governed,
    core::{policy::Rule, settings::Ceiling},
    reconcile::{DryRun, dry_run},
};
use idbind_sim::SimConfig;
use idbind_testkit::e2e::{
    APP_ID, APP_SECRET, Env, KV_RG, RG, SUB, TestResult, apply_cluster, eventually, settings,
};
use serde_json::{Value, json};

const TEAM_RG: &str = "rg-team";
const DATA_RG: &str = "rg-data";
/// Another team's resource group, with a Storage account of its own.
const FINANCE_RG: &str = "rg-finance";
const SECRETS_USER: &str = "Key Vault Secrets User";
const BLOB_READER: &str = "Storage Blob Data Reader";

fn group(name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{name}")
}

/// The team's own vault.
fn team_vault() -> String {
    format!("{}/providers/Microsoft.KeyVault/vaults/kv-team", group(TEAM_RG))
}

/// Another team's vault (the harness seeds it).
fn shop_vault() -> String {
    format!("{}/providers/Microsoft.KeyVault/vaults/kv-shop", group(KV_RG))
}

fn storage(group_name: &str, account: &str) -> String {
    format!("{}/providers/Microsoft.Storage/storageAccounts/{account}", group(group_name))
}

/// `from`, then `ups` `..` segments and the segments of the path `to`, joined by `\`.
fn escape(from: &str, ups: usize, to: &str) -> String {
    let mut text = from.to_string();
    text.push_str(&r"\..".repeat(ups));
    for segment in to.split('/').filter(|s| !s.is_empty()) {
        text.push('\\');
        text.push_str(segment);
    }
    text
}

/// Where a URL parser sends a request for `scope`: what the reproduction relies on, checked so that a test of
/// a spelling that goes nowhere cannot pass.
fn lands_at(scope: &str) -> String {
    match azure_core::Url::parse(&format!("https://management.azure.com{scope}")) {
        Ok(url) => url.path().trim_end_matches('/').to_string(),
        Err(e) => panic!("{scope}: {e}"),
    }
}

/// Azure with the team's vault in its own resource group and Storage accounts in rg-data (matching the
/// README's `shop*` pattern) and rg-finance.
fn seed(config: &mut SimConfig) {
    config.seed.add_vault(SUB, TEAM_RG, "kv-team", true);
    for id in [storage(DATA_RG, "shopdata"), storage(FINANCE_RG, "financedata")] {
        if let Err(e) = config.seed.add_resource_id(&id) {
            panic!("seeding {id}: {e}");
        }
    }
}

fn binding(name: &str, scope: &str, roles: &[&str]) -> Value {
    json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": name},
           "spec": {"serviceAccountName": name, "azureRoles": [{"scope": scope, "roles": roles}]}})
}

/// The administrator's policy for the test's namespace, applied, and as the operator reads it.
fn policy(env: &Env, scopes: Value, roles: Option<&[&str]>) -> Result<Rule, idbind_testkit::e2e::TestError> {
    let name = format!("{}-team", env.ns);
    let mut spec = json!({"namespaces": [env.ns], "azureScopes": scopes});
    if let Some(roles) = roles {
        spec["roles"] = json!(roles);
    }
    apply_cluster(
        env.plane,
        &json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityPolicy",
                "metadata": {"name": name}, "spec": spec}),
    )?;
    let spec: WorkloadIdentityPolicySpec = serde_json::from_value(spec)?;
    Ok(Rule::from_policy(&name, &spec, SUB))
}

/// Every role assignment the simulator holds: (scope in lowercase, role GUID, principal), sorted.
fn assignments(env: &Env) -> Vec<(String, String, String)> {
    let state = env.sim.state_typed();
    let mut all: Vec<(String, String, String)> = state
        .role_assignments
        .values()
        .map(|ra| (ra.scope.to_ascii_lowercase(), ra.role_definition_guid.clone(), ra.principal_id.clone()))
        .collect();
    all.sort();
    all
}

/// The Ready condition once the binding settles: Ready, or refused for a reason that stays.
async fn settled(env: &Env, name: &str) -> Result<(String, String), idbind_testkit::e2e::TestError> {
    eventually(&format!("{name} settles"), Duration::from_secs(90), || {
        let (status, reason) = env.condition(name, READY)?;
        let judged =
            [Reason::InvalidSpec, Reason::PolicyViolation, Reason::ScopeNotFound].map(Reason::as_str);
        let settled = status == "True" || judged.contains(&&*reason);
        Ok(settled.then_some((status, reason)))
    })
    .await
}

/// A tenant binds `roles` at `scope`, a spelling that lands at `target`: refused, naming
/// spec.azureRoles[0].scope, with no Azure write and no role assignment anywhere; and the operator's own
/// judgement refuses it too.
async fn refused(
    env: &Env,
    rules: &[Rule],
    ceiling: &Ceiling,
    scope: &str,
    target: &str,
    roles: &[&str],
) -> TestResult {
    const FIELD: &str = "spec.azureRoles[0].scope";
    assert_eq!(lands_at(scope), target, "the spelling reaches the other resource");
    let name = "spelled";
    let (writes, before) = (env.writes(), assignments(env));
    env.kubectl(&["create", "serviceaccount", name])?;
    let manifest = binding(name, scope, roles);
    match env.apply(&manifest) {
        Err(refusal) => {
            let refusal = refusal.to_string();
            assert!(refusal.contains(FIELD) && refusal.contains("spelled plainly"), "{refusal}");
        }
        Ok(()) => {
            let outcome = settled(env, name).await?;
            assert_eq!(
                outcome,
                ("False".to_string(), Reason::InvalidSpec.to_string()),
                "the binding is refused; Azure's role assignments now: {:?}",
                assignments(env)
            );
            let message = env.message(name, READY)?;
            assert!(message.contains(FIELD), "{message}");
            let selector = format!("involvedObject.name={name},reason={}", Reason::InvalidSpec);
            eventually("an InvalidSpec Event for the binding", Duration::from_secs(30), || {
                let events = env.kubectl(&["get", "events", "--field-selector", &selector, "-o", "name"])?;
                Ok((!events.trim().is_empty()).then_some(()))
            })
            .await?;
        }
    }
    assert_eq!(assignments(env), before, "no role assignment anywhere");
    assert_eq!(env.writes(), writes, "no Azure write");

    // What the operator itself says of it: every reconcile judges the spec this way before any Azure call.
    let mut b: WorkloadIdentityBinding = serde_json::from_value(manifest)?;
    b.metadata.namespace = Some(env.ns.clone());
    let azure = Governed::new(Arc::new(idbind_testkit::arm_api(&env.sim, APP_ID, APP_SECRET)?), None, None);
    match dry_run(&azure, &settings(env.plane), ceiling, Some(rules), &b).await {
        DryRun::Invalid(problems) => {
            let found: Vec<(&str, &str)> =
                problems.iter().map(|p| (p.field.as_str(), p.reason.as_str())).collect();
            assert_eq!(found, [(FIELD, Reason::InvalidSpec.as_str())], "{problems:?}");
        }
        other => panic!("the operator would not refuse {scope:?}: {other:?}"),
    }
    assert_eq!(env.writes(), writes, "no Azure write");
    Ok(())
}

/// Only the resources of the team's own resource group, with the reader roles.
fn own_group() -> Value {
    json!([{"resourceGroup": TEAM_RG}])
}

#[tokio::test(flavor = "multi_thread")]
async fn another_teams_vault_spelled_as_an_access_policy_of_ones_own_is_refused() -> TestResult {
    let env = idbind_testkit::e2e::start_with("spelling-vault", Ceiling::default(), seed).await?;
    let rules = [policy(&env, own_group(), None)?];
    // Judged: kv-team/accessPolicies/x\..(8 times)\resourceGroups\rg-shop\...; sent: rg-shop's kv-shop.
    let to = format!("resourceGroups/{KV_RG}/providers/Microsoft.KeyVault/vaults/kv-shop");
    let scope = escape(&format!("{}/accessPolicies/x", team_vault()), 8, &to);
    refused(&env, &rules, &Ceiling::default(), &scope, &shop_vault(), &[SECRETS_USER]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn another_groups_storage_account_spelled_past_a_name_pattern_is_refused() -> TestResult {
    let env = idbind_testkit::e2e::start_with("spelling-storage", Ceiling::default(), seed).await?;
    // The README's selector: single resources in rg-data named shop*.
    let readme = json!([{"resourceGroup": DATA_RG,
        "resourceTypes": ["Microsoft.Storage/storageAccounts", "Microsoft.ServiceBus/namespaces"],
        "names": ["shop*"]}]);
    let rules = [policy(&env, readme, Some(&[BLOB_READER]))?];
    // Judged: a Storage account in rg-data whose name starts with "shop"; sent: rg-finance's account.
    let to = format!("{FINANCE_RG}/providers/Microsoft.Storage/storageAccounts/financedata");
    let scope = escape(&storage(DATA_RG, "shop"), 5, &to);
    refused(&env, &rules, &Ceiling::default(), &scope, &storage(FINANCE_RG, "financedata"), &[BLOB_READER])
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_subscription_spelled_as_a_resource_of_ones_own_group_is_refused() -> TestResult {
    let env = idbind_testkit::e2e::start_with("spelling-sub", Ceiling::default(), seed).await?;
    let rules = [policy(&env, own_group(), None)?];
    // Judged: an accessPolicies child of the team's vault; sent: the subscription.
    let scope = escape(&format!("{}/accessPolicies/x", team_vault()), 8, "");
    refused(&env, &rules, &Ceiling::default(), &scope, &format!("/subscriptions/{SUB}"), &[SECRETS_USER])
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn contributor_on_the_identities_group_spelled_as_ones_own_resource_is_refused() -> TestResult {
    let ceiling = Ceiling { allow_any_role: true, ..Ceiling::default() };
    let env = idbind_testkit::e2e::start_with("spelling-contrib", ceiling.clone(), seed).await?;
    // Contributor on the team's own resource group, as a whole and resource by resource.
    let own = json!([{"resourceGroup": TEAM_RG}, {"resourceGroup": TEAM_RG, "level": "ResourceGroup"}]);
    let rules = [policy(&env, own, Some(&["Contributor"]))?];
    // Judged: an accessPolicies child of the team's vault; sent: rg-identities, where every identity idbind
    // manages lives (Contributor there may write any team's federated credential).
    let scope = escape(&format!("{}/accessPolicies/x", team_vault()), 7, RG);
    refused(&env, &rules, &ceiling, &scope, &group(RG), &["Contributor"]).await
}

/// The status and the role assignment name the scope as Azure answered its GET (its casing), not as the
/// binding wrote it: what Azure shows is the proof of where the assignment is.
#[tokio::test(flavor = "multi_thread")]
async fn the_status_names_the_scope_azure_answered() -> TestResult {
    let azures = format!(
        "/subscriptions/{SUB}/resourceGroups/RG-Data/providers/Microsoft.Storage/storageAccounts/ShopData"
    );
    let seeded = azures.clone();
    let env = idbind_testkit::e2e::start_with("spelling-answer", Ceiling::default(), move |c| {
        if let Err(e) = c.seed.add_resource_id(&seeded) {
            panic!("seeding {seeded}: {e}");
        }
    })
    .await?;
    policy(&env, json!([{"resourceGroup": DATA_RG, "names": ["shop*"]}]), Some(&[BLOB_READER]))?;
    env.kubectl(&["create", "serviceaccount", "reader"])?;
    let written = azures.to_ascii_lowercase();
    env.apply(&binding("reader", &written, &[BLOB_READER]))?;
    env.wait_condition("reader", READY, "True", Reason::Reconciled, Duration::from_secs(90)).await?;
    let status =
        env.kubectl(&["get", "wib", "reader", "-o", "jsonpath={.status.roleAssignments[*].scope}"])?;
    assert_eq!(status, azures);
    let state = env.sim.state_typed();
    let workload =
        idbind_testkit::azure_rbac::workload_assignments(&state, idbind_testkit::e2e::APP_OBJECT_ID);
    let scopes: Vec<&str> = workload.iter().map(|ra| ra.scope.as_str()).collect();
    assert_eq!(scopes, [azures.as_str()], "the assignment is made at the id Azure answered");
    Ok(())
}
