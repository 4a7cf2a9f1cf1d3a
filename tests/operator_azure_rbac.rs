//! idbind's Azure permissions, proven against a simulator that authorizes every ARM request from role
//! assignments (as Azure does):
//!
//! - The operator's identity holds exactly the roles README "Install on AKS" step 3 lists, and a binding that
//!   needs every one of them (an RBAC vault, an access-policy vault, a Storage account) converges with no
//!   request refused; with any one of those roles taken away, the binding reports `AuthorizationFailed`
//!   naming an action that role gave, and converges once the role is back.
//! - The delegation condition on Role Based Access Control Administrator is what limits the operator: a role
//!   idbind's own policy allows but the condition does not list is refused by Azure.
//! - A tenant's workload, signed in with its federated token, may do in ARM only what its role assignments
//!   allow: not assign roles, not write another identity's federated credential, not delete a vault.
//! - README's commands create exactly what these tests seed: the custom role's actions, the condition and its
//!   roles.

use std::time::Duration;

use idbind::core::conditions::READY;
use idbind::core::reason::Reason;
use idbind::{
    azure::{AzureApi, FederatedCredential},
    core::{resource_id::ResourceId, settings::Ceiling},
};
use idbind_sim::{Seed, SeedRoleDefinition, SimConfig, state::RolePermission};
use idbind_testkit::{
    azure_rbac::{
        self, IDBIND_READER, IDBIND_READER_ACTIONS, KEY_VAULT_CONTRIBUTOR, MANAGED_IDENTITY_CONTRIBUTOR,
        RBAC_ADMINISTRATOR,
    },
    e2e::{
        APP_OBJECT_ID, Env, KV_RG, RG, SECRETS_USER, SUB, TestError, TestResult, apply_cluster, eventually,
        identities, install_operator_rbac, start_with, start_without_operator,
    },
    process::Operator,
    steps::step,
};
use serde_json::json;

const DATA_RG: &str = "rg-data";
const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";

fn storage() -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{DATA_RG}/providers/Microsoft.Storage/storageAccounts/stshop"
    )
}

/// A custom role, whose name idbind can only resolve through ARM's role definitions.
const CUSTOM_ROLE: &str = "Shop Secrets Reader";

/// Besides the harness's kv-shop: an access-policy vault beside it, a Storage account in rg-data, and a
/// custom role.
fn world(config: &mut SimConfig) {
    config.seed.add_vault(SUB, KV_RG, "kv-legacy", false);
    if let Err(e) = config.seed.add_resource_id(&storage()) {
        panic!("seeding {}: {e}", storage());
    }
    config.seed.role_definitions.push(SeedRoleDefinition {
        name: "5ec7e75e-0000-4000-8000-000000000001".into(),
        role_name: CUSTOM_ROLE.into(),
        permissions: vec![RolePermission {
            data_actions: vec!["Microsoft.KeyVault/vaults/secrets/getSecret/action".into()],
            ..Default::default()
        }],
        assignable_scopes: vec![format!("/subscriptions/{SUB}")],
        ..Default::default()
    });
}

/// A policy for the test's namespace: the vaults of rg-shop, Storage accounts in rg-data, and `roles`.
fn policy(env: &Env, roles: &[&str]) -> TestResult {
    apply_cluster(
        env.plane,
        &json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityPolicy",
            "metadata": {"name": format!("{}-azure-rbac", env.ns)},
            "spec": {"namespaces": [env.ns], "keyVaults": [{"resourceGroup": KV_RG}],
                     "azureScopes": [{"resourceGroup": DATA_RG, "resourceTypes": ["Microsoft.Storage/storageAccounts"]}],
                     "roles": roles}}),
    )
}

/// A binding that needs each of the operator's roles: an identity (Managed Identity Contributor), a role on
/// an RBAC vault and on a Storage account (Role Based Access Control Administrator; the custom reader for
/// role names, provider versions and the subscription's assignment list), an access policy (Key Vault
/// Contributor, when `access_policy`).
fn every_role(name: &str, access_policy: bool) -> serde_json::Value {
    let mut vaults =
        vec![json!({"name": "kv-shop", "resourceGroup": KV_RG, "roles": ["Key Vault Secrets User"]})];
    if access_policy {
        vaults
            .push(json!({"name": "kv-legacy", "resourceGroup": KV_RG, "roles": ["Key Vault Secrets User"]}));
    }
    json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": name},
        "spec": {"serviceAccountName": name, "keyVaults": vaults,
                 "azureRoles": [{"scope": storage(), "roles": ["Storage Blob Data Reader"]}]}})
}

