//! The Entra token endpoint and ARM's bearer validation: client secrets, workload identity federation against
//! a real OIDC issuer served over HTTPS with its own CA (discovery, JWKS, caching and re-fetch on an unknown
//! kid), expiry, and the 401s ARM answers.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use base64::Engine as _;
use common::*;
use idbind_sim::{SimHandle, Simulator, TlsConfig};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::sync::{Mutex, watch};

/// A stand-in for the cluster's OIDC issuer (kube-apiserver): discovery + JWKS over HTTPS with a CA of its
/// own.
struct Issuer {
    url: String,
    ca_file: tempfile::NamedTempFile,
    jwks: Arc<Mutex<Value>>,
    jwks_fetches: Arc<AtomicUsize>,
    _stop: watch::Sender<bool>,
}

async fn issuer() -> Result<Issuer, Box<dyn std::error::Error + Send + Sync>> {
    let tls = idbind_sim::tls::load(&TlsConfig::Generate { extra_hostnames: vec![] }, None)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://127.0.0.1:{}", listener.local_addr()?.port());
    let jwks = Arc::new(Mutex::new(json!({"keys": [rsa_jwk()?]})));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (j, f, u) = (jwks.clone(), fetches.clone(), url.clone());
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(move || {
            let u = u.clone();
            async move { axum::Json(json!({"issuer": u, "jwks_uri": format!("{u}/openid/v1/jwks"), "id_token_signing_alg_values_supported": ["RS256"]})) }
        }))
        .route("/openid/v1/jwks", get(move || {
            let (j, f) = (j.clone(), f.clone());
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                axum::Json(j.lock().await.clone())
            }
        }));
    let (stop, rx) = watch::channel(false);
    idbind_sim::server::spawn(
        listener,
        Some(tokio_rustls::TlsAcceptor::from(tls.server_config.clone())),
        app,
        rx,
    );
    let ca_file = tempfile::NamedTempFile::new()?;
    std::fs::write(ca_file.path(), tls.ca_pem.as_bytes())?;
    Ok(Issuer { url, ca_file, jwks, jwks_fetches: fetches, _stop: stop })
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name),
    )
    .unwrap_or_default()
}

fn rsa_jwk() -> Result<Value, serde_json::Error> {
    serde_json::from_str(&fixture("issuer-rsa.jwk.json"))
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn assertion(
    key: &EncodingKey,
    alg: Algorithm,
    kid: &str,
    iss: &str,
    sub: &str,
    aud: &str,
    exp: u64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        &json!({"iss": iss, "sub": sub, "aud": [aud], "iat": now() - 10, "nbf": now() - 10, "exp": exp}),
        key,
    )
}

fn rsa_key() -> Result<EncodingKey, jsonwebtoken::errors::Error> {
    EncodingKey::from_rsa_pem(fixture("issuer-rsa.pem").as_bytes())
}

/// A fresh P-256 key: (signing key, public JWK with `kid`).
fn ec_key(kid: &str) -> Result<(EncodingKey, Value), Box<dyn std::error::Error + Send + Sync>> {
    let pair = rcgen::KeyPair::generate()?;
    let raw = pair.public_key_raw();
    let b = |x: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(x);
    let jwk = json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid, "x": b(&raw[1..33]), "y": b(&raw[33..65])});
    Ok((EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes())?, jwk))
}

async fn exchange(
    h: &SimHandle,
    c: &reqwest::Client,
    client_id: &str,
    assertion: &str,
) -> Result<(u16, Value), Box<dyn std::error::Error + Send + Sync>> {
    let r = c
        .post(format!("{}/{}/oauth2/v2.0/token", https(h), h.tenant_id()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("scope", ARM_SCOPE),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion),
        ])
        .send()
        .await?;
    Ok((r.status().as_u16(), r.json().await?))
}

