//! The Key Vault data plane as Azure's SDKs use it: reached as `https://<vault>.vault.azure.net` through the
//! simulator's CONNECT proxy, with the bearer challenge, the token checks, RBAC and access-policy
//! authorization, and the secret, certificate and key shapes clients parse.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use idbind_sim::Simulator;
use serde_json::{Value, json};

fn secret(name: &str) -> String {
    format!("/secrets/{name}?api-version={KV_API}")
}

/// The parameters of a `Bearer k="v", k="v"` challenge, as the SDKs' challenge policies parse it.
fn challenge_params(header: &str) -> Vec<(String, String)> {
    header
        .strip_prefix("Bearer ")
        .unwrap_or("")
        .split(',')
        .filter_map(|p| p.trim().split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

fn inner_code(r: &Reply) -> &str {
    r.body["error"]["innererror"]["code"].as_str().unwrap_or("")
}

fn message(r: &Reply) -> &str {
    r.body["error"]["message"].as_str().unwrap_or("")
}

/// A 32-hex-digit version, as Key Vault makes them.
fn is_version(v: &str) -> bool {
    v.len() == 32 && v.chars().all(|c| c.is_ascii_hexdigit())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_api_version_the_current_sdks_send_is_served() -> TestResult {
    let h = Simulator::start(kv_config()).await?;
    let arm = Arm::new(&h).await?;
    assign(&arm, &vault_scope(KV_RBAC), SECRETS_USER, WORKLOAD_OID).await?;
    h.set_secret(KV_RBAC, "db-password", "hunter2").await?;
    let kv = workload_vault(&h, KV_RBAC).await?;
    // azure-keyvault-secrets 4.12 sends 2026-04-01 by default and still offers 2016-10-01; the Go, .NET and
    // Java SDKs send 7.x or 2025-07-01.
    for v in ["2016-10-01", "7.0", "7.4", "7.5", "7.6", "2025-07-01", "2026-04-01"] {
        let r = kv.get(&format!("/secrets/db-password?api-version={v}")).await?;
        assert_eq!(
            (r.status, r.body["value"].as_str()),
            (200, Some("hunter2")),
            "api-version {v}: {}",
            r.body
        );
    }
    for query in ["?api-version=7.9", ""] {
        let r = kv.get(&format!("/secrets/db-password{query}")).await?;
        assert_eq!((r.status, r.code()), (400, "BadParameter"), "{query}: {}", r.body);
    }
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_for_key_vaults_app_id_is_accepted_like_one_for_its_uri() -> TestResult {
    let h = Simulator::start(kv_config()).await?;
    let arm = Arm::new(&h).await?;
    assign(&arm, &vault_scope(KV_RBAC), SECRETS_USER, WORKLOAD_OID).await?;
    h.set_secret(KV_RBAC, "db-password", "hunter2").await?;
    let kv = workload_vault(&h, KV_RBAC).await?;
    // Key Vault's application id is a resource Entra issues tokens for, as its App ID URI is.
    let by_app_id = token_for(
        &h,
        &kv.client,
        WORKLOAD_ID,
        WORKLOAD_SECRET,
        "cfa8b339-82a2-471a-a3c9-0fc0be7a4093/.default",
    )
    .await?;
    let r = kv.with_token(by_app_id).get(&format!("/secrets/db-password?api-version={KV_API}")).await?;
    assert_eq!((r.status, r.body["value"].as_str()), (200, Some("hunter2")), "{}", r.body);
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unauthenticated_request_gets_the_bearer_challenge_the_sdks_follow() -> TestResult {
    let h = Simulator::start(kv_config()).await?;
    let arm = Arm::new(&h).await?;
    assign(&arm, &vault_scope(KV_RBAC), SECRETS_OFFICER, WORKLOAD_OID).await?;
    let c = proxied_client(&h)?;
    let tenant = h.tenant_id().to_owned();
    // The SDKs' first request carries no token (and a PUT no body); all they learn comes from the 401.
    for (method, url, authority, resource) in [
        (
            "GET",
            "https://kv-rbac.vault.azure.net/secrets/x/",
            "https://login.microsoftonline.com",
            "https://vault.azure.net",
        ),
        (
            "PUT",
            "https://kv-rbac.vault.azure.net/secrets/x",
            "https://login.microsoftonline.com",
            "https://vault.azure.net",
        ),
        (
            "GET",
            "https://KV-RBAC.vault.azure.net/secrets",
            "https://login.microsoftonline.com",
            "https://vault.azure.net",
        ),
        (
            "GET",
            "https://kv-rbac.vault.usgovcloudapi.net/secrets/x",
            "https://login.microsoftonline.us",
            "https://vault.usgovcloudapi.net",
        ),
        (
            "GET",
            "https://kv-rbac.vault.azure.cn/secrets/x",
            "https://login.chinacloudapi.cn",
            "https://vault.azure.cn",
        ),
    ] {
        let r = c
            .request(reqwest::Method::from_bytes(method.as_bytes())?, format!("{url}?api-version={KV_API}"))
            .header("content-length", "0")
            .send()
            .await?;
        assert_eq!(r.status(), 401, "{method} {url}");
        let header =
            r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert_eq!(
            header,
            format!(r#"Bearer authorization="{authority}/{tenant}", resource="{resource}""#),
            "{method} {url}"
        );
        let body: Value = r.json().await?;
        assert_eq!(body["error"]["code"], "Unauthorized", "{body}");
        assert!(body["error"]["message"].as_str().unwrap_or("").starts_with("AKV10000"), "{body}");
    }
    assert_eq!(h.counters().get("Secrets_Get", "401"), 3);

    // Following the challenge as the SDKs do: the tenant from `authorization`, the scope from `resource`.
    let r = c.get(format!("{}{}", vault_url(KV_RBAC), secret("x"))).send().await?;
    let params =
        challenge_params(r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or(""));
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let (authorization, resource) = (get("authorization"), get("resource"));
    assert_eq!(authorization.rsplit('/').next(), Some(tenant.as_str()));
    let token = c
        .post(format!("{authorization}/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", WORKLOAD_ID),
            ("client_secret", WORKLOAD_SECRET),
            ("scope", &format!("{resource}/.default")),
        ])
        .send()
        .await?
        .json::<Value>()
        .await?;
    let kv = Arm {
        base: vault_url(KV_RBAC),
        client: c,
        token: token["access_token"].as_str().unwrap_or("").into(),
    };
    let set = kv.put(&secret("x"), json!({"value": "from the challenge"})).await?;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(kv.get(&secret("x")).await?.body["value"], "from the challenge");
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_for_another_audience_or_signer_or_past_their_expiry_are_refused() -> TestResult {
    let mut cfg = kv_config();
    cfg.entra.token_lifetime_secs = 600;
    let h = Simulator::start(cfg).await?;
    let arm = Arm::new(&h).await?;
    assign(&arm, &vault_scope(KV_RBAC), SECRETS_USER, WORKLOAD_OID).await?;
    h.set_secret(KV_RBAC, "db-password", "hunter2").await?;
    let kv = workload_vault(&h, KV_RBAC).await?;
    assert_eq!(kv.get(&secret("db-password")).await?.status, 200);

    let arm_token = token_for(&h, &kv.client, WORKLOAD_ID, WORKLOAD_SECRET, ARM_SCOPE).await?;
    let china = h.issue_token_for(WORKLOAD_OID, WORKLOAD_ID, "https://vault.azure.cn")?;
    let other = Simulator::start(kv_config()).await?;
    let foreign = other.issue_token_for(WORKLOAD_OID, WORKLOAD_ID, "https://vault.azure.net")?;
    other.shutdown().await?;
    for (what, token, akv) in [
        ("an ARM token", arm_token, "AKV10022"),
        ("a China cloud vault token", china, "AKV10022"),
        ("another signer's token", foreign, "AKV10013"),
        ("not a JWT", String::from("not-a-jwt"), "AKV10013"),
    ] {
        let r = kv.with_token(token).get(&secret("db-password")).await?;
        assert_eq!((r.status, r.code()), (401, "Unauthorized"), "{what}: {}", r.body);
        assert!(message(&r).starts_with(akv), "{what}: {}", r.body);
        assert!(r.header("www-authenticate").is_some_and(|c| c.contains("resource=")), "{what}");
        assert!(r.body.get("value").is_none());
    }
    // The vault's own audience in every form Entra writes it.
    for aud in ["https://vault.azure.net", "https://vault.azure.net/", "cfa8b339-82a2-471a-a3c9-0fc0be7a4093"]
    {
        let r = kv
            .with_token(h.issue_token_for(WORKLOAD_OID, WORKLOAD_ID, aud)?)
            .get(&secret("db-password"))
            .await?;
        assert_eq!(r.status, 200, "{aud}: {}", r.body);
    }
    // Expiry is the simulator's clock.
    h.advance_clock(Duration::from_secs(601));
    let expired = kv.get(&secret("db-password")).await?;
    assert_eq!((expired.status, expired.code()), (401, "Unauthorized"), "{}", expired.body);
    assert_eq!(workload_vault(&h, KV_RBAC).await?.get(&secret("db-password")).await?.status, 200);
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_set_read_listed_and_versioned_in_key_vaults_shapes() -> TestResult {
    let h = Simulator::start(kv_config()).await?;
    let arm = Arm::new(&h).await?;
    assign(&arm, &vault_scope(KV_RBAC), SECRETS_OFFICER, WORKLOAD_OID).await?;
    let kv = workload_vault(&h, KV_RBAC).await?;
    let base = vault_url(KV_RBAC);

    let first = kv
        .put(
            &secret("Db-Password"),
            json!({"value": "one", "contentType": "text/plain", "tags": {"team": "shop"}}),
        )
        .await?;
    assert_eq!(first.status, 200, "{}", first.body);
    let id1 = first.body["id"].as_str().unwrap_or("").to_owned();
    let v1 = id1.strip_prefix(&format!("{base}/secrets/Db-Password/")).unwrap_or("").to_owned();
    assert!(is_version(&v1), "{id1}");
    assert_eq!(first.body["value"], "one");
    assert_eq!(first.body["contentType"], "text/plain");
    assert_eq!(first.body["tags"], json!({"team": "shop"}));
    let attributes = &first.body["attributes"];
    assert_eq!(attributes["enabled"], true);
    assert!(attributes["created"].as_u64().is_some_and(|t| t > 1_600_000_000), "{attributes}");
    assert_eq!(attributes["created"], attributes["updated"]);
    assert_eq!(attributes["recoveryLevel"], "Recoverable+Purgeable");
    assert!(first.body.get("managed").is_none() && first.body.get("kid").is_none());

    // Every set is a new version, even of the same value; names are case-insensitive and keep their case.
    let second = kv.put(&secret("db-password"), json!({"value": "two"})).await?;
    let id2 = second.body["id"].as_str().unwrap_or("").to_owned();
    assert!(id2.starts_with(&format!("{base}/secrets/Db-Password/")) && id2 != id1, "{id2}");
    assert!(second.body.get("contentType").is_none() && second.body.get("tags").is_none());
    // The current version (the SDKs ask for it with an empty version segment), a given one, a missing one.
    for path in ["/secrets/db-password/", "/secrets/DB-PASSWORD"] {
        let r = kv.get(&format!("{path}?api-version={KV_API}")).await?;
        assert_eq!(
            (r.status, r.body["value"].as_str(), r.body["id"].as_str()),
            (200, Some("two"), Some(id2.as_str()))
        );
    }
    let old = kv.get(&format!("/secrets/db-password/{v1}?api-version={KV_API}")).await?;
    assert_eq!((old.body["value"].as_str(), old.body["id"].as_str()), (Some("one"), Some(id1.as_str())));
    for path in [secret("nope"), format!("/secrets/db-password/{}?api-version={KV_API}", "0".repeat(32))] {
        let r = kv.get(&path).await?;
        assert_eq!((r.status, r.code()), (404, "SecretNotFound"), "{path}: {}", r.body);
        assert!(message(&r).contains("was not found in this key vault"), "{}", r.body);
    }
    // The versions, with full ids and no values.
    let versions = kv.get(&format!("/secrets/db-password/versions?api-version={KV_API}")).await?;
    let items = versions.body["value"].as_array().cloned().unwrap_or_default();
    let mut ids: Vec<&str> = items.iter().filter_map(|i| i["id"].as_str()).collect();
    ids.sort_unstable();
    let mut want = vec![id1.as_str(), id2.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);
    assert!(items.iter().all(|i| i.get("value").is_none() && i["attributes"]["enabled"] == true));
    assert_eq!(
        items.iter().find(|i| i["id"] == id1.as_str()).map(|i| i["contentType"].clone()),
        Some(json!("text/plain"))
    );
    assert_eq!(versions.body["nextLink"], Value::Null);

    // Bad input: no value, a name Key Vault does not allow.
    assert_eq!(kv.put(&secret("x"), json!({"contentType": "a"})).await?.code(), "BadParameter");
    assert_eq!(kv.put(&secret("bad_name"), json!({"value": "a"})).await?.code(), "BadParameter");

    // Listing pages with maxresults (at most 25) and a nextLink on the vault's own host; no values.
    for i in 0..4 {
        h.set_secret(KV_RBAC, &format!("s-{i}"), "v").await?;
    }
    let mut names = Vec::new();
    let mut next = Some(format!("/secrets?api-version={KV_API}&maxresults=2"));
    let mut pages = 0;
    while let Some(link) = next.take() {
        let page = kv.get(&link).await?;
        assert_eq!(page.status, 200, "{}", page.body);
        let value = page.body["value"].as_array().cloned().unwrap_or_default();
        assert!(value.len() <= 2 && !value.is_empty(), "{}", page.body);
        for item in &value {
            assert!(item.get("value").is_none(), "{item}");
            names.push(
                item["id"].as_str().unwrap_or("").trim_start_matches(&format!("{base}/secrets/")).to_owned(),
            );
        }
        next = page.body["nextLink"].as_str().map(|l| {
            assert!(
                l.starts_with(&format!("{base}/secrets?"))
                    && l.contains("api-version=")
                    && l.contains("maxresults=2"),
                "{l}"
            );
            l.to_owned()
        });
        pages += 1;
        assert!(pages < 10);
    }
    assert_eq!(pages, 3);
    names.sort_unstable();
    assert_eq!(names, ["Db-Password", "s-0", "s-1", "s-2", "s-3"]);
    let all = kv.get(&format!("/secrets?api-version={KV_API}")).await?;
    assert_eq!((all.body["value"].as_array().map(Vec::len), &all.body["nextLink"]), (Some(5), &Value::Null));
    for m in ["0", "26", "x"] {
        let r = kv.get(&format!("/secrets?api-version={KV_API}&maxresults={m}")).await?;
        assert_eq!((r.status, r.code()), (400, "BadParameter"), "maxresults={m}");
    }
    let c = h.counters();
    assert_eq!((c.get("Secrets_Set", "200"), c.get("Secrets_Get", "404")), (2, 2));
    assert_eq!((c.get("Secrets_ListVersions", "200"), c.get("Secrets_List", "200")), (1, 4));
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_rbac_vault_answers_forbidden_by_rbac_until_a_role_at_the_vault_or_above_grants_the_action()
-> TestResult {
    let h = Simulator::start(kv_config()).await?;
    let arm = Arm::new(&h).await?;
    h.set_secret(KV_RBAC, "db-password", "hunter2").await?;
    let kv = workload_vault(&h, KV_RBAC).await?;

    let denied = kv.get(&secret("db-password")).await?;
    assert_eq!(
        (denied.status, denied.code(), inner_code(&denied)),
        (403, "Forbidden", "ForbiddenByRbac"),
        "{}",
        denied.body
    );
    let msg = message(&denied);
    assert!(msg.starts_with("Caller is not authorized to perform action on resource."), "{msg}");
    for part in [
        format!("oid={WORKLOAD_OID}"),
        format!("appid={WORKLOAD_ID}"),
        String::from("Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'"),
        format!("Resource: '{}/secrets/db-password'", vault_scope(KV_RBAC).to_ascii_lowercase()),
    ] {
        assert!(msg.contains(&part), "{part} not in {msg}");
    }
    let list = kv.get(&format!("/secrets?api-version={KV_API}")).await?;
    assert_eq!(inner_code(&list), "ForbiddenByRbac");
    assert!(message(&list).contains("Microsoft.KeyVault/vaults/secrets/readMetadata/action"));
    assert!(denied.body.get("value").is_none());

    // Roles that do not grant it: Secrets User for someone else, or on another vault; Owner (no data actions
    // at all).
    assign(&arm, &vault_scope(KV_RBAC), SECRETS_USER, APP_OID).await?;
    assign(&arm, &vault_scope(KV_POLICIES), SECRETS_USER, WORKLOAD_OID).await?;
    assign(&arm, &vault_scope(KV_RBAC), OWNER, WORKLOAD_OID).await?;
    assert_eq!(inner_code(&kv.get(&secret("db-password")).await?), "ForbiddenByRbac");

    // Key Vault Secrets User at the vault: read and list, but not write; keys and certificates stay closed.
    let at_vault = assign(&arm, &vault_scope(KV_RBAC), SECRETS_USER, WORKLOAD_OID).await?;
    let ok = kv.get(&secret("db-password")).await?;
    assert_eq!((ok.status, ok.body["value"].as_str()), (200, Some("hunter2")), "{}", ok.body);
    assert_eq!(kv.get(&format!("/secrets?api-version={KV_API}")).await?.status, 200);
    assert_eq!(kv.get(&format!("/secrets/db-password/versions?api-version={KV_API}")).await?.status, 200);
    let write = kv.put(&secret("db-password"), json!({"value": "mine"})).await?;
    assert_eq!((write.status, inner_code(&write)), (403, "ForbiddenByRbac"));
    assert!(message(&write).contains("secrets/setSecret/action"));
    for path in ["/keys", "/certificates"] {
        let r = kv.get(&format!("{path}?api-version={KV_API}")).await?;
        assert_eq!((r.status, inner_code(&r)), (403, "ForbiddenByRbac"), "{path}");
    }
    // Taken away (no propagation window configured): closed again at once.
    assert_eq!(arm.delete(&at_vault).await?.status, 200);
    assert_eq!(kv.get(&secret("db-password")).await?.status, 403);

    // The same role at the resource group (or subscription) above the vault is inherited.
    let at_rg = assign(&arm, &rg_scope(KV_RG), SECRETS_USER, WORKLOAD_OID).await?;
    assert_eq!(kv.get(&secret("db-password")).await?.status, 200);
    arm.delete(&at_rg).await?;
    assert_eq!(kv.get(&secret("db-password")).await?.status, 403);
    assign(&arm, &format!("/subscriptions/{SUB}"), SECRETS_USER, WORKLOAD_OID).await?;
    assert_eq!(kv.get(&secret("db-password")).await?.status, 200);
    let c = h.counters();
    assert!(c.get("Secrets_Get", "403") >= 3 && c.get("Secrets_Get", "200") >= 2);
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_on_one_secret_grants_that_secret_only() -> TestResult {
    let h = Simulator::start(kv_config()).await?;
    let arm = Arm::new(&h).await?;
    h.set_secret(KV_RBAC, "db-password", "hunter2").await?;
    h.set_secret(KV_RBAC, "other", "x").await?;
    let kv = workload_vault(&h, KV_RBAC).await?;
    assign(&arm, &format!("{}/secrets/db-password", vault_scope(KV_RBAC)), SECRETS_USER, WORKLOAD_OID)
        .await?;
    assert_eq!(kv.get(&secret("db-password")).await?.status, 200);
    assert_eq!(kv.get(&format!("/secrets/DB-PASSWORD/versions?api-version={KV_API}")).await?.status, 200);
    assert_eq!(inner_code(&kv.get(&secret("other")).await?), "ForbiddenByRbac");
    assert_eq!(inner_code(&kv.get(&format!("/secrets?api-version={KV_API}")).await?), "ForbiddenByRbac");
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_access_policy_vault_answers_access_denied_until_a_policy_lists_the_permission() -> TestResult {
    let h = Simulator::start(kv_config()).await?;
    let arm = Arm::new(&h).await?;
    h.set_secret(KV_POLICIES, "db-password", "hunter2").await?;
    let kv = workload_vault(&h, KV_POLICIES).await?;
    // Role assignments do not count on a vault that uses access policies.
    assign(&arm, &vault_scope(KV_POLICIES), SECRETS_USER, WORKLOAD_OID).await?;

    let denied = kv.get(&secret("db-password")).await?;
    assert_eq!(
        (denied.status, denied.code(), inner_code(&denied)),
        (403, "Forbidden", "AccessDenied"),
        "{}",
        denied.body
    );
    let msg = message(&denied);
    assert!(msg.contains(&format!("oid={WORKLOAD_OID}")), "{msg}");
    assert!(
        msg.contains(&format!("does not have secrets get permission on key vault '{KV_POLICIES};location=")),
        "{msg}"
    );

    let policies = |secrets: &[&str]| json!({"properties": {"accessPolicies": [{"tenantId": h.tenant_id(), "objectId": WORKLOAD_OID, "permissions": {"secrets": secrets}}]}});
    let policy_path = format!("{}/accessPolicies/add?api-version=2023-07-01", vault_scope(KV_POLICIES));
    assert_eq!(arm.put(&policy_path, policies(&["get"])).await?.status, 200);
    let ok = kv.get(&secret("db-password")).await?;
    assert_eq!((ok.status, ok.body["value"].as_str()), (200, Some("hunter2")));
    let list = kv.get(&format!("/secrets?api-version={KV_API}")).await?;
    assert_eq!((list.status, inner_code(&list)), (403, "AccessDenied"));
    assert!(message(&list).contains("does not have secrets list permission"), "{}", list.body);
    let set = kv.put(&secret("db-password"), json!({"value": "x"})).await?;
    assert!(message(&set).contains("does not have secrets set permission"), "{}", set.body);
    assert_eq!(arm.put(&policy_path, policies(&["list", "set"])).await?.status, 200);
    assert_eq!(kv.get(&format!("/secrets?api-version={KV_API}")).await?.status, 200);
    assert_eq!(kv.put(&secret("db-password"), json!({"value": "x"})).await?.status, 200);
    // A policy for secrets opens no keys.
    assert_eq!(inner_code(&kv.get(&format!("/keys?api-version={KV_API}")).await?), "AccessDenied");
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_and_keys_are_readable_by_the_roles_that_grant_them() -> TestResult {
    let h = Simulator::start(kv_config()).await?;
    let arm = Arm::new(&h).await?;
    let cert_id = h.set_certificate(KV_RBAC, "tls").await?;
    let kid = h.set_key(KV_RBAC, "signing").await?;
    h.set_secret(KV_RBAC, "db-password", "hunter2").await?;
    let base = vault_url(KV_RBAC);
    assert!(cert_id.starts_with(&format!("{base}/certificates/tls/")), "{cert_id}");
    assert!(kid.starts_with(&format!("{base}/keys/signing/")), "{kid}");
    let kv = workload_vault(&h, KV_RBAC).await?;
    let get = |path: &str| format!("{path}?api-version={KV_API}");
    for path in ["/certificates/tls", "/keys/signing", "/certificates", "/keys"] {
        assert_eq!(inner_code(&kv.get(&get(path)).await?), "ForbiddenByRbac", "{path}");
    }

    // Key Vault Certificate User: the certificate, its key's public part and its secret (key and chain).
    let cert_user = assign(&arm, &vault_scope(KV_RBAC), CERT_USER, WORKLOAD_OID).await?;
    let cert = kv.get(&get("/certificates/tls")).await?;
    assert_eq!((cert.status, cert.body["id"].as_str()), (200, Some(cert_id.as_str())), "{}", cert.body);
    let version = cert_id.rsplit('/').next().unwrap_or("");
    assert_eq!(cert.body["kid"], format!("{base}/keys/tls/{version}"));
    assert_eq!(cert.body["sid"], format!("{base}/secrets/tls/{version}"));
    let der = base64::engine::general_purpose::STANDARD.decode(cert.body["cer"].as_str().unwrap_or(""))?;
    assert!(der.len() > 100 && der[0] == 0x30, "cer is a DER certificate");
    assert!(cert.body["x5t"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(cert.body["attributes"]["exp"].as_u64() > cert.body["attributes"]["nbf"].as_u64());
    let backing = kv.get(&get("/secrets/tls")).await?;
    assert_eq!((backing.status, backing.body["managed"].as_bool()), (200, Some(true)), "{}", backing.body);
    assert_eq!(backing.body["contentType"], "application/x-pem-file");
    let pem = backing.body["value"].as_str().unwrap_or("");
    assert!(pem.contains("PRIVATE KEY-----") && pem.contains("BEGIN CERTIFICATE-----"), "{pem}");
    assert_eq!(
        kv.get(&get("/certificates")).await?.body["value"][0]["id"],
        format!("{base}/certificates/tls")
    );
    assert_eq!(kv.get(&get("/certificates/tls/versions")).await?.body["value"][0]["id"], cert_id);
    assert_eq!(kv.get(&get("/keys/tls")).await?.status, 200);
    assert_eq!(kv.get(&get("/secrets/db-password")).await?.status, 200, "Certificate User reads secrets");
    arm.delete(&cert_user).await?;

    // Key Vault Crypto User: keys only.
    let crypto = assign(&arm, &vault_scope(KV_RBAC), CRYPTO_USER, WORKLOAD_OID).await?;
    let key = kv.get(&get("/keys/signing")).await?;
    assert_eq!((key.status, key.body["key"]["kid"].as_str()), (200, Some(kid.as_str())), "{}", key.body);
    assert_eq!(
        (key.body["key"]["kty"].as_str(), key.body["key"]["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );
    assert!(key.body["key"].get("d").is_none(), "no private part");
    let listed = kv.get(&get("/keys")).await?;
    let kids: Vec<&str> = listed.body["value"]
        .as_array()
        .map(|v| v.iter().filter_map(|k| k["kid"].as_str()).collect())
        .unwrap_or_default();
    assert!(kids.contains(&format!("{base}/keys/signing").as_str()), "{}", listed.body);
    assert_eq!(kv.get(&get("/keys/signing/versions")).await?.body["value"][0]["kid"], kid);
    assert_eq!(inner_code(&kv.get(&get("/certificates/tls")).await?), "ForbiddenByRbac");
    assert_eq!(inner_code(&kv.get(&get("/secrets/db-password")).await?), "ForbiddenByRbac");
    assert_eq!(kv.get(&get("/keys/nope")).await?.code(), "KeyNotFound");
    arm.delete(&crypto).await?;

    // Key Vault Reader: metadata of everything, no secret value.
    assign(&arm, &vault_scope(KV_RBAC), KV_READER, WORKLOAD_OID).await?;
    for path in ["/certificates/tls", "/keys/signing", "/secrets", "/secrets/db-password/versions"] {
        assert_eq!(kv.get(&get(path)).await?.status, 200, "{path}");
    }
    assert_eq!(inner_code(&kv.get(&get("/secrets/db-password")).await?), "ForbiddenByRbac");
    assert_eq!(kv.get(&get("/certificates/nope")).await?.code(), "CertificateNotFound");
    let c = h.counters();
    assert!(
        c.get("Certificates_Get", "200") >= 2
            && c.get("Keys_Get", "200") >= 2
            && c.get("Keys_List", "200") >= 1
    );
    h.shutdown().await?;
    Ok(())
}
