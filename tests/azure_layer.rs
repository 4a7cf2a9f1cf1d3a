//! The Azure layer (`idbind::azure`) against the ARM simulator over HTTPS: observe, execute the planner's
//! writes to convergence, steady state without writes, role edits, error classification of injected faults,
//! principalType against replication delay, role names.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use idbind::azure::arm::{ArmApi, Cloud, client_secret_credential, http_client};
use idbind::azure::budget::{Limits, SharedBudget};
use idbind::azure::governed::Governed;
use idbind::azure::{
    AzureApi, AzureError,
    access::{Fresh, FromArm, Observation, Writes},
};
use idbind::core::naming;
use idbind::core::reason::Reason;
use idbind::core::resource_id::{KEY_VAULT, ROLE_ASSIGNMENT, ResourceId, USER_ASSIGNED_IDENTITY};
use idbind::core::{
    grants::{self, role_assignments},
    plan::{self, Action, DesiredAzure, Federation, ManagedIdentity, Owner},
    removal::Release,
};
use idbind_sim::{FaultAction, FaultRule, Seed, SeedApp, SimConfig, SimHandle, Simulator};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const SUB: &str = "00000000-0000-0000-0000-0000000000a1";
const RG: &str = "rg-identities";
const KV_RG: &str = "rg-shop";
const APP_ID: &str = "11111111-1111-1111-1111-111111111111";
const APP_SECRET: &str = "operator-secret";
const OPERATOR_OID: &str = "22222222-2222-2222-2222-222222222222";
const SECRETS_USER: &str = "4633458b-17de-408a-b874-0445c86b69e6";
const CERT_USER: &str = "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba";
const READER: &str = "21090545-7ca7-4776-b22c-e363652d74d2";
const ISSUER: &str = "https://oidc.example/aks1/";

async fn start() -> Result<(SimHandle, ArmApi), Box<dyn std::error::Error + Send + Sync>> {
    let mut seed = Seed::default();
    seed.add_rg(SUB, RG, Some("westeurope".into()));
    seed.add_vault(SUB, KV_RG, "kv-rbac", true);
    seed.add_vault(SUB, KV_RG, "kv-policies", false);
    seed.apps.push(SeedApp {
        client_id: APP_ID.into(),
        client_secret: APP_SECRET.into(),
        object_id: Some(OPERATOR_OID.into()),
        display_name: Some("operator".into()),
    });
    // The operator's identity holds exactly the Azure roles README "Install on AKS" step 3 lists.
    let identities = [format!("/subscriptions/{SUB}/resourceGroups/{RG}")];
    idbind_testkit::azure_rbac::grant_operator_roles(&mut seed, OPERATOR_OID, &identities)?;
    idbind_testkit::azure_rbac::seed_administrator(&mut seed);
    let mut config = SimConfig::for_tests();
    config.seed = seed;
    let h = Simulator::start(config).await?;
    let api = idbind_testkit::arm_api(&h, APP_ID, APP_SECRET)?;
    Ok((h, api))
}

fn reqwest_client(h: &SimHandle) -> Result<reqwest::Client, Box<dyn std::error::Error + Send + Sync>> {
    let ca = reqwest::Certificate::from_pem(h.ca_pem().ok_or("no CA")?.as_bytes())?;
    Ok(reqwest::Client::builder().use_rustls_tls().add_root_certificate(ca).build()?)
}

/// An ARM token for a seeded app, through the simulator's Entra endpoint.
async fn arm_token(
    h: &SimHandle,
    app_id: &str,
    secret: &str,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let cloud = Cloud::Custom {
        arm_endpoint: h.https_url().ok_or("no HTTPS")?.to_string(),
        authority_host: h.authority_host().ok_or("no authority")?,
        audience: "https://management.azure.com".into(),
    };
    let credential = client_secret_credential(
        &cloud,
        http_client(h.ca_pem().map(str::as_bytes))?,
        h.tenant_id(),
        app_id,
        secret,
    )?;
    Ok(credential.get_token(&[cloud.scope().as_str()]).await?.token.secret().to_string())
}

fn vault(name: &str) -> ResourceId {
    ResourceId::resource_group_scope(SUB, KV_RG).provider_resource(KEY_VAULT, name)
}

fn identity_id(name: &str) -> ResourceId {
    ResourceId::resource_group_scope(SUB, RG).provider_resource(USER_ASSIGNED_IDENTITY, name)
}