/// Its ServiceAccount and the binding [`every_role`], with the access policy.
fn needs_every_role(env: &Env, name: &str) -> TestResult {
    env.kubectl(&["create", "serviceaccount", name])?;
    env.apply(&every_role(name, true))
}

/// ARM's refusals so far, over every operation.
fn refusals(env: &Env) -> u64 {
    env.sim.counters().0.values().map(|by_status| by_status.get("403").copied().unwrap_or(0)).sum()
}

/// The operator's role assignments as (role name, scope in lowercase, has a condition), sorted.
fn operator_roles(env: &Env) -> Vec<(String, String, bool)> {
    let state = env.sim.state_typed();
    let mut held: Vec<(String, String, bool)> = state
        .role_assignments
        .values()
        .filter(|ra| ra.principal_id.eq_ignore_ascii_case(APP_OBJECT_ID))
        .map(|ra| {
            let role = state.role_definitions.get(&ra.role_definition_guid).map(|d| d.role_name.clone());
            (role.unwrap_or_default(), ra.scope.to_ascii_lowercase(), ra.condition.is_some())
        })
        .collect();
    held.sort();
    held
}

/// `idbind run` as its pod runs it, fresh (no cache of role names, provider versions or assignment lists from
/// an earlier run), allowed any role by its flags so that only Azure limits it.
fn operator(env: &Env, run: &str) -> Result<Operator, TestError> {
    Operator::start(env, run, &[("IDBIND_ALLOW_ANY_ROLE", "true")])
}

