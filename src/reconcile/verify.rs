//! Step 6, verify (with `--verify` on): before `Ready`, prove the binding works as its workload will use it.
//! idbind asks the API server for a short-lived token of the bound ServiceAccount with the exchange audience
//! (as the kubelet projects it into a pod), exchanges it at Entra for the identity, and, with access
//! verification, lists one item of each vault with the token Entra gave (names at most, never a value).
//! Neither token is logged, counted or stored. What the answers mean, given Azure's propagation delays, is
//! [`crate::core::proof`]'s to say.
//!
//! A binding proven for its current spec and holdings is not proven again at each resync: the status says
//! what was proven, for which client id and role assignments, and anything that changed them starts over.

use std::{sync::Arc, time::Duration};

use azure_core::{HttpClient, Url, auth::AccessToken};
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::ResourceExt;

use super::{Context, Halt};
use crate::core::reason::Reason;
use crate::{
    api::binding::{TOKEN_EXCHANGE_AUDIENCE, WorkloadIdentityBinding, WorkloadIdentityBindingStatus},
    azure::{
        data_plane,
        workload_identity::{self, Assertion, ExchangeError},
    },
    core::{
        conditions,
        desired::Wanted,
        plan::IdentityIds,
        proof::{self, AADSTS_NO_MATCHING_FEDERATION, Exchange, Finding, Verification},
        report::{Failure, Held, Outcome, Part, Proof},
    },
    k8s::{self, KubeError},
};

/// The API server's shortest token lifetime: the token is used once, at once.
const TOKEN_SECONDS: i64 = 600;

/// What verification needs: the setting, and where Entra and Key Vault are.
pub struct Verifier {
    pub verification: Verification,
    pub http: Arc<dyn HttpClient>,
    pub authority_host: Url,
    /// The scope exchanged for when only federation is verified (the cloud's ARM audience + `/.default`).
    pub arm_scope: String,
    /// The scope of Key Vault tokens (`https://vault.azure.net/.default` in the public cloud).
    pub vault_scope: String,
}

/// The bind step's outcome, proven when verification is on: `Converged` with its proof, `Unproven` while
/// Azure propagates, `Stalled` when it will not work.
pub async fn prove(
    b: &WorkloadIdentityBinding,
    wanted: &Wanted,
    ids: &IdentityIds,
    bound: Outcome,
    ctx: &Context,
) -> Result<Outcome, Halt> {
    let Some(verifier) = ctx.verifier.as_ref().filter(|v| v.verification.enabled()) else {
        return Ok(bound);
    };
    let Outcome::Converged { held, service_account, previous_client_id, proof: None, wiring } = bound else {
        return Ok(bound);
    };
    let status = b.status.clone().unwrap_or_default();
    if let Some(proof) = already_proven(&status, &held, b.metadata.generation, &verifier.verification) {
        let proof = Some(proof);
        return Ok(Outcome::Converged { held, service_account, previous_client_id, proof, wiring });
    }
    let checked = check(b, wanted, ids, &service_account, &status, verifier, ctx).await;
    Ok(match checked {
        Checked::Proven(proof) => {
            Outcome::Converged { held, service_account, previous_client_id, proof: Some(proof), wiring }
        }
        Checked::Pending { part, federation, message, wait } => {
            Outcome::Unproven { held, service_account, part, federation, message, wait, wiring }
        }
        Checked::Stopped(outcome) => outcome,
    })
}

/// Where the checks ended.
enum Checked {
    Proven(Proof),
    Pending { part: Part, federation: Option<String>, message: String, wait: Duration },
    Stopped(Outcome),
}

async fn check(
    b: &WorkloadIdentityBinding,
    wanted: &Wanted,
    ids: &IdentityIds,
    service_account: &str,
    status: &WorkloadIdentityBindingStatus,
    verifier: &Verifier,
    ctx: &Context,
) -> Checked {
    let ns = b.namespace().unwrap_or_default();
    let token =
        k8s::service_account_token(&ctx.client, &ns, service_account, TOKEN_EXCHANGE_AUDIENCE, TOKEN_SECONDS);
    let assertion = match token.await {
        Ok(token) => token,
        Err(e) => return Checked::Stopped(token_failure(&e)),
    };
    let access = verifier.verification.access && !wanted.probes.is_empty();
    let scope = if access { &verifier.vault_scope } else { &verifier.arm_scope };
    let token = match exchange(verifier, ids, &assertion, scope, status).await {
        Ok(token) => token,
        Err(checked) => return checked,
    };
    let federation = format!(
        "ServiceAccount {ns}/{service_account}'s token exchanges at Entra for identity {}",
        ids.client_id
    );
    if !access {
        let nothing = "no vault whose access idbind can prove (custom roles, or no vault)".to_string();
        let access = verifier.verification.access.then_some(nothing);
        return Checked::Proven(Proof { federation, access });
    }
    open_vaults(wanted, token.token.secret(), federation, status, verifier).await
}

