//! Roles on any Azure resource (`spec.azureRoles`), end to end on the real API server and the simulator: a
//! binding with a Storage account and a Service Bus namespace converges with exactly those assignments, an
//! edit changes exactly the difference, deletion removes them; every case the default refuses (a write role,
//! Owner, a resource group or subscription scope, another subscription) is refused with its reason and no
//! Azure write, a scope that does not exist stalls with `ScopeNotFound` and no write, and a policy that
//! allows each case lets it through.

use std::time::Duration;

use idbind::core::conditions::READY;
use idbind::core::reason::Reason;
use idbind::core::settings::Ceiling;
use idbind_sim::SimConfig;
use idbind_testkit::{
    azure_rbac,
    e2e::{APP_OBJECT_ID, Env, SUB, TestError, TestResult, eventually, identities, start_with},
    steps::step,
};
use serde_json::{Value, json};

const DATA_RG: &str = "rg-data";
/// A second subscription, with a Storage account of its own.
const OTHER_SUB: &str = "00000000-0000-0000-0000-0000000000e3";
const BLOB_READER: &str = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1";
const BLOB_CONTRIBUTOR: &str = "ba92f5b4-2d11-453d-a403-e96b0029c9fe";
const QUEUE_READER: &str = "19e7f393-937e-4f77-808e-94535e297925";
const BUS_RECEIVER: &str = "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0";
const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";

fn group(sub: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{DATA_RG}")
}

fn storage(sub: &str) -> String {
    format!("{}/providers/Microsoft.Storage/storageAccounts/shopdata", group(sub))
}

fn bus() -> String {
    format!("{}/providers/Microsoft.ServiceBus/namespaces/shop-bus", group(SUB))
}

/// Azure with a Storage account and a Service Bus namespace in rg-data, and a Storage account of the same
/// name in another subscription.
fn seed_data(config: &mut SimConfig) {
    for id in [storage(SUB), bus(), storage(OTHER_SUB)] {
        if let Err(e) = config.seed.add_resource_id(&id) {
            panic!("seeding {id}: {e}");
        }
    }
}

fn binding(name: &str, azure_roles: &[(&str, &[&str])]) -> Value {
    let entries: Vec<Value> =
        azure_roles.iter().map(|(scope, roles)| json!({"scope": scope, "roles": roles})).collect();
    json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": name},
           "spec": {"serviceAccountName": name, "azureRoles": entries}})
}

/// The (scope in lowercase, role GUID) of every role assignment the simulator holds for binding `name`'s
/// identity, sorted; empty when the identity is gone.
fn assignments_of(env: &Env, name: &str) -> Vec<(String, String)> {
    let state = env.sim.state_typed();
    let binding_tag = |i: &idbind_sim::state::Identity| {
        i.tags.get("idbind.dev.namespace") == Some(&env.ns)
            && i.tags.get("idbind.dev.binding").map(String::as_str) == Some(name)
    };
    let Some(identity) = identities(&state).into_iter().find(binding_tag) else {
        return Vec::new();
    };
    let mut found: Vec<(String, String)> = state
        .role_assignments
        .values()
        .filter(|ra| ra.principal_id == identity.principal_id)
        .map(|ra| (ra.scope.to_ascii_lowercase(), ra.role_definition_guid.clone()))
        .collect();
    found.sort();
    found
}

fn expected(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut want: Vec<(String, String)> =
        pairs.iter().map(|(scope, role)| (scope.to_ascii_lowercase(), role.to_string())).collect();
    want.sort();
    want
}

