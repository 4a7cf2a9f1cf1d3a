//! Verification (`IDBIND_VERIFY`): a binding is Ready only once the bound ServiceAccount's token, requested
//! from the real API server as the kubelet would, exchanges at the simulator's Entra for the identity; and
//! the permission that takes (`serviceaccounts/token`) is narrowed by the shipped ValidatingAdmissionPolicy
//! to exactly that use.

use std::time::Duration;

use serde_json::Value;

use idbind::core::conditions::{FEDERATION_VERIFIED, READY, STALLED};
use idbind::core::reason::Reason;
use idbind_testkit::{
    e2e::{
        Env, TestError, TestResult, install_operator_rbac, install_verification, operator_kubeconfig,
        start_without_operator,
    },
    process::Operator,
};

/// `kubectl create token` as the operator's ServiceAccount: the token, or the API server's refusal.
fn token_as_operator(
    env: &Env,
    sa: &str,
    audience: &str,
    duration: &str,
) -> Result<Result<String, String>, TestError> {
    let kubeconfig = operator_kubeconfig(env.plane, &env.ns, "token-probe")?;
    let out = std::process::Command::new(idbind_testenv::bin_dir().join("kubectl"))
        .args(["--kubeconfig", &kubeconfig.display().to_string(), "create", "token", sa, "-n", &env.ns])
        .args(["--audience", audience, "--duration", duration])
        .output()?;
    Ok(if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    })
}

/// The operator with verification on, watching the test's namespace.
fn operator(env: &Env, mode: &str, extra: &[(&str, &str)]) -> Result<Operator, TestError> {
    let mut environment = vec![("IDBIND_VERIFY", mode), ("IDBIND_VERIFY_FEDERATION_WINDOW_SECONDS", "4")];
    environment.extend_from_slice(extra);
    Operator::start(env, "verify", &environment)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_may_request_only_short_exchange_tokens() -> TestResult {
    let env = start_without_operator("verify-vap", |_| {}).await?;
    install_operator_rbac(env.plane, &env.ns, &[])?;
    env.kubectl(&["create", "serviceaccount", "app"])?;
    // Without the component, no token at all.
    let refused = token_as_operator(&env, "app", "api://AzureADTokenExchange", "10m")?;
    assert!(refused.as_ref().is_err_and(|e| e.contains("forbidden")), "{refused:?}");
    install_verification(&env)?;
    // The admission policy takes a moment to be enforced after it is created.
    idbind_testkit::e2e::eventually("the policy enforced", Duration::from_secs(60), || {
        let api_server = token_as_operator(&env, "app", "https://kubernetes.default.svc", "10m")?;
        Ok(api_server.err().filter(|e| e.contains("api://AzureADTokenExchange")).map(|_| ()))
    })
    .await?;
    let exchange = token_as_operator(&env, "app", "api://AzureADTokenExchange", "10m")?;
    assert!(exchange.is_ok(), "the exchange audience for 10 minutes is allowed: {exchange:?}");
    for (audience, duration, why) in [
        ("https://kubernetes.default.svc", "10m", "the API server's own audience"),
        ("api://AzureADTokenExchange", "1h", "a longer lifetime"),
        ("https://vault.azure.net", "10m", "another Azure audience"),
    ] {
        let answer = token_as_operator(&env, "app", audience, duration)?;
        assert!(
            answer.as_ref().is_err_and(|e| e.contains("ValidatingAdmissionPolicy")),
            "{why} must be refused by the policy: {answer:?}"
        );
    }
    // Anyone else is not held to it (an administrator here).
    env.kubectl(&["create", "token", "app", "--audience", "https://kubernetes.default.svc"])?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_waits_for_the_service_accounts_token_to_exchange() -> TestResult {
    let env = start_without_operator("verify-fed", |_| {}).await?;
    install_operator_rbac(env.plane, &env.ns, &[])?;
    install_verification(&env)?;
    let _operator = operator(&env, "federation", &[])?;
    env.ready_binding("orders", &["Key Vault Secrets User"])?;
    let (status, reason) = env.condition("orders", FEDERATION_VERIFIED)?;
    assert_eq!((status.as_str(), reason.as_str()), ("True", Reason::Verified.as_str()));
    // Proven once for this spec: resyncs do not prove it again.
    let exchanges = env.sim.counters().total("Token");
    env.kubectl(&["annotate", "wib", "orders", "touched=1"])?;
    idbind_testkit::e2e::eventually("a few resyncs", Duration::from_secs(30), || {
        Ok((env.sim.counters().total("FederatedIdentityCredentials_List") >= 3).then_some(()))
    })
    .await?;
    assert_eq!(env.sim.counters().total("Token"), exchanges, "no exchange once proven");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_federated_credential_that_never_matches_stalls_with_entras_answer() -> TestResult {
    let env = start_without_operator("verify-mismatch", |_| {}).await?;
    install_operator_rbac(env.plane, &env.ns, &[])?;
    install_verification(&env)?;
    // The operator is told another issuer than the one the API server signs tokens with: every FIC it writes
    // trusts the wrong issuer, a mistake no object inspection shows.
    let wrong = format!("{}/wrong", env.plane.server().trim_end_matches('/'));
    let _operator = operator(&env, "federation", &[("IDBIND_OIDC_ISSUER", &wrong)])?;
    env.kubectl(&["create", "serviceaccount", "orders"])?;
    env.binding("orders", "orders", &["Key Vault Secrets User"])?;
    env.wait_condition(
        "orders",
        FEDERATION_VERIFIED,
        "False",
        Reason::PropagationPending,
        Duration::from_secs(60),
    )
    .await?;
    env.wait_condition("orders", STALLED, "True", Reason::FederationMismatch, Duration::from_secs(60))
        .await?;
    let (_, message) = message_of(&env, "orders", READY)?;
    assert!(message.contains("AADSTS70021"), "Entra's answer is in the message: {message}");
    assert_eq!(env.condition("orders", READY)?.0, "False");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_token_permission_verification_says_what_to_install() -> TestResult {
    let env = start_without_operator("verify-norbac", |_| {}).await?;
    install_operator_rbac(env.plane, &env.ns, &[])?;
    let _operator = operator(&env, "federation", &[])?;
    env.kubectl(&["create", "serviceaccount", "orders"])?;
    env.binding("orders", "orders", &["Key Vault Secrets User"])?;
    env.wait_condition("orders", STALLED, "True", Reason::VerificationForbidden, Duration::from_secs(60))
        .await?;
    let (_, message) = message_of(&env, "orders", READY)?;
    assert!(message.contains("config/components/verification"), "{message}");
    Ok(())
}

/// (reason, message) of a condition.
fn message_of(env: &Env, binding: &str, type_: &str) -> Result<(String, String), TestError> {
    let text = env.kubectl(&["get", "wib", binding, "-o", "json"])?;
    let b: Value = serde_json::from_str(&text)?;
    let conditions = b["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let c = conditions.into_iter().find(|c| c["type"] == type_).unwrap_or(Value::Null);
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    Ok((text(&c["reason"]), text(&c["message"])))
}