fn desired(binding: &str, roles: &[&str]) -> DesiredAzure {
    let owner = Owner {
        cluster: "aks1".into(),
        namespace: "shop".into(),
        binding: binding.into(),
        uid: Some(format!("uid-of-{binding}")),
    };
    DesiredAzure {
        managed_identity: Some(ManagedIdentity {
            resource_id: identity_id(&naming::identity_name("aks1", "shop", binding)),
            location: "westeurope".into(),
            tags: BTreeMap::from([("team".to_string(), "shop".to_string())]),
        }),
        federation: Federation {
            name: naming::federated_credential_name("aks1", "shop", binding),
            issuer: ISSUER.into(),
            subject: format!("system:serviceaccount:shop:{binding}"),
        },
        grants: grants::Desired {
            role_assignments: role_assignments::Desired {
                wanted: roles
                    .iter()
                    .map(|r| role_assignments::Wanted { scope: vault("kv-rbac"), role_guid: r.to_string() })
                    .collect(),
                subscriptions: Vec::new(),
            },
            access_policies: Default::default(),
        },
        operator_client_id: None,
        owner,
    }
}

/// What a binding wanting `d` lets go through `identity`: everything it wanted, as what it may have made.
fn release(d: &DesiredAzure, identity: &ResourceId) -> Release {
    let wanted = &d.grants.role_assignments.wanted;
    let subscriptions = wanted.iter().filter_map(|w| w.scope.subscription().map(str::to_string)).collect();
    Release {
        owner: d.owner.clone(),
        identity: identity.clone(),
        managed: d.managed_identity.is_some(),
        federation: d.federation.clone(),
        grants: grants::Desired {
            role_assignments: role_assignments::Desired::letting_go(subscriptions),
            access_policies: d.grants.access_policies.clone(),
        },
        operator_client_id: d.operator_client_id.clone(),
    }
}

/// Whether `a` creates a role assignment.
fn creates_role(a: &Action) -> bool {
    matches!(a, Action::Grant(grants::Change::RoleAssignment(role_assignments::Change::Create { .. })))
}

fn id_of(d: &DesiredAzure) -> ResourceId {
    d.managed_identity.as_ref().map_or_else(|| identity_id("none"), |m| m.resource_id.clone())
}

/// Observe → plan → execute until the plan is empty; returns every action executed, per round.
async fn converge(
    api: &ArmApi,
    d: &DesiredAzure,
) -> Result<Vec<Vec<Action>>, Box<dyn std::error::Error + Send + Sync>> {
    let id = id_of(d);
    let mut rounds = Vec::new();
    // Identity first, then FIC and roles: two rounds of writes, a third to see nothing is left.
    for _ in 0..4 {
        let mut obs = Fresh::new(api).observe(&id, d).await?;
        let actions = plan::plan(d, &obs.azure)?;
        if actions.is_empty() {
            return Ok(rounds);
        }
        for a in &actions {
            Writes::new(api).apply(&id, &mut obs, a).await?;
        }
        rounds.push(actions);
    }
    Err("no convergence within 4 rounds".into())
}