async fn ready(env: &Env, name: &str) -> TestResult {
    env.wait_condition(name, READY, "True", Reason::Reconciled, Duration::from_secs(90)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn storage_and_service_bus_scopes_converge_follow_edits_and_go_with_the_binding() -> TestResult {
    let env = start_with("azroles-life", Ceiling::default(), seed_data).await?;
    // The team's policy: rg-data's resources, with the readers and, named, the Service Bus receiver (which
    // settles what it receives, so no policy allows it without naming it).
    data_policy(
        &env,
        &["Storage Blob Data Reader", "Storage Queue Data Reader", "Azure Service Bus Data Receiver"],
    )?;
    env.kubectl(&["create", "serviceaccount", "orders"])?;
    let (storage, bus) = (storage(SUB), bus());

    step("converges with exactly the assignments asked for", async {
        env.apply(&binding(
            "orders",
            &[(&storage, &["Storage Blob Data Reader"]), (&bus, &["azure service bus data receiver"])],
        ))?;
        ready(&env, "orders").await?;
        assert_eq!(
            assignments_of(&env, "orders"),
            expected(&[(&storage, BLOB_READER), (&bus, BUS_RECEIVER)])
        );
        // The status records each assignment with its scope and the role as written.
        let roles =
            env.kubectl(&["get", "wib", "orders", "-o", "jsonpath={.status.roleAssignments[*].role}"])?;
        assert_eq!(roles, "Storage Blob Data Reader azure service bus data receiver");
        Ok(())
    })
    .await?;

    step("an edit changes exactly the difference", async {
        let writes = env.writes();
        let creates = env.sim.counters().total("RoleAssignments_Create");
        let deletes = env.sim.counters().total("RoleAssignments_Delete");
        env.apply(&binding("orders", &[(&storage, &["Storage Blob Data Reader", QUEUE_READER])]))?;
        eventually("the edit in Azure", Duration::from_secs(60), || {
            Ok((assignments_of(&env, "orders")
                == expected(&[(&storage, BLOB_READER), (&storage, QUEUE_READER)]))
            .then_some(()))
        })
        .await?;
        ready(&env, "orders").await?;
        let counters = env.sim.counters();
        assert_eq!(
            (
                counters.total("RoleAssignments_Create") - creates,
                counters.total("RoleAssignments_Delete") - deletes
            ),
            (1, 1),
            "one assignment created (the queue reader), one deleted (the bus receiver)"
        );
        assert_eq!(env.writes() - writes, 2, "nothing else written");
        Ok(())
    })
    .await?;

    step("the assignments go with the binding", async {
        env.kubectl(&["delete", "wib", "orders", "--wait=true", "--timeout=60s"])?;
        let state = env.sim.state_typed();
        assert!(identities(&state).is_empty(), "the identity idbind created is deleted");
        let left = azure_rbac::workload_assignments(&state, APP_OBJECT_ID);
        assert!(
            left.iter().all(|ra| !ra.scope.to_ascii_lowercase().contains("/resourcegroups/rg-data")),
            "no assignment left on rg-data or its resources: {:?}",
            left.iter().map(|ra| &ra.scope).collect::<Vec<_>>()
        );
        Ok(())
    })
    .await
}

/// A policy selecting the test's namespace that allows rg-data's single resources with `roles`.
fn data_policy(env: &Env, roles: &[&str]) -> TestResult {
    let policy = json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityPolicy",
        "metadata": {"name": format!("{}-team", env.ns)},
        "spec": {"namespaces": [env.ns], "azureScopes": [{"resourceGroup": DATA_RG}], "roles": roles}});
    idbind_testkit::e2e::apply_cluster(env.plane, &policy)
}