/// The federation check: the workload's token exchanged for the identity, for `scope`.
async fn exchange(
    verifier: &Verifier,
    ids: &IdentityIds,
    assertion: &str,
    scope: &str,
    status: &WorkloadIdentityBindingStatus,
) -> Result<AccessToken, Checked> {
    let grant = Assertion {
        authority_host: &verifier.authority_host,
        tenant_id: &ids.tenant_id,
        client_id: &ids.client_id,
        assertion,
    };
    let e = match workload_identity::exchange(verifier.http.as_ref(), &grant, &[scope]).await {
        Ok(token) => return Ok(token),
        Err(ExchangeError::Unavailable(message)) => {
            let failure = failure(Part::Federation, Reason::EntraUnavailable, message);
            return Err(Checked::Stopped(Outcome::Transient(failure)));
        }
        Err(e) => e,
    };
    let exchange = if e.is(AADSTS_NO_MATCHING_FEDERATION) {
        Exchange::NoMatchingFederation(e.to_string())
    } else {
        Exchange::Refused(e.to_string())
    };
    let pending_for = pending_for(status, conditions::FEDERATION_VERIFIED);
    let finding = proof::federation(&exchange, pending_for, verifier.verification.federation_window);
    Err(found(Part::Federation, None, finding))
}

/// The access check: one listing in each vault with the identity's Key Vault token.
async fn open_vaults(
    wanted: &Wanted,
    token: &str,
    federation: String,
    status: &WorkloadIdentityBindingStatus,
    verifier: &Verifier,
) -> Checked {
    let pending_for = pending_for(status, conditions::ACCESS_VERIFIED);
    for probe in &wanted.probes {
        let answer = match data_plane::list(verifier.http.as_ref(), &probe.uri, token, probe.listing).await {
            Ok(answer) => answer,
            Err(e) => {
                let failure = failure(Part::Access, Reason::KeyVaultUnavailable, e.to_string());
                return Checked::Stopped(Outcome::Transient(failure));
            }
        };
        let vault = probe.vault.name().unwrap_or_default().to_string();
        let finding = proof::access(&vault, &answer, pending_for, verifier.verification.access_window);
        if finding != Finding::Proven {
            return found(Part::Access, Some(federation), finding);
        }
    }
    let listed: Vec<String> = wanted
        .probes
        .iter()
        .map(|p| format!("{} in {}", p.listing.collection(), p.vault.name().unwrap_or_default()))
        .collect();
    let access = format!("the identity's token lists {}", listed.join(", "));
    Checked::Proven(Proof { federation, access: Some(access) })
}

/// A finding that stops the checks at `part`.
fn found(part: Part, federation: Option<String>, finding: Finding) -> Checked {
    match finding {
        Finding::Proven => {
            Checked::Proven(Proof { federation: federation.unwrap_or_default(), access: None })
        }
        Finding::Pending { message, wait } => Checked::Pending { part, federation, message, wait },
        Finding::Failed { reason, message } => {
            Checked::Stopped(Outcome::Stalled(failure(part, reason, message)))
        }
    }
}

fn failure(part: Part, reason: Reason, message: String) -> Failure {
    Failure { part, reason, message, retry_after: None }
}

/// The TokenRequest failed: without `serviceaccounts/token` (the verification install adds it) nothing can be
/// proven, which needs an administrator; anything else is retried.
fn token_failure(e: &KubeError) -> Outcome {
    let forbidden = matches!(e, KubeError::Api(kube::Error::Api(s)) if s.code == 403);
    if forbidden {
        let message = format!(
            "verification needs a token of the ServiceAccount, and the API server refused it ({e}); install \
             the verification component (config/components/verification), which grants serviceaccounts/token \
             for the exchange audience only"
        );
        Outcome::Stalled(failure(Part::Federation, Reason::VerificationForbidden, message))
    } else {
        Outcome::Transient(failure(Part::Federation, Reason::KubernetesApiError, e.to_string()))
    }
}

/// How long the check of `condition_type` has been pending: since its condition went false for propagation
/// (the status is a clock here, never an authority: it only spaces the retries and ends the wait).
fn pending_for(status: &WorkloadIdentityBindingStatus, condition_type: &str) -> Duration {
    let pending = status.conditions.iter().find(|c| {
        c.type_ == condition_type && c.status == "False" && c.reason == Reason::PropagationPending.as_str()
    });
    pending.map_or(Duration::ZERO, |c| since(&c.last_transition_time))
}

fn since(t: &Time) -> Duration {
    let elapsed = Timestamp::now().as_second() - t.0.as_second();
    Duration::from_secs(u64::try_from(elapsed).unwrap_or(0))
}

/// The proof the status already records for exactly this spec and these holdings, if any.
fn already_proven(
    status: &WorkloadIdentityBindingStatus,
    held: &Held,
    generation: Option<i64>,
    verification: &Verification,
) -> Option<Proof> {
    let proven = |type_: &str| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == "True" && c.observed_generation == generation)
            .map(|c| c.message.clone())
    };
    let same_holdings = status.identity.as_ref() == Some(&held.identity)
        && status.federated_credential.as_ref() == Some(&held.federated_credential)
        && status.role_assignments == held.role_assignments
        && status.access_policies == held.access_policies;
    let federation = proven(conditions::FEDERATION_VERIFIED).filter(|_| same_holdings)?;
    let access = match verification.access {
        true => Some(proven(conditions::ACCESS_VERIFIED)?),
        false => None,
    };
    Some(Proof { federation, access })
}