fn role_guids(obs: &Observation<FromArm>) -> Vec<String> {
    let mut v: Vec<String> = obs
        .azure
        .grants
        .role_assignments
        .iter()
        .filter_map(|ra| ra.role_definition_id.rsplit('/').next().map(str::to_string))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn observe_on_empty_state_finds_nothing() -> TestResult {
    let (h, api) = start().await?;
    let d = desired("orders", &[SECRETS_USER]);
    let obs = Fresh::new(&api).observe(&id_of(&d), &d).await?;
    assert!(obs.is_empty(), "{obs:?}");
    assert_eq!(plan::plan(&d, &obs.azure)?.len(), 1, "only the identity can be planned first");
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_converges_and_steady_state_makes_no_writes() -> TestResult {
    let (h, api) = start().await?;
    let d = desired("orders", &[SECRETS_USER, CERT_USER]);
    let rounds = converge(&api, &d).await?;
    assert_eq!(rounds.len(), 2, "{rounds:?}");
    assert!(matches!(rounds[0].as_slice(), [Action::PutIdentity { .. }]));
    assert!(matches!(
        rounds[1].as_slice(),
        [
            Action::PutFederatedCredential { .. },
            Action::Grant(grants::Change::RoleAssignment(role_assignments::Change::Create { .. })),
            Action::Grant(grants::Change::RoleAssignment(role_assignments::Change::Create { .. }))
        ]
    ));

    let obs = Fresh::new(&api).observe(&id_of(&d), &d).await?;
    let ids = obs.ids.clone().ok_or("identity missing after convergence")?;
    assert_eq!(ids.tenant_id, h.tenant_id());
    assert!(!ids.client_id.is_empty() && !ids.principal_id.is_empty());
    assert_eq!(obs.azure.fic_count, 1);
    assert_eq!(
        obs.azure.fic.as_ref().map(|f| (f.issuer.as_str(), f.subject.as_str())),
        Some((ISSUER, "system:serviceaccount:shop:orders"))
    );
    let mut want = vec![SECRETS_USER.to_string(), CERT_USER.to_string()];
    want.sort();
    assert_eq!(role_guids(&obs), want);
    for ra in &obs.azure.grants.role_assignments {
        assert_eq!(
            ra.name,
            naming::role_assignment_name(&ra.scope, &ra.role_definition_id, &ids.principal_id).to_string()
        );
    }
    assert_eq!(plan::plan(&d, &obs.azure)?, vec![]);

    // A second observe in steady state: reads only.
    let before = h.counters();
    let again = Fresh::new(&api).observe(&id_of(&d), &d).await?;
    let after = h.counters();
    assert_eq!(again, obs);
    for op in idbind_sim::operations::write_operations() {
        assert_eq!(after.total(op), before.total(op), "{op} moved in steady state");
    }
    assert_eq!(
        after.total("UserAssignedIdentities_Get"),
        before.total("UserAssignedIdentities_Get") + 1,
        "the counters are live"
    );
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn editing_roles_changes_exactly_the_difference() -> TestResult {
    let (h, api) = start().await?;
    let d = desired("orders", &[SECRETS_USER, CERT_USER]);
    converge(&api, &d).await?;
    let kept = Fresh::new(&api)
        .observe(&id_of(&d), &d)
        .await?
        .azure
        .grants
        .role_assignments
        .into_iter()
        .find(|ra| ra.role_definition_id.ends_with(CERT_USER))
        .ok_or("cert user assignment missing")?;

    let edited = desired("orders", &[CERT_USER, READER]);
    let obs = Fresh::new(&api).observe(&id_of(&edited), &edited).await?;
    let actions = plan::plan(&edited, &obs.azure)?;
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert!(actions.iter().any(|a| matches!(a, Action::Grant(grants::Change::RoleAssignment(role_assignments::Change::Create { role_definition_guid, .. })) if role_definition_guid == READER)));
    assert!(actions.iter().any(|a| matches!(a, Action::Grant(grants::Change::RoleAssignment(role_assignments::Change::Delete { id })) if id.name() == Some(&naming::role_assignment_name(&vault("kv-rbac"), SECRETS_USER, obs.ids.as_ref().map(|i| i.principal_id.as_str()).unwrap_or_default()).to_string()))));
    let rounds = converge(&api, &edited).await?;
    assert_eq!(rounds, vec![actions]);

    let now = Fresh::new(&api).observe(&id_of(&edited), &edited).await?;
    let mut want = vec![CERT_USER.to_string(), READER.to_string()];
    want.sort();
    assert_eq!(role_guids(&now), want);
    assert!(now.azure.grants.role_assignments.contains(&kept), "the unchanged assignment was not recreated");
    h.shutdown().await?;
    Ok(())
}

/// A fault on the next call of `operation` only.
fn once(operation: &str, action: FaultAction) -> FaultRule {
    FaultRule { operation: operation.into(), action, rate: 1.0, times: Some(1) }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_injected_429_is_throttled_with_its_retry_after() -> TestResult {
    let (h, api) = start().await?;
    let d = desired("orders", &[]);
    h.set_faults(vec![once(
        "UserAssignedIdentities_Get",
        FaultAction::Error { status: 429, retry_after_secs: Some(7) },
    )]);
    let err = Fresh::new(&api).observe(&id_of(&d), &d).await.err().ok_or("the fault did not fire")?;
    assert_eq!(
        (err.reason(), err.retryable(), err.retry_after()),
        (Reason::Throttled, true, Some(Duration::from_secs(7))),
        "{err}"
    );
    assert!(
        matches!(&err, AzureError::Arm { operation: "UserAssignedIdentities_Get", status: 429, .. }),
        "{err:?}"
    );
    // The fault fired once; the next call goes through.
    assert!(Fresh::new(&api).observe(&id_of(&d), &d).await?.is_empty());
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_injected_503_is_a_retryable_server_error() -> TestResult {
    let (h, api) = start().await?;
    let d = desired("orders", &[]);
    h.set_faults(vec![once(
        "UserAssignedIdentities_CreateOrUpdate",
        FaultAction::Error { status: 503, retry_after_secs: None },
    )]);
    let Some(Action::PutIdentity { resource_id, location, tags }) =
        plan::plan(&d, &Default::default())?.into_iter().next()
    else {
        return Err("no identity planned".into());
    };
    let err = api.put_identity(&resource_id, &location, &tags).await.err().ok_or("the 503 did not fire")?;
    assert_eq!((err.reason(), err.retryable()), (Reason::AzureServerError, true), "{err}");
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_injected_dropped_connection_is_azure_unreachable() -> TestResult {
    let (h, api) = start().await?;
    h.set_faults(vec![once("RoleDefinitions_List", FaultAction::Drop)]);
    let err =
        api.resolve_role(&vault("kv-rbac"), "Key Vault Reader").await.err().ok_or("the drop did not fire")?;
    assert_eq!((err.reason(), err.retryable()), (Reason::AzureUnreachable, true), "{err}");
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn principal_type_avoids_principal_not_found_during_replication() -> TestResult {
    let (h, api) = start().await?;
    let mut behaviour = h.behaviour();
    // An hour on the simulator's clock: every principal created in this test is "unreplicated".
    behaviour.principal_replication_delay_ms = 3_600_000;
    h.set_behaviour(behaviour);
    let d = desired("fresh", &[SECRETS_USER]);
    let rounds = converge(&api, &d).await?;

    // The delay is in effect: the same kind of write without principalType is refused.
    let principal =
        Fresh::new(&api).observe(&id_of(&d), &d).await?.ids.ok_or("identity missing")?.principal_id;
    let http = reqwest_client(&h)?;
    // Written by the subscription's administrator, whose roles do not depend on the principal's type.
    let token =
        arm_token(&h, idbind_testkit::azure_rbac::ADMIN_APP_ID, idbind_testkit::azure_rbac::ADMIN_SECRET)
            .await?;
    let name = naming::role_assignment_name(&vault("kv-policies"), SECRETS_USER, &principal);
    let body = serde_json::json!({"properties": {"roleDefinitionId": format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{SECRETS_USER}"), "principalId": principal}});
    let url = format!(
        "{}{}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version=2022-04-01",
        h.https_url().unwrap_or_default(),
        vault("kv-policies")
    );
    let raw = http.put(url).bearer_auth(token).json(&body).send().await?;
    let status = raw.status().as_u16();
    let answer: serde_json::Value = raw.json().await?;
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("PrincipalNotFound")), "{answer}");
    assert_eq!(rounds.iter().flatten().filter(|a| creates_role(a)).count(), 1);
    assert_eq!(h.counters().get("RoleAssignments_Create", "400"), 1, "only the raw write was refused");
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn role_names_resolve_and_are_cached() -> TestResult {
    let (h, arm) = start().await?;
    let api = Governed::new(Arc::new(arm), Some(SharedBudget::new(Limits::default())), None);
    let scope = vault("kv-rbac");
    assert_eq!(api.resolve_role(&scope, "Key Vault Secrets User").await?, SECRETS_USER);
    let lists = h.counters().total("RoleDefinitions_List");
    assert_eq!(api.resolve_role(&scope, "key vault secrets user").await?, SECRETS_USER);
    assert_eq!(h.counters().total("RoleDefinitions_List"), lists, "served from the cache");
    let err = api.resolve_role(&scope, "Key Vault Wizard").await.err().ok_or("an unknown role resolved")?;
    assert!(matches!(&err, AzureError::RoleNotFound { role, .. } if role == "Key Vault Wizard"), "{err:?}");
    assert_eq!((err.reason(), err.retryable()), (Reason::RoleNotFound, false));
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn vaults_report_existence_and_permission_model() -> TestResult {
    let (h, api) = start().await?;
    assert_eq!(api.get_vault(&vault("kv-rbac")).await?.map(|v| v.rbac_authorization), Some(true));
    assert_eq!(api.get_vault(&vault("kv-policies")).await?.map(|v| v.rbac_authorization), Some(false));
    assert_eq!(api.get_vault(&vault("kv-missing")).await?, None);
    h.shutdown().await?;
    Ok(())
}

/// The name of a role assignment someone else made for the identity's principal on kv-rbac.
const FOREIGN_ASSIGNMENT: &str = "0f0f0f0f-0000-4000-8000-000000000000";

/// An identity as idbind observes it fresh (writes are only ever made from such an observation), and its
/// principal.
async fn observed_identity(
    api: &ArmApi,
) -> Result<(ResourceId, Observation<FromArm>, String), Box<dyn std::error::Error + Send + Sync>> {
    let d = desired("adopt", &[]);
    let identity = id_of(&d);
    api.put_identity(&identity, "westeurope", &BTreeMap::new()).await?;
    let observed = Fresh::new(api).observe(&identity, &d).await?;
    let principal =
        observed.ids.as_ref().map(|i| i.principal_id.clone()).ok_or("the identity was not found")?;
    Ok((identity, observed, principal))
}

/// idbind's creation of Secrets User for `principal` on `scope`, under idbind's own name for the trio.
fn create_ours(scope: &ResourceId, principal: &str) -> Action {
    Action::Grant(grants::Change::RoleAssignment(role_assignments::Change::Create {
        scope: scope.clone(),
        name: naming::role_assignment_name(scope, SECRETS_USER, principal).to_string(),
        role_definition_guid: SECRETS_USER.into(),
    }))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_assignment_under_another_name_is_reported_as_a_conflict() -> TestResult {
    let (h, api) = start().await?;
    let (identity, mut observed, principal) = observed_identity(&api).await?;
    let scope = vault("kv-rbac");
    api.create_role_assignment(&scope, FOREIGN_ASSIGNMENT, SECRETS_USER, &principal).await?;
    let err = Writes::new(&api)
        .apply(&identity, &mut observed, &create_ours(&scope, &principal))
        .await
        .err()
        .ok_or("a duplicate assignment was accepted")?;
    let foreign = FOREIGN_ASSIGNMENT;
    assert!(
        matches!(&err, AzureError::RoleAssignmentConflict { existing, .. } if existing.ends_with(foreign)),
        "{err:?}"
    );
    assert!(!err.retryable());
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_assignment_before_the_identity_has_a_principal_is_retryable() -> TestResult {
    let (h, api) = start().await?;
    // Without the identity's principal nothing can be assigned yet: retryable, not a crash.
    let d = desired("not-yet", &[]);
    let mut nothing = Fresh::new(&api).observe(&id_of(&d), &d).await?;
    let create = create_ours(&vault("kv-rbac"), "77777777-7777-7777-7777-777777777777");
    let err = Writes::new(&api)
        .apply(&id_of(&d), &mut nothing, &create)
        .await
        .err()
        .ok_or("an assignment without principal was accepted")?;
    assert_eq!((err.reason(), err.retryable()), (Reason::IdentityNotReady, true));
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn role_assignment_creates_and_deletes_are_idempotent_and_spare_others() -> TestResult {
    let (h, api) = start().await?;
    let (identity, mut observed, principal) = observed_identity(&api).await?;
    api.create_role_assignment(&vault("kv-rbac"), FOREIGN_ASSIGNMENT, SECRETS_USER, &principal).await?;
    let writes = Writes::new(&api);

    // Our own name for the trio: creating it again is a no-op success.
    let own_scope = vault("kv-policies");
    let own = naming::role_assignment_name(&own_scope, SECRETS_USER, &principal).to_string();
    let create = create_ours(&own_scope, &principal);
    writes.apply(&identity, &mut observed, &create).await?;
    writes.apply(&identity, &mut observed, &create).await?;

    let delete = Action::Grant(grants::Change::RoleAssignment(role_assignments::Change::Delete {
        id: own_scope.provider_resource(ROLE_ASSIGNMENT, &own),
    }));
    writes.apply(&identity, &mut observed, &delete).await?;
    writes.apply(&identity, &mut observed, &delete).await?;
    let left = api.list_role_assignments(&ResourceId::subscription_scope(SUB), &principal).await?;
    assert_eq!(left.iter().map(|ra| ra.name.as_str()).collect::<Vec<_>>(), vec![FOREIGN_ASSIGNMENT]);
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_identity_that_is_gone_is_done() -> TestResult {
    let (h, api) = start().await?;
    // Identity and FIC deletes: gone is reported as not found, which callers treat as done.
    let err = api.delete_identity(&identity_id("never-created")).await;
    assert!(err.as_ref().is_ok() || err.as_ref().is_err_and(AzureError::is_not_found), "{err:?}");
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_resource_group_is_a_permanent_refusal() -> TestResult {
    let (h, api) = start().await?;
    let missing_rg =
        ResourceId::resource_group_scope(SUB, "rg-missing").provider_resource(USER_ASSIGNED_IDENTITY, "x");
    // Where the operator was given no role, ARM does not say whether the group exists: AuthorizationFailed
    // ("…or the scope is invalid"), retried.
    let err = api.put_identity(&missing_rg, "westeurope", &BTreeMap::new()).await.err().ok_or("written")?;
    assert_eq!((err.reason(), err.retryable()), (Reason::AuthorizationFailed, true), "{err}");
    // With Managed Identity Contributor on the whole subscription, a group that does not exist: permanent.
    let mut seed = Seed::default();
    seed.assign(
        OPERATOR_OID,
        idbind_testkit::azure_rbac::MANAGED_IDENTITY_CONTRIBUTOR,
        &format!("/subscriptions/{SUB}"),
    );
    h.seed(seed).await?;
    let err = api
        .put_identity(&missing_rg, "westeurope", &BTreeMap::new())
        .await
        .err()
        .ok_or("an identity was created in a missing resource group")?;
    assert_eq!((err.reason(), err.retryable()), (Reason::ResourceGroupNotFound, false), "{err}");
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_fic_writes_on_one_identity_get_arms_retryable_409() -> TestResult {
    let (h, api) = start().await?;
    // Two FIC writes on one identity while the first is in flight: one gets ARM's 409, retryable.
    let d = desired("orders", &[]);
    converge(&api, &d).await?;
    let mut behaviour = h.behaviour();
    behaviour.fic_write_duration_ms = 500;
    h.set_behaviour(behaviour);
    let fic = |name: &str, sa: &str| idbind::azure::FederatedCredential {
        name: name.into(),
        issuer: ISSUER.into(),
        subject: format!("system:serviceaccount:shop:{sa}"),
        audiences: vec!["api://AzureADTokenExchange".into()],
    };
    let (id, one, two) = (id_of(&d), fic("one", "sa-one"), fic("two", "sa-two"));
    let (a, b) =
        tokio::join!(api.put_federated_credential(&id, &one), api.put_federated_credential(&id, &two));
    let failed: Vec<AzureError> = [a, b].into_iter().filter_map(Result::err).collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(
        (failed[0].reason(), failed[0].retryable()),
        (Reason::ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity, true),
        "{}",
        failed[0]
    );
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_the_operator_may_not_make_is_authorization_failed_and_retried() -> TestResult {
    let (h, api) = start().await?;
    // The operator may assign only the roles its delegation condition lists: Owner is refused by Azure,
    // AuthorizationFailed, retried under its own reason (an administrator may be widening the condition).
    const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
    let err = api
        .create_role_assignment(
            &vault("kv-rbac"),
            "0f0f0f0f-0000-4000-8000-000000000001",
            OWNER,
            "77777777-7777-7777-7777-777777777777",
        )
        .await
        .err()
        .ok_or("a role the condition does not list was assigned")?;
    assert_eq!((err.reason(), err.retryable()), (Reason::AuthorizationFailed, true), "{err}");
    assert!(err.to_string().contains("ABAC condition not fulfilled"), "{err}");
    // Nor anything outside the scopes it was given: an identity in the vaults' group.
    let elsewhere =
        ResourceId::resource_group_scope(SUB, KV_RG).provider_resource(USER_ASSIGNED_IDENTITY, "x");
    let err = api.put_identity(&elsewhere, "westeurope", &BTreeMap::new()).await.err().ok_or("written")?;
    assert_eq!(err.reason(), Reason::AuthorizationFailed, "{err}");
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_secret_is_an_authentication_failure() -> TestResult {
    let (h, _) = start().await?;
    let cloud = Cloud::Custom {
        arm_endpoint: h.https_url().ok_or("no HTTPS")?.to_string(),
        authority_host: h.authority_host().ok_or("no authority")?,
        audience: "https://management.azure.com".into(),
    };
    let http = http_client(h.ca_pem().map(str::as_bytes))?;
    let api = ArmApi::new(
        &cloud,
        http.clone(),
        client_secret_credential(&cloud, http, h.tenant_id(), APP_ID, "wrong")?,
    )?;
    let d = desired("orders", &[]);
    let err = Fresh::new(&api).observe(&id_of(&d), &d).await.err().ok_or("a wrong secret was accepted")?;
    assert_eq!(err.reason(), Reason::AuthenticationFailed, "{err:?}");
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn cleanup_removes_a_managed_identity_with_all_it_holds_and_can_run_again() -> TestResult {
    let (h, api) = start().await?;
    let d = desired("orders", &[SECRETS_USER, CERT_USER]);
    converge(&api, &d).await?;
    let obs = Fresh::new(&api).observe(&id_of(&d), &d).await?;
    let principal = obs.ids.as_ref().map(|i| i.principal_id.clone()).ok_or("identity missing")?;
    let deleted = Writes::new(&api).remove(&release(&d, &id_of(&d)), &obs, false).await?;
    assert_eq!(deleted.len(), 4, "two role assignments, the FIC, the identity: {deleted:?}");
    assert_eq!(deleted.last(), Some(&id_of(&d).to_string()), "the identity goes last");
    assert!(Fresh::new(&api).observe(&id_of(&d), &d).await?.is_empty());
    assert_eq!(api.list_role_assignments(&ResourceId::subscription_scope(SUB), &principal).await?, vec![]);
    // Running it again on what it observed before (a crash after the deletes): all already gone.
    Writes::new(&api).remove(&release(&d, &id_of(&d)), &obs, false).await?;
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn cleanup_of_a_brought_identity_removes_only_what_idbind_added() -> TestResult {
    let (h, api) = start().await?;
    // A brought identity (a team's own, not idbind's) keeps living; only our FIC and our assignments on it
    // go; the team's other FIC and an assignment someone else made for the same principal stay. (An identity
    // idbind manages for another binding cannot be brought: the planner refuses it, see plan.rs.)
    let shared_id = identity_id("team-shared");
    api.put_identity(&shared_id, "westeurope", &BTreeMap::from([("team".to_string(), "shop".to_string())]))
        .await?;
    let theirs = idbind::azure::FederatedCredential {
        name: "team-ci".into(),
        issuer: "https://token.actions.example/".into(),
        subject: "repo:shop/app:ref:refs/heads/main".into(),
        audiences: vec!["api://AzureADTokenExchange".into()],
    };
    api.put_federated_credential(&shared_id, &theirs).await?;
    let mut brought = desired("other", &[SECRETS_USER]);
    brought.managed_identity = None;
    let mut obs = Fresh::new(&api).observe(&shared_id, &brought).await?;
    let principal = obs.ids.as_ref().map(|i| i.principal_id.clone()).ok_or("identity missing")?;
    for a in plan::plan(&brought, &obs.azure)? {
        Writes::new(&api).apply(&shared_id, &mut obs, &a).await?;
    }
    api.create_role_assignment(
        &vault("kv-policies"),
        "0f0f0f0f-0000-4000-8000-000000000002",
        READER,
        &principal,
    )
    .await?;
    let obs = Fresh::new(&api).observe(&shared_id, &brought).await?;
    assert_eq!((obs.azure.fic_count, obs.azure.grants.role_assignments.len()), (2, 2));
    let deleted = Writes::new(&api).remove(&release(&brought, &shared_id), &obs, false).await?;
    assert!(!deleted.contains(&shared_id.to_string()), "a brought identity is never deleted: {deleted:?}");
    let fics = api.list_federated_credentials(&shared_id).await?;
    assert_eq!(fics.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["team-ci"], "only our FIC went");
    let left = api.list_role_assignments(&ResourceId::subscription_scope(SUB), &principal).await?;
    assert_eq!(
        left.iter().map(|ra| ra.name.as_str()).collect::<Vec<_>>(),
        ["0f0f0f0f-0000-4000-8000-000000000002"],
        "only our assignment went"
    );
    h.shutdown().await?;
    Ok(())
}

/// The governed layer keeps FIC writes on one identity one at a time: the raw client, writing two at once,
/// gets Azure's 409 for concurrent FIC writes; through `Governed` both land.
#[tokio::test(flavor = "multi_thread")]
async fn governed_fic_writes_on_one_identity_never_overlap() -> TestResult {
    let (h, arm) = start().await?;
    let mut behaviour = h.behaviour();
    behaviour.fic_write_duration_ms = 400;
    h.set_behaviour(behaviour);
    let arm = Arc::new(arm);
    let id = identity_id("shared-fics");
    arm.put_identity(&id, "westeurope", &BTreeMap::new()).await?;
    let fic = |n: u32| idbind::azure::FederatedCredential {
        name: format!("fic-{n}"),
        issuer: ISSUER.into(),
        subject: format!("system:serviceaccount:shop:sa{n}"),
        audiences: vec!["api://AzureADTokenExchange".into()],
    };

    let (f1, f2, f3, f4) = (fic(1), fic(2), fic(3), fic(4));
    let (a, b) = tokio::join!(arm.put_federated_credential(&id, &f1), arm.put_federated_credential(&id, &f2));
    let conflict = [a, b]
        .into_iter()
        .filter_map(Result::err)
        .find(|e| e.reason() == Reason::ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity);
    assert!(
        conflict.is_some_and(|e| e.retryable()),
        "two raw writes at once must collide in the simulator, or this test proves nothing"
    );

    let governed = Governed::new(arm.clone(), None, None);
    let (a, b, c) = tokio::join!(
        governed.put_federated_credential(&id, &f3),
        governed.put_federated_credential(&id, &f4),
        governed.delete_federated_credential(&id, "fic-1")
    );
    for r in [a, b, c] {
        r?;
    }
    assert_eq!(governed.fic_locks_held(), 0, "locks are dropped once no write is in flight");
    h.shutdown().await?;
    Ok(())
}

/// With the simulator enforcing ARM's and the managed-identity API's documented limits, a burst of reads on
/// one identity is throttled for the raw client and waits its turn (no 429) through the request budget.
#[tokio::test(flavor = "multi_thread")]
async fn the_request_budget_waits_instead_of_provoking_429s() -> TestResult {
    let (h, arm) = start().await?;
    let arm = Arc::new(arm);
    let id = identity_id("busy");
    arm.put_identity(&id, "westeurope", &BTreeMap::new()).await?;
    h.set_throttle(idbind_sim::ThrottleConfig::default());
    h.reset_counters();
    // 0.5 GET/s per identity with one in the bucket: the budget spaces three GETs two seconds apart, and the
    // simulator never has to refuse one.
    let governed = Governed::new(arm.clone(), Some(SharedBudget::new(Limits::default())), None);
    for r in futures::future::join_all((0..3).map(|_| governed.get_identity(&id))).await {
        assert!(r?.is_some());
    }
    assert_eq!(
        h.counters().get("UserAssignedIdentities_Get", "429"),
        0,
        "the budget kept idbind under the limit"
    );
    assert_eq!(h.counters().get("UserAssignedIdentities_Get", "200"), 3);

    // The same burst without the budget is throttled.
    let raw: Vec<_> = futures::future::join_all((0..3).map(|_| arm.get_identity(&id))).await;
    assert!(raw.iter().any(|r| r.as_ref().is_err_and(|e| e.reason() == Reason::Throttled)), "{raw:?}");
    h.shutdown().await?;
    Ok(())
}

/// The managed-identity API's create limit is per subscription, whoever calls: when another caller (another
/// cluster's operator) has spent it, idbind's budget, which admitted the create, meets a 429. It then holds
/// its creates until the Retry-After has passed and sends them at a rate it cut, so the next ones meet no
/// 429, and the metrics name the limit.
#[tokio::test(flavor = "multi_thread")]
async fn a_429_someone_else_provoked_holds_idbinds_creates_until_retry_after_and_cuts_their_rate()
-> TestResult {
    let (h, arm) = start().await?;
    let arm = Arc::new(arm);
    h.set_throttle(idbind_sim::ThrottleConfig::default());
    // The other caller creates until the subscription's 2 creates/s are spent and the limit is closed.
    let mut others = 0;
    loop {
        others += 1;
        match arm.put_identity(&identity_id(&format!("other-{others}")), "westeurope", &BTreeMap::new()).await
        {
            Err(e) if e.reason() == Reason::Throttled => break,
            other => {
                other?;
            }
        }
    }
    let metrics = idbind::telemetry::Metrics::new();
    let budget = SharedBudget::new(Limits::default());
    metrics.watch_budget(budget.clone());
    let observer = metrics.clone() as Arc<dyn idbind::azure::governed::ArmObserver>;
    let governed = Governed::new(arm.clone(), Some(budget), Some(observer));
    let refused = governed.put_identity(&identity_id("mine-0"), "westeurope", &BTreeMap::new()).await;
    assert!(refused.as_ref().is_err_and(|e| e.reason() == Reason::Throttled), "{refused:?}");
    h.reset_counters();

    let creates: Vec<ResourceId> = (1..=3).map(|i| identity_id(&format!("mine-{i}"))).collect();
    let governed = &governed;
    let created = futures::future::join_all(
        creates
            .iter()
            .map(|id| async move { governed.put_identity(id, "westeurope", &BTreeMap::new()).await }),
    )
    .await;
    for r in created {
        r?;
    }
    assert_eq!(h.counters().get("UserAssignedIdentities_CreateOrUpdate", "429"), 0, "held until Retry-After");
    let text = metrics.encode();
    assert!(text.contains("idbind_azure_throttled_total{limit=\"msi_create_or_update\"} 1\n"), "{text}");
    assert!(text.contains("idbind_azure_throttled_total{limit=\"arm_writes\"} 0\n"), "{text}");
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("idbind_budget_rate{limit=\"msi_create_or_update\"} "))
        .ok_or("no learned rate")?
        .parse::<f64>()?;
    assert!(rate < 2.0, "the learned rate is below the documented 2/s: {rate}");
    h.shutdown().await?;
    Ok(())
}
