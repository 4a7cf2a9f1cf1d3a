//! Access tokens the simulator issues and the ARM routes accept: ES256 JWTs signed with a key the simulator
//! generates (kept in the state file so tokens survive a restart). Clients treat access tokens as opaque, so
//! ES256 instead of Entra's RS256 changes nothing for them and avoids RSA key generation at every start.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::SimError;
use crate::harness::persist::SigningKeyFile;

/// Claims of a simulator access token (the subset of Entra's v1 access-token claims that ARM and our operator
/// look at).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessClaims {
    pub aud: String,
    pub iss: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub oid: String,
    pub tid: String,
    pub appid: String,
    pub sub: String,
    pub idtyp: String,
    pub ver: String,
}

pub struct TokenIssuer {
    kid: String,
    pkcs8_pem: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    x: String,
    y: String,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer").field("kid", &self.kid).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("the token is malformed or its signature is invalid: {0}")]
    Invalid(String),
}

impl TokenIssuer {
    pub fn generate() -> Result<Self, SimError> {
        let key = rcgen::KeyPair::generate().map_err(|e| SimError::Tls(format!("token signing key: {e}")))?;
        let kid = uuid::Uuid::new_v4().simple().to_string();
        Self::from_parts(kid, key.serialize_pem())
    }

    pub fn from_file(file: &SigningKeyFile) -> Result<Self, SimError> {
        Self::from_parts(file.kid.clone(), file.pkcs8_pem.clone())
    }

    pub fn to_file(&self) -> SigningKeyFile {
        SigningKeyFile { kid: self.kid.clone(), pkcs8_pem: self.pkcs8_pem.clone() }
    }

    fn from_parts(kid: String, pkcs8_pem: String) -> Result<Self, SimError> {
        let key_err = |e: &dyn std::fmt::Display| SimError::Tls(format!("token signing key: {e}"));
        let pair = rcgen::KeyPair::from_pem(&pkcs8_pem).map_err(|e| key_err(&e))?;
        let raw = pair.public_key_raw();
        // An uncompressed P-256 point: 0x04 || X (32 bytes) || Y (32 bytes).
        if raw.len() != 65 || raw[0] != 4 {
            return Err(SimError::Tls(String::from("token signing key is not an uncompressed P-256 key")));
        }
        let x = URL_SAFE_NO_PAD.encode(&raw[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&raw[33..65]);
        let encoding = EncodingKey::from_ec_pem(pkcs8_pem.as_bytes()).map_err(|e| key_err(&e))?;
        let decoding = DecodingKey::from_ec_components(&x, &y).map_err(|e| key_err(&e))?;
        Ok(Self { kid, pkcs8_pem, encoding, decoding, x, y })
    }

    pub fn issue(&self, claims: &AccessClaims) -> Result<String, SimError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some(String::from("JWT"));
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| SimError::Tls(format!("signing a token: {e}")))
    }

    /// Checks the signature and decodes the claims. Expiry is checked by the caller against the simulator's
    /// clock (which tests can advance), not against wall time.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &validation)
            .map(|d| d.claims)
            .map_err(|e| TokenError::Invalid(e.to_string()))
    }

    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
            "kid": self.kid, "x": self.x, "y": self.y,
        }]})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_verify_roundtrip_and_reload() -> Result<(), Box<dyn std::error::Error>> {
        let issuer = TokenIssuer::generate()?;
        let claims = AccessClaims {
            aud: "https://management.azure.com/".into(),
            iss: "https://sts.windows.net/t/".into(),
            iat: 1,
            nbf: 1,
            exp: 2,
            oid: "o".into(),
            tid: "t".into(),
            appid: "a".into(),
            sub: "o".into(),
            idtyp: "app".into(),
            ver: "1.0".into(),
        };
        let token = issuer.issue(&claims)?;
        assert_eq!(issuer.verify(&token), Ok(claims.clone()));
        let reloaded = TokenIssuer::from_file(&issuer.to_file())?;
        assert_eq!(reloaded.verify(&token), Ok(claims));
        let other = TokenIssuer::generate()?;
        assert!(other.verify(&token).is_err());
        Ok(())
    }
}