#[tokio::test(flavor = "multi_thread")]
async fn every_azure_role_of_the_readme_is_needed_and_enough() -> TestResult {
    let env = start_without_operator("azure-rbac", world).await?;
    install_operator_rbac(env.plane, &env.ns, &[])?;
    policy(
        &env,
        &[
            "Key Vault Secrets User",
            "Storage Blob Data Reader",
            "Key Vault Certificates Officer",
            CUSTOM_ROLE,
        ],
    )?;

    step("the operator holds exactly README's roles, and they are enough", async {
        let group = |rg: &str| format!("/subscriptions/{SUB}/resourcegroups/{rg}");
        let mut expected = vec![
            (IDBIND_READER.to_string(), format!("/subscriptions/{SUB}"), false),
            (
                KEY_VAULT_CONTRIBUTOR.to_string(),
                format!("{}/providers/microsoft.keyvault/vaults/kv-legacy", group(KV_RG)),
                false,
            ),
            (MANAGED_IDENTITY_CONTRIBUTOR.to_string(), group(RG), false),
            (RBAC_ADMINISTRATOR.to_string(), group(DATA_RG), true),
            (RBAC_ADMINISTRATOR.to_string(), group(KV_RG), true),
        ];
        expected.sort();
        assert_eq!(operator_roles(&env), expected);
        let refused = refusals(&env);
        let operator = operator(&env, "full")?;
        needs_every_role(&env, "full")?;
        env.kubectl(&["wait", "--for=condition=Ready", "--timeout=120s", "wib/full"])
            .map_err(|e| format!("{e}\n{}", operator.log_text()))?;
        assert_eq!(refusals(&env), refused, "Azure refused the operator something: {:?}", env.sim.counters());
        operator.kill()?;
        Ok(())
    })
    .await?;

    // Each role taken away in turn (all of its assignments), from a freshly started operator: the binding
    // says which action Azure refused, one that only that role gave, and converges once the administrator
    // gives the role back.
    let cases: [(&str, &[&str]); 4] = [
        (
            MANAGED_IDENTITY_CONTRIBUTOR,
            &[
                "Microsoft.ManagedIdentity/userAssignedIdentities/read",
                "Microsoft.ManagedIdentity/userAssignedIdentities/write",
            ],
        ),
        (
            RBAC_ADMINISTRATOR,
            &[
                "Microsoft.KeyVault/vaults/read",
                "Microsoft.Storage/storageAccounts/read",
                "Microsoft.Authorization/roleAssignments/write",
            ],
        ),
        (
            IDBIND_READER,
            &[
                "Microsoft.Authorization/roleDefinitions/read",
                "Microsoft.Authorization/roleAssignments/read",
                "Microsoft.Resources/subscriptions/providers/read",
            ],
        ),
        (KEY_VAULT_CONTRIBUTOR, &["Microsoft.KeyVault/vaults/accessPolicies/write"]),
    ];
    for (i, (role, actions)) in cases.into_iter().enumerate() {
        let name = format!("minus-{i}");
        step(&format!("without {role}"), async {
            let restore = azure_rbac::revoke(&env, APP_OBJECT_ID, role, None).await?;
            let operator = operator(&env, &name)?;
            needs_every_role(&env, &name)?;
            env.wait_condition(&name, READY, "False", Reason::AuthorizationFailed, Duration::from_secs(90))
                .await
                .map_err(|e| format!("{e}\n{}", operator.log_text()))?;
            let message = env.message(&name, READY)?;
            assert!(
                actions.iter().any(|a| message.contains(&format!("'{a}'"))),
                "{name}: the refusal names none of {actions:?}: {message}"
            );
            env.sim.seed(restore).await?;
            env.kubectl(&["wait", "--for=condition=Ready", "--timeout=180s", &format!("wib/{name}")])
                .map_err(|e| format!("{e}\n{}", operator.log_text()))?;
            operator.kill()?;
            Ok(())
        })
        .await?;
    }

    // The custom role holds nothing idbind does without: with any one of its actions left out, an edit of the
    // binding that has everything is refused that action. An edit resolves its role names (the custom role's
    // through ARM; built-in names idbind knows) and its scopes' api-versions again, then lists the identity's
    // assignments to see what to add or remove.
    for (j, missing) in IDBIND_READER_ACTIONS.iter().enumerate() {
        step(&format!("idbind Reader without {missing}"), async {
            let restore = azure_rbac::revoke(&env, APP_OBJECT_ID, IDBIND_READER, None).await?;
            let partial_role = format!("idbind Reader without {missing}");
            let mut partial = Seed::default();
            partial.role_definitions.push(SeedRoleDefinition {
                name: format!("1db1d5ea-0000-4000-8000-0000000001{j:02}"),
                role_name: partial_role.clone(),
                permissions: vec![RolePermission {
                    actions: IDBIND_READER_ACTIONS
                        .iter()
                        .filter(|a| *a != missing)
                        .map(|a| (*a).to_string())
                        .collect(),
                    ..Default::default()
                }],
                assignable_scopes: vec![format!("/subscriptions/{SUB}")],
                ..Default::default()
            });
            partial.assign(APP_OBJECT_ID, &partial_role, &format!("/subscriptions/{SUB}"));
            env.sim.seed(partial).await?;
            let run = format!("reader-{j}");
            let operator = operator(&env, &run)?;
            let mut edit = every_role("full", false);
            if *missing == "Microsoft.Authorization/roleDefinitions/read" {
                edit["spec"]["keyVaults"][0]["roles"] = json!(["Key Vault Secrets User", CUSTOM_ROLE]);
            }
            env.apply(&edit)?;
            env.wait_condition("full", READY, "False", Reason::AuthorizationFailed, Duration::from_secs(90))
                .await
                .map_err(|e| format!("{e}\n{}", operator.log_text()))?;
            let message = env.message("full", READY)?;
            assert!(
                message.contains(&format!("'{missing}'")),
                "{run}: the refusal is not of {missing}: {message}"
            );
            azure_rbac::revoke(&env, APP_OBJECT_ID, &partial_role, None).await?;
            env.sim.seed(restore).await?;
            env.apply(&every_role("full", true))?;
            env.kubectl(&["wait", "--for=condition=Ready", "--timeout=180s", "wib/full"])
                .map_err(|e| format!("{e}\n{}", operator.log_text()))?;
            operator.kill()?;
            Ok(())
        })
        .await?;
    }

    step("a role the delegation condition does not list is refused by Azure", async {
        // The flags and idbind's policy allow Key Vault Certificates Officer; the administrator's condition
        // does not list it.
        let operator = operator(&env, "officer")?;
        env.kubectl(&["create", "serviceaccount", "officer"])?;
        env.apply(&json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": "officer"},
            "spec": {"serviceAccountName": "officer",
                     "keyVaults": [{"name": "kv-shop", "resourceGroup": KV_RG, "roles": ["Key Vault Certificates Officer"]}]}}))?;
        env.wait_condition("officer", READY, "False", Reason::AuthorizationFailed, Duration::from_secs(90)).await?;
        let message = env.message("officer", READY)?;
        assert!(
            message.contains("an ABAC condition not fulfilled")
                && message.contains("'Microsoft.Authorization/roleAssignments/write'"),
            "{message}"
        );
        // Cleanup: the bindings go (the officer's with nothing assigned), so their finalizers are released.
        env.kubectl(&["delete", "wib", "--all", "--wait=false"])?;
        eventually("every binding deleted", Duration::from_secs(120), || {
            Ok(env.kubectl(&["get", "wib", "-o", "name"])?.trim().is_empty().then_some(()))
        })
        .await
        .map_err(|e| format!("{e}\n{}", operator.log_text()))?;
        operator.kill()?;
        Ok(())
    })
    .await
}