/// The cases the default refuses, each in a binding of its own: (binding, azureRoles entry, the field the
/// refusal names).
fn refused_cases() -> Vec<(&'static str, String, Vec<&'static str>, &'static str)> {
    vec![
        ("write-role", storage(SUB), vec!["Storage Blob Data Contributor"], "spec.azureRoles[0].roles[0]"),
        ("owner", storage(SUB), vec!["Owner"], "spec.azureRoles[0].roles[0]"),
        ("group", group(SUB), vec!["Storage Blob Data Reader"], "spec.azureRoles[0].scope"),
        ("subscription", format!("/subscriptions/{SUB}"), vec!["Reader"], "spec.azureRoles[0].roles[0]"),
        ("other-sub", storage(OTHER_SUB), vec!["Storage Blob Data Reader"], "spec.azureRoles[0].scope"),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn default_refusals_write_nothing_and_a_policy_lets_each_through() -> TestResult {
    // Refused by default: the operator with its shipped flags, and a team policy giving the namespace
    // rg-data's single resources with the reader roles.
    let env = start_with("azroles-refuse", Ceiling::default(), seed_data).await?;
    data_policy(&env, &["Storage Blob Data Reader"])?;
    step("each default-refused case: PolicyViolation naming its field, an Event, no Azure write", async {
        let writes = env.writes();
        for (name, scope, roles, _) in refused_cases() {
            env.kubectl(&["create", "serviceaccount", name])?;
            env.apply(&binding(name, &[(&scope, &roles)]))?;
        }
        for (name, _, _, field) in refused_cases() {
            env.wait_condition(name, READY, "False", Reason::PolicyViolation, Duration::from_secs(60))
                .await?;
            let message = env.message(name, READY)?;
            assert!(message.contains(field), "{name}: {message}");
            let events = env.kubectl(&[
                "get",
                "events",
                "--field-selector",
                &format!("involvedObject.name={name}"),
                "-o",
                "jsonpath={.items[*].reason}",
            ])?;
            assert!(events.contains(Reason::PolicyViolation.as_str()), "{name}: events {events}");
        }
        assert_eq!(env.writes(), writes, "no Azure write for a refused binding");
        Ok(())
    })
    .await?;

    step("a scope that does not exist: ScopeNotFound, no Azure write", async {
        let writes = env.writes();
        let missing = format!("{}/providers/Microsoft.Storage/storageAccounts/nosuchaccount", group(SUB));
        let unknown_type = format!("{}/providers/Microsoft.Storage/noSuchType/x", group(SUB));
        for (name, scope) in [("missing", &missing), ("unknown-type", &unknown_type)] {
            env.kubectl(&["create", "serviceaccount", name])?;
            env.apply(&binding(name, &[(scope, &["Storage Blob Data Reader"])]))?;
            env.wait_condition(name, READY, "False", Reason::ScopeNotFound, Duration::from_secs(60)).await?;
        }
        assert_eq!(env.writes(), writes);
        Ok(())
    })
    .await?;

    // Let through: an operator whose flags allow any role and other subscriptions, and a policy that allows
    // each case for this namespace.
    let ceiling = Ceiling { allow_any_role: true, allow_other_subscriptions: true, ..Ceiling::default() };
    let env = start_with("azroles-allow", ceiling, |config| {
        seed_data(config);
        // The administrator who writes this policy lets idbind hand out its roles too, up to the whole
        // subscription (README step 3: the condition lists the roles policies allow).
        let roles = [BLOB_READER, BLOB_CONTRIBUTOR, OWNER, READER].map(String::from);
        let wider = config.seed.assign(
            APP_OBJECT_ID,
            azure_rbac::RBAC_ADMINISTRATOR,
            &format!("/subscriptions/{SUB}"),
        );
        wider.condition = Some(azure_rbac::delegation_condition(&roles));
    })
    .await?;
    step("without a policy the namespace binds nothing; with one, each case converges", async {
        for (name, scope, roles, _) in refused_cases() {
            env.kubectl(&["create", "serviceaccount", name])?;
            env.apply(&binding(name, &[(&scope, &roles)]))?;
            env.wait_condition(name, READY, "False", Reason::PolicyViolation, Duration::from_secs(60))
                .await?;
        }
        let policy = json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityPolicy",
            "metadata": {"name": format!("{}-data", env.ns)},
            "spec": {"namespaces": [env.ns], "azureScopes": [
                {"resourceGroup": DATA_RG, "resourceTypes": ["Microsoft.Storage/storageAccounts"]},
                {"resourceGroup": DATA_RG, "subscriptionId": OTHER_SUB},
                {"resourceGroup": DATA_RG, "level": "ResourceGroup"},
                {"level": "Subscription"}],
              "roles": ["Storage Blob Data Contributor", "Owner", "Storage Blob Data Reader", "Reader"]}});
        idbind_testkit::e2e::apply_cluster(env.plane, &policy)?;
        let want = [
            ("write-role", storage(SUB), BLOB_CONTRIBUTOR),
            ("owner", storage(SUB), OWNER),
            ("group", group(SUB), BLOB_READER),
            ("subscription", format!("/subscriptions/{SUB}"), READER),
            ("other-sub", storage(OTHER_SUB), BLOB_READER),
        ];
        for (name, scope, role) in want {
            ready(&env, name).await?;
            assert_eq!(assignments_of(&env, name), expected(&[(&scope, role)]), "{name}");
        }
        Ok(())
    })
    .await?;

    step("an assignment in another subscription goes when the spec drops it, and with the binding", async {
        let in_other = |env: &Env| {
            let state = env.sim.state_typed();
            let prefix = format!("/subscriptions/{OTHER_SUB}/").to_ascii_lowercase();
            azure_rbac::workload_assignments(&state, APP_OBJECT_ID)
                .into_iter()
                .filter(|ra| ra.scope.to_ascii_lowercase().starts_with(&prefix))
                .count()
        };
        assert_eq!(in_other(&env), 1);
        let here = storage(SUB);
        env.apply(&binding("other-sub", &[(&here, &["Storage Blob Data Reader"])]))?;
        eventually("the other subscription's assignment removed", Duration::from_secs(60), || {
            Ok((assignments_of(&env, "other-sub") == expected(&[(&here, BLOB_READER)])).then_some(()))
        })
        .await?;
        assert_eq!(in_other(&env), 0);
        // Back there, then the binding deleted: the cleanup finds it through the spec and the status.
        env.apply(&binding("other-sub", &[(&storage(OTHER_SUB), &["Storage Blob Data Reader"])]))?;
        eventually(
            "the assignment back",
            Duration::from_secs(60),
            || Ok((in_other(&env) == 1).then_some(())),
        )
        .await?;
        ready(&env, "other-sub").await?;
        env.kubectl(&["delete", "wib", "other-sub", "--wait=true", "--timeout=60s"])?;
        assert_eq!(in_other(&env), 0, "the binding's assignment in the other subscription is gone with it");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_refuses_a_malformed_scope_and_a_scope_listed_twice() -> TestResult {
    let env = start_with("azroles-schema", Ceiling::default(), seed_data).await?;
    let storage = storage(SUB);
    for (what, manifest) in [
        ("not an id", binding("bad", &[("shopdata", &["Storage Blob Data Reader"])])),
        (
            "a management group",
            binding("bad", &[("/providers/Microsoft.Management/managementGroups/mg", &["Reader"])]),
        ),
        (
            "twice",
            binding(
                "bad",
                &[(&storage, &["Storage Blob Data Reader"]), (&storage.to_uppercase(), &["AcrPull"])],
            ),
        ),
    ] {
        let refused = env.apply(&manifest);
        assert!(refused.is_err(), "{what}: accepted");
    }
    assert_eq!(env.kubectl(&["get", "wib", "-o", "name"])?, "", "nothing was created");
    Ok::<(), TestError>(())
}