fn aadsts(body: &Value) -> String {
    body["error_description"].as_str().unwrap_or("").split(':').next().unwrap_or("").to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn client_secret_flow_and_discovery() -> TestResult {
    let h = start().await?;
    let c = client(&h);
    let base = https(&h);
    let token_url = format!("{base}/{}/oauth2/v2.0/token", h.tenant_id());
    let ok = c
        .post(&token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", APP_ID),
            ("client_secret", APP_SECRET),
            ("scope", ARM_SCOPE),
        ])
        .send()
        .await?;
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await?;
    assert_eq!((body["token_type"].as_str(), body["expires_in"].as_u64()), (Some("Bearer"), Some(3600)));
    // The token carries oid, tid, appid and exp.
    let payload = body["access_token"].as_str().unwrap_or("").split('.').nth(1).unwrap_or("").to_owned();
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?)?;
    assert_eq!(
        (claims["oid"].as_str(), claims["appid"].as_str(), claims["tid"].as_str()),
        (Some(APP_OID), Some(APP_ID), Some(h.tenant_id()))
    );
    assert!(claims["exp"].as_u64().is_some());

    let cases = [
        (vec![("client_id", APP_ID), ("client_secret", "wrong"), ("scope", ARM_SCOPE)], 401, "AADSTS7000215"),
        (
            vec![
                ("client_id", "99999999-9999-9999-9999-999999999999"),
                ("client_secret", "x"),
                ("scope", ARM_SCOPE),
            ],
            400,
            "AADSTS700016",
        ),
        (
            vec![
                ("client_id", APP_ID),
                ("client_secret", APP_SECRET),
                ("scope", "https://management.azure.com/user_impersonation"),
            ],
            400,
            "AADSTS70011",
        ),
    ];
    for (fields, status, code) in cases {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend(fields);
        let r = c.post(&token_url).form(&form).send().await?;
        assert_eq!(r.status().as_u16(), status);
        let b: Value = r.json().await?;
        assert_eq!(aadsts(&b), code, "{b}");
        assert!(b["error"].is_string() && b["error_codes"].is_array());
    }
    let other_tenant = c
        .post(format!("{base}/not-our-tenant/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", APP_ID),
            ("client_secret", APP_SECRET),
            ("scope", ARM_SCOPE),
        ])
        .send()
        .await?;
    assert_eq!(other_tenant.status(), 400);

    // Discovery documents SDKs fetch first.
    let oidc: Value = c
        .get(format!("{base}/{}/v2.0/.well-known/openid-configuration", h.tenant_id()))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(oidc["token_endpoint"], token_url);
    let jwks: Value = c.get(oidc["jwks_uri"].as_str().unwrap_or_default()).send().await?.json().await?;
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    let inst: Value = c.get(format!("{base}/common/discovery/instance?api-version=1.1&authorization_endpoint={base}/{}/oauth2/v2.0/authorize", h.tenant_id())).send().await?.json().await?;
    assert!(
        inst["tenant_discovery_endpoint"]
            .as_str()
            .unwrap_or("")
            .ends_with("/v2.0/.well-known/openid-configuration")
    );
    assert!(inst["metadata"][0]["aliases"].is_array());
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn arm_rejects_missing_invalid_expired_and_foreign_tokens() -> TestResult {
    let mut cfg = config();
    cfg.entra.token_lifetime_secs = 60;
    let h = Simulator::start(cfg).await?;
    let arm = Arm::new(&h).await?;
    let path = identity_path("any-one");
    assert_eq!(arm.get(&path).await?.status, 404);

    let no_auth = arm.client.get(format!("{}{path}", arm.base)).send().await?;
    assert_eq!(no_auth.status(), 401);
    assert!(no_auth.headers().get("www-authenticate").is_some());
    let b: Value = no_auth.json().await?;
    assert_eq!(b["error"]["code"], "AuthenticationFailed");

    let garbage = arm.with_token("not-a-jwt");
    assert_eq!(garbage.get(&path).await?.code(), "InvalidAuthenticationToken");
    // A token signed by another simulator's key.
    let other = start().await?;
    let foreign = arm.with_token(other.issue_token(APP_OID, APP_ID)?);
    assert_eq!(foreign.get(&path).await?.code(), "InvalidAuthenticationToken");
    other.shutdown().await?;
    // A token for another resource.
    let graph = arm
        .client
        .post(format!("{}/{}/oauth2/v2.0/token", arm.base, h.tenant_id()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", APP_ID),
            ("client_secret", APP_SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await?
        .json::<Value>()
        .await?;
    let wrong_aud = arm.with_token(graph["access_token"].as_str().unwrap_or(""));
    assert_eq!(wrong_aud.get(&path).await?.code(), "InvalidAuthenticationTokenAudience");
    // Past its lifetime the token is refused; a new one works.
    h.advance_clock(Duration::from_secs(61));
    let expired = arm.get(&path).await?;
    assert_eq!((expired.status, expired.code()), (401, "ExpiredAuthenticationToken"));
    let fresh = Arm::new(&h).await?;
    assert_eq!(fresh.get(&path).await?.status, 404);
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn workload_identity_federation_is_validated_for_real() -> TestResult {
    let iss = issuer().await?;
    let mut cfg = config();
    cfg.entra.extra_ca_files = vec![iss.ca_file.path().to_owned()];
    let h = Simulator::start(cfg).await?;
    let arm = Arm::new(&h).await?;
    let created = arm.put(&identity_path("orders-api"), json!({"location": "westeurope"})).await?;
    let client_id = created.body["properties"]["clientId"].as_str().unwrap_or_default().to_owned();
    let principal = created.body["properties"]["principalId"].as_str().unwrap_or_default().to_owned();
    let subject = "system:serviceaccount:shop:orders-api";
    let aud = "api://AzureADTokenExchange";
    let r = arm.put(&fic_path("orders-api", "fic-1"), fic_body(&iss.url, subject)).await?;
    assert_eq!(r.status, 201);
    let c = client(&h);
    let rsa = rsa_key()?;
    let exp = now() + 3600;

    // No FIC matches: wrong subject, issuer with a trailing slash, wrong audience.
    for (i, s, a) in [
        (iss.url.clone(), "system:serviceaccount:shop:other", aud),
        (format!("{}/", iss.url), subject, aud),
        (iss.url.clone(), subject, "api://other"),
    ] {
        let (status, body) =
            exchange(&h, &c, &client_id, &assertion(&rsa, Algorithm::RS256, "rsa-key-1", &i, s, a, exp)?)
                .await?;
        assert_eq!((status, aadsts(&body)), (400, "AADSTS70021".to_owned()), "{body}");
    }
    assert_eq!(iss.jwks_fetches.load(Ordering::SeqCst), 0, "no key fetch without a matching FIC");

    // A good assertion gives a token whose principal is the identity's.
    let good = assertion(&rsa, Algorithm::RS256, "rsa-key-1", &iss.url, subject, aud, exp)?;
    let (status, body) = exchange(&h, &c, &client_id, &good).await?;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap_or_default().to_owned();
    let (status, _) = exchange(&h, &c, &client_id, &good).await?;
    assert_eq!(status, 200);
    assert_eq!(iss.jwks_fetches.load(Ordering::SeqCst), 1, "the JWKS is cached");

    // ARM knows the caller: without a role it may not even read; with Reader it reads and may not write.
    let as_workload = arm.with_token(token);
    assert_eq!(as_workload.get(&identity_path("orders-api")).await?.code(), "AuthorizationFailed");
    let mut seed = idbind_sim::Seed::default();
    seed.assign(&principal, "Reader", &format!("/subscriptions/{SUB}"));
    h.seed(seed).await?;
    assert_eq!(as_workload.get(&identity_path("orders-api")).await?.status, 200);
    let denied = as_workload.put(&identity_path("orders-api"), json!({"location": "westeurope"})).await?;
    assert_eq!(denied.code(), "AuthorizationFailed");
    assert!(denied.body["error"]["message"].as_str().unwrap_or("").contains(&principal));

    // Expired assertion.
    let old = assertion(&rsa, Algorithm::RS256, "rsa-key-1", &iss.url, subject, aud, now() - 5)?;
    let (status, body) = exchange(&h, &c, &client_id, &old).await?;
    assert_eq!((status, aadsts(&body)), (400, "AADSTS700024".to_owned()), "{body}");
    // Also when the simulator's clock passes the assertion's expiry.
    let short = assertion(&rsa, Algorithm::RS256, "rsa-key-1", &iss.url, subject, aud, now() + 30)?;
    assert_eq!(exchange(&h, &c, &client_id, &short).await?.0, 200);
    h.advance_clock(Duration::from_secs(31));
    assert_eq!(aadsts(&exchange(&h, &c, &client_id, &short).await?.1), "AADSTS700024");

    // Signed by a key the issuer does not publish (same kid as the real one).
    let (rogue, _) = ec_key("rsa-key-1")?;
    let forged = assertion(&rogue, Algorithm::ES256, "rsa-key-1", &iss.url, subject, aud, now() + 3600)?;
    assert_eq!(aadsts(&exchange(&h, &c, &client_id, &forged).await?.1), "AADSTS700027");

    // Key rotation: an unknown kid makes the simulator fetch the JWKS again.
    let fetches = iss.jwks_fetches.load(Ordering::SeqCst);
    let (ec, jwk) = ec_key("ec-key-2")?;
    if let Some(k) = iss.jwks.lock().await["keys"].as_array_mut() {
        k.push(jwk);
    }
    let rotated = assertion(&ec, Algorithm::ES256, "ec-key-2", &iss.url, subject, aud, now() + 3600)?;
    let (status, body) = exchange(&h, &c, &client_id, &rotated).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(iss.jwks_fetches.load(Ordering::SeqCst), fetches + 1);

    // Unknown client id.
    assert_eq!(
        aadsts(&exchange(&h, &c, "55555555-5555-5555-5555-555555555555", &good).await?.1),
        "AADSTS700016"
    );
    h.shutdown().await?;

    // Without the issuer's CA the discovery fetch fails (TLS), as it would in Entra.
    let mut cfg = config();
    cfg.entra.extra_ca_files.clear();
    let h2 = Simulator::start(cfg).await?;
    let arm2 = Arm::new(&h2).await?;
    let created = arm2.put(&identity_path("orders-api"), json!({"location": "westeurope"})).await?;
    let cid = created.body["properties"]["clientId"].as_str().unwrap_or_default().to_owned();
    arm2.put(&fic_path("orders-api", "fic-1"), fic_body(&iss.url, subject)).await?;
    let (status, body) = exchange(&h2, &client(&h2), &cid, &good).await?;
    assert_eq!((status, aadsts(&body)), (400, "AADSTS50166".to_owned()), "{body}");
    h2.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn msal_oidc_scopes_ride_along_but_one_resource_is_still_the_rule() -> TestResult {
    let h = start().await?;
    let c = client(&h);
    let token_url = format!("{}/{}/oauth2/v2.0/token", https(&h), h.tenant_id());
    let status = |scope: &'static str| {
        let (c, url) = (c.clone(), token_url.clone());
        async move {
            let form = [
                ("grant_type", "client_credentials"),
                ("client_id", APP_ID),
                ("client_secret", APP_SECRET),
                ("scope", scope),
            ];
            let r = c.post(url).form(&form).send().await?;
            let status = r.status().as_u16();
            let body: Value = r.json().await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, aadsts(&body), body))
        }
    };
    // What MSAL Go sends, in any order and any subset: a token for the one resource.
    for scope in [
        "https://management.azure.com/.default openid offline_access profile",
        "offline_access https://management.azure.com/.default",
        "profile openid https://vault.azure.net/.default",
    ] {
        let (code, _, body) = status(scope).await?;
        assert_eq!(code, 200, "{scope}: {body}");
    }
    let (_, _, body) = status("openid https://vault.azure.net/.default profile").await?;
    let payload = body["access_token"].as_str().unwrap_or("").split('.').nth(1).unwrap_or("").to_owned();
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?)?;
    assert_eq!(claims["aud"], "https://vault.azure.net/");
    // Two resources, a resource scope without /.default, or OIDC scopes alone: AADSTS70011.
    for scope in [
        "https://management.azure.com/.default https://vault.azure.net/.default openid",
        "https://management.azure.com/user_impersonation openid",
        "openid offline_access profile",
    ] {
        let (code, aad, body) = status(scope).await?;
        assert_eq!((code, aad.as_str()), (400, "AADSTS70011"), "{scope}: {body}");
    }
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn instance_discovery_answers_for_the_clouds_and_the_simulator_itself() -> TestResult {
    let h = start().await?;
    let c = client(&h);
    let base = https(&h);
    let tenant = h.tenant_id();
    let discover = |authority: String| {
        let (c, base) = (c.clone(), base.clone());
        async move {
            let r = c
                .get(format!("{base}/common/discovery/instance"))
                .query(&[("api-version", "1.1"), ("authorization_endpoint", &authority)])
                .send()
                .await?;
            let status = r.status().as_u16();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, r.json::<Value>().await?))
        }
    };
    let (status, own) = discover(format!("{base}/{tenant}/oauth2/v2.0/authorize")).await?;
    assert_eq!(status, 200, "{own}");
    assert_eq!(
        own["tenant_discovery_endpoint"],
        format!("{base}/{tenant}/v2.0/.well-known/openid-configuration")
    );
    assert_eq!(own["api-version"], "1.1");
    let host = base.trim_start_matches("https://");
    let entries = own["metadata"].as_array().cloned().unwrap_or_default();
    assert!(entries.iter().any(|m| m["preferred_network"] == host && m["aliases"] == json!([host])), "{own}");
    let public = entries.iter().find(|m| m["preferred_network"] == "login.microsoftonline.com");
    assert_eq!(public.map(|m| m["preferred_cache"].clone()), Some(json!("login.windows.net")));

    let (status, cloud) =
        discover(format!("https://login.microsoftonline.us/{tenant}/oauth2/v2.0/authorize")).await?;
    assert_eq!(
        (status, cloud["tenant_discovery_endpoint"].as_str()),
        (
            200,
            Some(
                format!("https://login.microsoftonline.us/{tenant}/v2.0/.well-known/openid-configuration")
                    .as_str()
            )
        )
    );
    let (status, unknown) =
        discover(format!("https://login.example.org/{tenant}/oauth2/v2.0/authorize")).await?;
    assert_eq!((status, aadsts(&unknown).as_str()), (400, "AADSTS50049"), "{unknown}");
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_or_changed_fic_matches_only_after_the_propagation_window() -> TestResult {
    let iss = issuer().await?;
    let mut cfg = config();
    cfg.entra.extra_ca_files = vec![iss.ca_file.path().to_owned()];
    cfg.behaviour.fic_propagation_ms = 60_000;
    let h = Simulator::start(cfg).await?;
    let arm = Arm::new(&h).await?;
    let created = arm.put(&identity_path("orders-api"), json!({"location": "westeurope"})).await?;
    let client_id = created.body["properties"]["clientId"].as_str().unwrap_or_default().to_owned();
    let c = client(&h);
    let rsa = rsa_key()?;
    let aud = "api://AzureADTokenExchange";
    let (sa, sb) = ("system:serviceaccount:shop:orders-api", "system:serviceaccount:shop:orders-v2");
    let signed =
        |subject: &str| assertion(&rsa, Algorithm::RS256, "rsa-key-1", &iss.url, subject, aud, now() + 3600);
    let (as_a, as_b) = (signed(sa)?, signed(sb)?);
    let code = |(status, body): (u16, Value)| if status == 200 { String::from("200") } else { aadsts(&body) };

    // ARM has the FIC at once; the token service answers as if there were none until the window passed.
    assert_eq!(arm.put(&fic_path("orders-api", "fic-1"), fic_body(&iss.url, sa)).await?.status, 201);
    assert_eq!(arm.get(&fic_path("orders-api", "fic-1")).await?.status, 200);
    assert_eq!(code(exchange(&h, &c, &client_id, &as_a).await?), "AADSTS70021");
    h.advance_clock(Duration::from_secs(59));
    assert_eq!(code(exchange(&h, &c, &client_id, &as_a).await?), "AADSTS70021", "59 s into a 60 s window");
    h.advance_clock(Duration::from_secs(1));
    assert_eq!(code(exchange(&h, &c, &client_id, &as_a).await?), "200");

    // Re-PUT unchanged: nothing changes for the token service, no new window.
    assert_eq!(arm.put(&fic_path("orders-api", "fic-1"), fic_body(&iss.url, sa)).await?.status, 200);
    assert_eq!(code(exchange(&h, &c, &client_id, &as_a).await?), "200");
    // A second FIC propagates on its own, without disturbing the first.
    assert_eq!(arm.put(&fic_path("orders-api", "fic-2"), fic_body(&iss.url, sb)).await?.status, 201);
    assert_eq!(code(exchange(&h, &c, &client_id, &as_b).await?), "AADSTS70021");
    assert_eq!(code(exchange(&h, &c, &client_id, &as_a).await?), "200");
    h.advance_clock(Duration::from_secs(60));
    assert_eq!(code(exchange(&h, &c, &client_id, &as_b).await?), "200");
    // A changed subject: a new window for the FIC.
    let sc = "system:serviceaccount:shop:orders-v3";
    assert_eq!(arm.put(&fic_path("orders-api", "fic-1"), fic_body(&iss.url, sc)).await?.status, 200);
    let as_c = signed(sc)?;
    assert_eq!(code(exchange(&h, &c, &client_id, &as_c).await?), "AADSTS70021");
    assert_eq!(code(exchange(&h, &c, &client_id, &as_a).await?), "AADSTS70021", "the old subject is gone");
    h.advance_clock(Duration::from_secs(60));
    assert_eq!(code(exchange(&h, &c, &client_id, &as_c).await?), "200");

    // Switched off at runtime: the next FIC matches at once.
    h.set_fic_propagation(Duration::ZERO);
    let sd = "system:serviceaccount:shop:orders-v4";
    assert_eq!(arm.put(&fic_path("orders-api", "fic-3"), fic_body(&iss.url, sd)).await?.status, 201);
    assert_eq!(code(exchange(&h, &c, &client_id, &signed(sd)?).await?), "200");
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn instance_discovery_knows_the_simulators_listener_when_msal_leaves_out_the_port() -> TestResult {
    let h = start().await?;
    let c = client(&h);
    let (base, tenant) = (https(&h), h.tenant_id().to_owned());
    let http = h.http_url().unwrap_or_default().to_owned();
    let discover = |authority: String| {
        let (c, base) = (c.clone(), base.clone());
        async move {
            // What MSAL Python sends: api-version 1.0 and the authority's host name without its port.
            let r = c
                .get(format!("{base}/common/discovery/instance"))
                .query(&[("api-version", "1.0"), ("authorization_endpoint", &authority)])
                .send()
                .await?;
            let status = r.status().as_u16();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, r.json::<Value>().await?))
        }
    };
    for (asked, listener) in [("https://127.0.0.1", &base), ("http://127.0.0.1", &http)] {
        let (status, body) = discover(format!("{asked}/{tenant}/oauth2/v2.0/authorize")).await?;
        assert_eq!(status, 200, "{asked}: {body}");
        // The listener with its port, which MSAL fetches next.
        assert_eq!(
            body["tenant_discovery_endpoint"],
            format!("{listener}/{tenant}/v2.0/.well-known/openid-configuration"),
            "{asked}"
        );
    }
    // A port that is not the simulator's, or another host, is still unknown.
    for asked in ["https://127.0.0.1:1", "https://localhost.example"] {
        let (status, body) = discover(format!("{asked}/{tenant}/oauth2/v2.0/authorize")).await?;
        assert_eq!((status, aadsts(&body).as_str()), (400, "AADSTS50049"), "{asked}: {body}");
    }
    h.shutdown().await?;
    Ok(())
}