/// Signs in as the workload of `ns/sa`, once its federated credential has reached Entra (the first exchanges
/// may be AADSTS70021): the sign-in is proven by ARM refusing a read for lack of a role, not of a token.
async fn signed_in(
    env: &Env,
    ns: &str,
    sa: &str,
    own: &ResourceId,
) -> Result<azure_rbac::WorkloadArm, TestError> {
    let workload = azure_rbac::WorkloadArm::sign_in(env, ns, sa)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match workload.api.get_identity(own).await {
            Err(e) if e.reason() == Reason::AuthorizationFailed => return Ok(workload),
            other if std::time::Instant::now() > deadline => {
                return Err(format!("the workload did not sign in to ARM: {other:?}").into());
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenants_identity_may_not_write_in_arm_what_it_was_not_granted() -> TestResult {
    let env = start_with("azure-rbac-tenant", Ceiling::default(), |_| {}).await?;
    policy(&env, &["Key Vault Secrets User"])?;
    env.ready_binding("app", &["Key Vault Secrets User"])?;
    env.ready_binding("neighbour", &["Key Vault Secrets User"])?;
    let state = env.sim.state_typed();
    let identity_of = |sa: &str| {
        identities(&state)
            .into_iter()
            .find(|i| {
                i.federated_identity_credentials.values().any(|f| f.subject.ends_with(&format!(":{sa}")))
            })
            .ok_or_else(|| format!("no identity trusts {sa}"))
    };
    let app = identity_of("app")?;
    let neighbour = identity_of("neighbour")?;
    let id = |name: &str| -> Result<ResourceId, TestError> {
        Ok(format!(
            "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
        )
        .parse()?)
    };
    let kv_shop: ResourceId =
        format!("/subscriptions/{SUB}/resourceGroups/{KV_RG}/providers/Microsoft.KeyVault/vaults/kv-shop")
            .parse()?;
    let before = env.sim.state_typed();
    let workload = signed_in(&env, &env.ns, "app", &id(&app.name)?).await?;

    // Every refusal is ARM's, to this identity, for the action it tried.
    let refused = |what: &str, result: Result<(), idbind::azure::AzureError>, action: &str| {
        let err = result.err().ok_or_else(|| format!("{what} went through"))?;
        let text = err.to_string();
        if err.reason() != Reason::AuthorizationFailed
            || !text.contains(&app.principal_id)
            || !text.contains(action)
        {
            return Err(format!("{what}: not ARM's refusal of {action} to {}: {text}", app.principal_id));
        }
        Ok::<(), String>(())
    };
    refused(
        "Owner on the vault for itself",
        workload
            .api
            .create_role_assignment(
                &kv_shop,
                "0e0e0e0e-0000-4000-8000-000000000001",
                OWNER,
                &app.principal_id,
            )
            .await,
        "Microsoft.Authorization/roleAssignments/write",
    )?;
    refused(
        "Key Vault Secrets User on the whole subscription",
        workload
            .api
            .create_role_assignment(
                &ResourceId::subscription_scope(SUB),
                "0e0e0e0e-0000-4000-8000-000000000002",
                SECRETS_USER,
                &app.principal_id,
            )
            .await,
        "Microsoft.Authorization/roleAssignments/write",
    )?;
    let trust_me = FederatedCredential {
        name: "escalation".into(),
        issuer: env.plane.server().to_string(),
        subject: format!("system:serviceaccount:{}:app", env.ns),
        audiences: vec!["api://AzureADTokenExchange".into()],
    };
    refused(
        "a federated credential on the neighbour's identity",
        workload.api.put_federated_credential(&id(&neighbour.name)?, &trust_me).await,
        "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write",
    )?;
    let delete = workload.call(reqwest::Method::DELETE, &format!("{kv_shop}?api-version=2023-07-01")).await?;
    assert_eq!((delete.status, delete.code.as_str()), (403, "AuthorizationFailed"), "{delete:?}");
    assert!(delete.message.contains("'Microsoft.KeyVault/vaults/delete'"), "{delete:?}");

    // Nothing changed in Azure: the same identities with the same credentials, the same role assignments, the
    // vault still there.
    let after = env.sim.state_typed();
    assert_eq!(identities(&after), identities(&before));
    assert_eq!(
        after.role_assignments.keys().collect::<Vec<_>>(),
        before.role_assignments.keys().collect::<Vec<_>>()
    );
    assert!(after.vault_by_name("kv-shop").is_some());
    Ok(())
}

/// The text of README's step 3 between `start` and the next line starting with `end`.
fn readme_value<'a>(readme: &'a str, start: &str, end: char) -> Result<&'a str, TestError> {
    let from = readme.find(start).ok_or_else(|| format!("README has no {start:?}"))? + start.len();
    let rest = &readme[from..];
    Ok(&rest[..rest.find(end).ok_or_else(|| format!("README's {start:?} does not end"))?])
}

#[test]
fn the_readme_creates_what_the_tests_seed() -> TestResult {
    let readme = std::fs::read_to_string(idbind_testenv::workspace_root().join("README.md"))?;
    // The custom role's actions, as `az role definition create` gets them.
    let actions = readme_value(&readme, "\"Actions\": [", ']')?;
    let actions: Vec<String> = actions.split(',').map(|a| a.trim().trim_matches('"').to_string()).collect();
    assert_eq!(actions, IDBIND_READER_ACTIONS);
    // The condition, with README's roles in it, is the one the tests give the operator.
    let roles: Vec<String> = readme_value(&readme, "ROLES=\"", '"')?.split(", ").map(String::from).collect();
    let condition = readme_value(&readme, "CONDITION=\"", '"')?.replace("$ROLES", &roles.join(", "));
    assert_eq!(condition, azure_rbac::delegation_condition(&roles));
    // README's roles and the further ones it names are the tests' delegable roles.
    let mut named: Vec<String> = roles.clone();
    let flowing = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    for further in
        ["Azure Service Bus Data Receiver", "Azure Event Hubs Data Receiver", "Key Vault Crypto User"]
    {
        let guid = azure_rbac::role_guid(further)?;
        assert!(flowing.contains(&format!("{further} `{guid}`")), "README does not name {further} `{guid}`");
        named.push(guid);
    }
    let in_readme_order = named.clone();
    let mut delegable = azure_rbac::DELEGABLE_ROLES
        .iter()
        .map(|r| azure_rbac::role_guid(r))
        .collect::<Result<Vec<_>, _>>()?;
    named.sort();
    delegable.sort();
    assert_eq!(named, delegable);
    // `make demo` gives its operator the same: README's condition with the roles the samples name.
    let demo = Seed::from_file(&idbind_testenv::workspace_root().join("hack/demo-azure-rbac.yaml"))?;
    demo.validate()?;
    let demo_sub = "/subscriptions/00000000-0000-0000-0000-000000000001";
    let mut demo_roles: Vec<(String, String)> =
        demo.role_assignments.iter().map(|a| (a.role.clone(), a.scope.replace(demo_sub, ""))).collect();
    demo_roles.sort();
    let group = |rg: &str| (RBAC_ADMINISTRATOR.to_string(), format!("/resourceGroups/{rg}"));
    let mut want = vec![
        (IDBIND_READER.to_string(), String::new()),
        (MANAGED_IDENTITY_CONTRIBUTOR.to_string(), "/resourceGroups/rg-identities".to_string()),
        group("rg-shop"),
        group("rg-crypto"),
        group("rg-reports"),
        group("rg-data"),
        group("rg-platform"),
    ];
    want.sort();
    assert_eq!(demo_roles, want);
    for a in demo.role_assignments.iter().filter(|a| a.role == RBAC_ADMINISTRATOR) {
        assert_eq!(a.condition.as_deref(), Some(azure_rbac::delegation_condition(&in_readme_order).as_str()));
    }
    // And the roles of the table are the ones the harness grants.
    for role in [MANAGED_IDENTITY_CONTRIBUTOR, RBAC_ADMINISTRATOR, KEY_VAULT_CONTRIBUTOR] {
        assert!(readme.contains(&format!("| {role}")), "{role} is not in README's table");
    }
    assert!(readme.contains(&format!("| `{IDBIND_READER}`")), "{IDBIND_READER} is not in README's table");
    Ok(())
}
