//! Key Vault's data plane, as far as proving a binding's access needs: one listing call with the workload's
//! token, which reveals names at most and never a value. The vault's address is the `vaultUri` ARM reports.

use azure_core::{HttpClient, Method, Request, Url};

use crate::core::proof::{Access, Listing};

/// The data-plane API version (supported by every Key Vault and by the simulator).
const API_VERSION: &str = "7.4";

/// A listing that got no usable answer (no connection, a 5xx, a 429, an unexpected status).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Key Vault {vault}: {message}")]
pub struct Unavailable {
    pub vault: String,
    pub message: String,
}

/// Lists one item of `listing` in the vault at `vault_uri` with `token` (an Entra token for Key Vault):
/// granted, or denied with Key Vault's code and message. The token is sent to that address only.
pub async fn list(
    http: &dyn HttpClient,
    vault_uri: &str,
    token: &str,
    listing: Listing,
) -> Result<Access, Unavailable> {
    let unavailable = |message: String| Unavailable { vault: vault_uri.to_string(), message };
    let base = Url::parse(vault_uri).map_err(|e| unavailable(format!("vault URI: {e}")))?;
    let mut url = base.join(listing.collection()).map_err(|e| unavailable(format!("vault URI: {e}")))?;
    url.query_pairs_mut().append_pair("api-version", API_VERSION).append_pair("maxresults", "1");
    let mut request = Request::new(url, Method::Get);
    request.insert_header(azure_core::headers::AUTHORIZATION, format!("Bearer {token}"));
    let response =
        http.execute_request(&request).await.map_err(|e| unavailable(format!("no answer: {e}")))?;
    let status = u16::from(response.status());
    let body = response.into_body().collect().await.map_err(|e| unavailable(format!("reading: {e}")))?;
    match status {
        200 => Ok(Access::Granted),
        403 => Ok(Access::Denied(denial(status, &body))),
        401 => Ok(Access::TokenRefused(denial(status, &body))),
        other => Err(unavailable(format!("HTTP {other}: {}", String::from_utf8_lossy(&body)))),
    }
}

/// Key Vault's error as one line: `HTTP 403 Forbidden (ForbiddenByRbac): Caller is not authorized ...`.
fn denial(status: u16, body: &[u8]) -> String {
    let answer: serde_json::Value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
    let error = &answer["error"];
    let code = error["code"].as_str().unwrap_or("unknown");
    let message = error["message"].as_str().unwrap_or_default();
    match error["innererror"]["code"].as_str() {
        Some(inner) => format!("HTTP {status} {code} ({inner}): {message}"),
        None => format!("HTTP {status} {code}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_reads_as_key_vaults_code_and_message() {
        let body = br#"{"error":{"code":"Forbidden","message":"Caller is not authorized to perform action on resource.","innererror":{"code":"ForbiddenByRbac"}}}"#;
        assert_eq!(
            denial(403, body),
            "HTTP 403 Forbidden (ForbiddenByRbac): Caller is not authorized to perform action on resource."
        );
        assert_eq!(denial(401, b"not json"), "HTTP 401 unknown: ");
    }
}
