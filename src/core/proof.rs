//! Proof that a binding works the way its workload will use it: the ServiceAccount's token exchanges at Entra
//! for the identity (federation), and the token Entra gives opens each vault (access). Pure: which call
//! proves a role without revealing a value, and what each answer means given how long Azure may take to
//! propagate a change.
//!
//! Azure documents both delays: a new or changed federated credential reaches the token service after "a few
//! minutes" (until then the exchange fails with AADSTS70021), and role assignment changes can take up to 30
//! minutes to take effect (docs/azure.md#propagation). Inside the expected window a failure is
//! `PropagationPending` and retried; after it, it is reported with Azure's own message.

use std::time::Duration;

use super::roles::{BUILTIN_ROLES, Permissions};
use crate::core::reason::Reason;

/// Entra's code for "no federated credential matches the assertion" (not yet, or not at all).
pub const AADSTS_NO_MATCHING_FEDERATION: u64 = 70021;

/// What verification checks, from the operator's setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verification {
    pub federation: bool,
    /// Implies `federation`: the vault token comes from the same exchange.
    pub access: bool,
    /// How long after a change an AADSTS70021 still counts as propagation.
    pub federation_window: Duration,
    /// How long after a change a Key Vault denial still counts as propagation.
    pub access_window: Duration,
}

impl Verification {
    pub fn off() -> Self {
        Verification::default()
    }

    pub fn enabled(&self) -> bool {
        self.federation || self.access
    }
}

/// A listing call that proves a role works, revealing names at most, never a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listing {
    Secrets,
    Certificates,
    Keys,
}

impl Listing {
    /// The data-plane collection it lists.
    pub fn collection(self) -> &'static str {
        match self {
            Listing::Secrets => "secrets",
            Listing::Certificates => "certificates",
            Listing::Keys => "keys",
        }
    }
}

/// The listing a built-in Key Vault role allows (by role definition GUID); `None` for a role idbind cannot
/// prove without knowing its data actions (a custom role).
pub fn listing_for_role(role_guid: &str) -> Option<Listing> {
    let role = BUILTIN_ROLES
        .iter()
        .find(|r| r.guid.eq_ignore_ascii_case(role_guid) && r.name.starts_with("Key Vault "))?;
    Some(match role.name {
        "Key Vault Certificate User" | "Key Vault Certificates Officer" => Listing::Certificates,
        "Key Vault Crypto User" | "Key Vault Crypto Officer" => Listing::Keys,
        // Secrets User, Secrets Officer, Reader (metadata of everything), Administrator.
        _ => Listing::Secrets,
    })
}

/// The listing an access-policy entry allows, if any.
pub fn listing_for_permissions(p: &Permissions) -> Option<Listing> {
    let lists = |set: &std::collections::BTreeSet<String>| set.iter().any(|s| s.eq_ignore_ascii_case("list"));
    if lists(&p.secrets) {
        Some(Listing::Secrets)
    } else if lists(&p.certificates) {
        Some(Listing::Certificates)
    } else if lists(&p.keys) {
        Some(Listing::Keys)
    } else {
        None
    }
}

/// What the token exchange answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exchange {
    Succeeded,
    /// AADSTS70021: no federated credential matches the assertion's issuer, subject and audience.
    NoMatchingFederation(String),
    /// Any other refusal (the identity is gone, the client id is wrong, ...).
    Refused(String),
}

/// What a vault answered to the listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    Granted,
    /// 403: Key Vault's code and message.
    Denied(String),
    /// 401: the vault does not take the token at all (another audience or tenant): no propagation explains
    /// it.
    TokenRefused(String),
}

/// What one check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    Proven,
    /// Inside the propagation window; try again after `wait`.
    Pending {
        message: String,
        wait: Duration,
    },
    /// Past the window, or a failure no propagation explains.
    Failed {
        reason: Reason,
        message: String,
    },
}

/// The federation check, the exchange having failed for `pending_for` so far.
pub fn federation(exchange: &Exchange, pending_for: Duration, window: Duration) -> Finding {
    match exchange {
        Exchange::Succeeded => Finding::Proven,
        Exchange::NoMatchingFederation(message) if pending_for < window => Finding::Pending {
            message: format!(
                "Entra does not match the federated credential yet ({} of the expected {} s of propagation): \
                 {message}",
                pending_for.as_secs(),
                window.as_secs()
            ),
            wait: retry_after(pending_for),
        },
        Exchange::NoMatchingFederation(message) => Finding::Failed {
            reason: Reason::FederationMismatch,
            message: format!(
                "the ServiceAccount's token still does not exchange after {} s (the issuer, subject or audience \
                 of the federated credential does not match what the cluster issues): {message}",
                pending_for.as_secs()
            ),
        },
        Exchange::Refused(message) => {
            Finding::Failed { reason: Reason::FederationMismatch, message: message.clone() }
        }
    }
}

