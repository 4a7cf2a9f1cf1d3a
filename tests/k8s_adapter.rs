//! The Kubernetes adapter against a real kube-apiserver: ServiceAccount annotations by server-side apply
//! (never creating a ServiceAccount, never touching others' annotations) and status writes that `kubectl
//! wait` understands.

use std::collections::BTreeMap;

use idbind::{
    api::binding::{
        IdentityStatus, WorkloadIdentityBinding, WorkloadIdentityBindingSpec, WorkloadIdentityBindingStatus,
    },
    core::conditions,
    k8s::{self, Annotations, CLIENT_ID_ANNOTATION, KubeError, TENANT_ID_ANNOTATION},
};
use idbind_testenv::ControlPlane;
use k8s_openapi::{api::core::v1::ServiceAccount, apimachinery::pkg::apis::meta::v1::Time};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn setup(prefix: &str) -> Result<(&'static ControlPlane, Client, String), Box<dyn std::error::Error>> {
    let plane = idbind_testenv::shared();
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(plane.kubeconfig())?,
        &KubeConfigOptions::default(),
    )
    .await?;
    let client = Client::try_from(config)?;
    let ns = plane.fresh_namespace(prefix)?;
    Ok((plane, client, ns))
}

async fn create_sa(
    client: &Client,
    ns: &str,
    name: &str,
    annotations: &[(&str, &str)],
) -> Result<(), kube::Error> {
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &sa)
        .await
        .map(|_| ())
}

async fn annotations(client: &Client, ns: &str, name: &str) -> Result<BTreeMap<String, String>, kube::Error> {
    Ok(Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .get(name)
        .await?
        .metadata
        .annotations
        .unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_service_account_is_reported_and_never_created() -> TestResult {
    let (_, client, ns) = setup("sa-missing").await?;
    let result = k8s::apply_service_account(
        &client,
        &ns,
        "ghost",
        Some(Annotations { client_id: "c", tenant_id: "t" }),
    )
    .await;
    assert!(matches!(result, Err(KubeError::ServiceAccountNotFound { .. })), "{result:?}");
    assert!(result.as_ref().err().is_some_and(|e| !e.retryable()));
    assert!(
        Api::<ServiceAccount>::namespaced(client, &ns).get_opt("ghost").await?.is_none(),
        "idbind must not create ServiceAccounts"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn annotations_are_applied_changed_and_withdrawn_leaving_others_alone() -> TestResult {
    let (_, client, ns) = setup("sa-annotations").await?;
    create_sa(&client, &ns, "orders", &[("team", "shop")]).await?;

    let previous = k8s::apply_service_account(
        &client,
        &ns,
        "orders",
        Some(Annotations { client_id: "client-1", tenant_id: "tenant-1" }),
    )
    .await?;
    assert_eq!(previous, None);
    let a = annotations(&client, &ns, "orders").await?;
    assert_eq!(
        (a.get(CLIENT_ID_ANNOTATION), a.get(TENANT_ID_ANNOTATION), a.get("team")),
        (Some(&"client-1".into()), Some(&"tenant-1".into()), Some(&"shop".into()))
    );

    let previous = k8s::apply_service_account(
        &client,
        &ns,
        "orders",
        Some(Annotations { client_id: "client-2", tenant_id: "tenant-1" }),
    )
    .await?;
    assert_eq!(
        previous.as_deref(),
        Some("client-1"),
        "the old client id is returned so the change can be announced"
    );

    k8s::apply_service_account(&client, &ns, "orders", None).await?;
    let a = annotations(&client, &ns, "orders").await?;
    assert_eq!(
        a,
        BTreeMap::from([("team".to_string(), "shop".to_string())]),
        "only idbind's annotations are withdrawn"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn status_written_by_apply_satisfies_kubectl_wait() -> TestResult {
    let (plane, client, ns) = setup("status").await?;
    idbind_testenv::shared_with_crds();
    let api: Api<WorkloadIdentityBinding> = Api::namespaced(client.clone(), &ns);
    let binding = WorkloadIdentityBinding::new(
        "orders",
        WorkloadIdentityBindingSpec { service_account_name: "orders".into(), ..Default::default() },
    );
    let created = api.create(&PostParams::default(), &binding).await?;

    let mut status = WorkloadIdentityBindingStatus {
        observed_generation: created.metadata.generation,
        identity: Some(IdentityStatus { resource_id: "/subscriptions/s/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id".into(), name: "id".into(), client_id: Some("client-1".into()), managed: true, ..Default::default() }),
        ..Default::default()
    };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    conditions::set(
        &mut status.conditions,
        &conditions::Want {
            type_: conditions::READY,
            status: true,
            reason: idbind::core::reason::Reason::Reconciled,
            message: "Azure and the ServiceAccount match the spec".into(),
        },
        created.metadata.generation,
        &now,
    );
    k8s::apply_status(&client, &ns, "orders", &status).await?;

    plane.kubectl_ok(&["wait", "-n", &ns, "--for=condition=Ready", "--timeout=30s", "wib/orders"])?;
    let table = plane.kubectl_ok(&["get", "wib", "orders", "-n", &ns, "--no-headers"])?;
    let columns: Vec<&str> = table.split_whitespace().collect();
    assert_eq!(&columns[..4], ["orders", "True", "client-1", "id"], "{table}");
    let read_back = api.get_status("orders").await?.status.unwrap_or_default();
    assert_eq!(read_back, status, "status round-trips through the API server unchanged");
    Ok(())
}