/// The access check of one vault, denied for `pending_for` so far.
pub fn access(vault: &str, answer: &Access, pending_for: Duration, window: Duration) -> Finding {
    match answer {
        Access::Granted => Finding::Proven,
        Access::Denied(message) if pending_for < window => Finding::Pending {
            message: format!(
                "vault {vault} does not honour the role yet ({} of the expected {} s of propagation): {message}",
                pending_for.as_secs(),
                window.as_secs()
            ),
            wait: retry_after(pending_for),
        },
        Access::Denied(message) => Finding::Failed {
            reason: Reason::AccessDenied,
            message: format!(
                "vault {vault} still denies the identity after {} s: {message}",
                pending_for.as_secs()
            ),
        },
        Access::TokenRefused(message) => Finding::Failed {
            reason: Reason::AccessDenied,
            message: format!(
                "vault {vault} refuses the identity's token (check the operator's Key Vault audience setting): \
                 {message}"
            ),
        },
    }
}

/// How long to wait before trying again: soon at first (propagation is often quick), then less often, never
/// more than 30 s apart.
fn retry_after(pending_for: Duration) -> Duration {
    (pending_for / 4).clamp(Duration::from_secs(2), Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRETS_USER: &str = "4633458b-17de-408a-b874-0445c86b69e6";
    const CERT_USER: &str = "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba";
    const CRYPTO_USER: &str = "12338af0-0e69-4776-bea7-57ae8d297424";
    const READER: &str = "21090545-7ca7-4776-b22c-e363652d74d2";

    #[test]
    fn each_reader_role_is_proven_by_a_listing_it_allows() {
        let table = [
            (SECRETS_USER, Some(Listing::Secrets)),
            (&SECRETS_USER.to_uppercase(), Some(Listing::Secrets)),
            (READER, Some(Listing::Secrets)),
            (CERT_USER, Some(Listing::Certificates)),
            (CRYPTO_USER, Some(Listing::Keys)),
            ("0f0f0f0f-0000-4000-8000-000000000001", None),
            // Storage Blob Data Reader: known, but nothing a vault listing proves.
            ("2a2b9908-6ea1-4ae2-8e65-a410df84e7d1", None),
        ];
        for (role, want) in table {
            assert_eq!(listing_for_role(role), want, "{role}");
        }
        let perms = |s: &[&str], c: &[&str]| Permissions {
            secrets: s.iter().map(ToString::to_string).collect(),
            certificates: c.iter().map(ToString::to_string).collect(),
            keys: Default::default(),
        };
        assert_eq!(listing_for_permissions(&perms(&["get", "list"], &[])), Some(Listing::Secrets));
        assert_eq!(listing_for_permissions(&perms(&["get"], &["List"])), Some(Listing::Certificates));
        assert_eq!(listing_for_permissions(&perms(&["get"], &[])), None);
    }

    #[test]
    fn a_failure_inside_the_window_is_pending_and_after_it_is_reported() {
        let window = Duration::from_secs(300);
        let no_match =
            Exchange::NoMatchingFederation("AADSTS70021: No matching federated identity record".into());
        let s = Duration::from_secs;
        assert_eq!(federation(&Exchange::Succeeded, s(0), window), Finding::Proven);
        assert!(matches!(federation(&no_match, s(0), window), Finding::Pending { wait, .. } if wait == s(2)));
        assert!(
            matches!(federation(&no_match, s(200), window), Finding::Pending { wait, .. } if wait == s(30))
        );
        assert!(
            matches!(federation(&no_match, s(300), window), Finding::Failed { reason, ref message } if reason == Reason::FederationMismatch && message.contains("AADSTS70021"))
        );
        // Another refusal is no propagation: reported at once.
        let refused = Exchange::Refused("AADSTS700016: application not found".into());
        assert!(matches!(federation(&refused, s(0), window), Finding::Failed { .. }));
        let denied = Access::Denied("ForbiddenByRbac: Caller is not authorized".into());
        assert!(matches!(access("kv", &denied, s(10), window), Finding::Pending { .. }));
        assert!(
            matches!(access("kv", &denied, s(301), window), Finding::Failed { reason, .. } if reason == Reason::AccessDenied)
        );
        assert_eq!(access("kv", &Access::Granted, s(0), window), Finding::Proven);
    }
}
