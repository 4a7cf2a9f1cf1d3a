//! A vault's secrets, certificates and keys: writing versions (the data plane's set-secret, and the admin API
//! and seeds for all three) and answering in the Key Vault REST API's shapes (SecretBundle, SecretItem,
//! CertificateBundle, KeyBundle…; spec examples `GetSecret`, `GetSecrets`, `GetCertificate`, `GetKey` of
//! 7.5). Ids are `{vault base}/{kind}/{name}[/{version}]`, the base being `https://{vault}.{suffix}`.

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use super::{Kind, KvError};
use crate::shared::Sim;
use crate::state::{
    CertificateVersion, KeyVersion, SecretVersion, State, Tags, VaultObject, VersionMeta, key,
};

/// A vault with soft delete on (90 days) and purge protection off, as the simulator's vaults are.
const RECOVERY_LEVEL: &str = "Recoverable+Purgeable";
const RECOVERABLE_DAYS: u64 = 90;

/// What a set-secret request (or a seed) gives.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretInput {
    pub value: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub tags: Option<Tags>,
}

impl SecretInput {
    pub fn from_body(body: &[u8]) -> Result<Self, KvError> {
        let input: Self = serde_json::from_slice(body)
            .map_err(|e| KvError::bad_parameter(format!("The request body is not valid: {e}")))?;
        if input.value.is_none() {
            // [UNVERIFIED] wording; `value` is the one required field of SecretSetParameters [SPEC].
            return Err(KvError::bad_parameter("Property value is required."));
        }
        Ok(input)
    }

    pub fn value(value: &str) -> Self {
        Self { value: Some(value.to_owned()), ..Self::default() }
    }
}

/// `maxresults` (1–25, default 25) and our `$skiptoken` (an offset), and what a nextLink repeats.
#[derive(Debug, Clone)]
pub struct Paging {
    skip: usize,
    size: usize,
    maxresults: Option<usize>,
    api_version: String,
}

impl Paging {
    pub fn from_query(q: &crate::arm::Query, default: usize, api_version: &str) -> Result<Self, KvError> {
        let maxresults = match q.get("maxresults") {
            None => None,
            Some(m) => match m.parse::<usize>() {
                Ok(n) if (1..=25).contains(&n) => Some(n),
                // [UNVERIFIED] wording; the range is the spec's.
                _ => {
                    return Err(KvError::bad_parameter(format!(
                        "The value '{m}' of maxresults is invalid; it must be between 1 and 25."
                    )));
                }
            },
        };
        let skip = q.get("$skiptoken").and_then(|t| t.parse().ok()).unwrap_or(0);
        Ok(Self {
            skip,
            size: maxresults.unwrap_or(default.clamp(1, 25)),
            maxresults,
            api_version: api_version.to_owned(),
        })
    }

    /// `{value, nextLink}` of a page; the nextLink is null on the last one (as in the spec's examples).
    fn page(&self, items: Vec<Value>, link_base: &str) -> Value {
        let total = items.len();
        let end = self.skip.saturating_add(self.size).min(total);
        let value: Vec<Value> = items.into_iter().skip(self.skip).take(self.size).collect();
        let next = (end < total).then(|| {
            let mut link = format!("{link_base}?api-version={}&$skiptoken={end}", self.api_version);
            if let Some(m) = self.maxresults {
                link.push_str(&format!("&maxresults={m}"));
            }
            link
        });
        json!({ "value": value, "nextLink": next })
    }
}

fn not_found(kind: Kind, what: &str) -> KvError {
    let code = match kind {
        Kind::Secret => "SecretNotFound",
        Kind::Certificate => "CertificateNotFound",
        Kind::Key => "KeyNotFound",
    };
    let k = kind.singular();
    // [OBS] Key Vault's wording.
    KvError::new(
        StatusCode::NOT_FOUND,
        code,
        format!(
            "A {k} with (name/id) {what} was not found in this key vault. If you recently deleted this {k} you \
             may be able to recover it using the correct recovery command. For help resolving this issue, \
             please see https://go.microsoft.com/fwlink/?linkid=2125182"
        ),
    )
}

fn vault_not_found(vault: &str) -> KvError {
    KvError::new(StatusCode::NOT_FOUND, "VaultNotFound", format!("The vault '{vault}' does not exist."))
}

/// Object names: `^[0-9a-zA-Z-]+$` [SPEC], at most 127 characters [DOC].
pub fn check_name(name: &str) -> Result<(), KvError> {
    if (1..=127).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        Ok(())
    } else {
        // [OBS] wording.
        Err(KvError::bad_parameter(format!("The request URI contains an invalid name: {name}")))
    }
}

fn meta(now_s: u64, tags: Tags, managed: bool) -> VersionMeta {
    VersionMeta {
        version: uuid::Uuid::new_v4().simple().to_string(),
        enabled: true,
        created: now_s,
        updated: now_s,
        tags,
        managed,
    }
}

fn push<V>(map: &mut std::collections::BTreeMap<String, VaultObject<V>>, name: &str, version: V) {
    map.entry(key(name))
        .or_insert_with(|| VaultObject { name: name.to_owned(), versions: Vec::new() })
        .versions
        .push(version);
}

/// Writes a new version of a secret (every set is a new version, even with the same value, as in Key Vault).
pub fn put_secret(
    s: &mut State,
    vault: &str,
    name: &str,
    input: SecretInput,
    now_s: u64,
) -> Result<SecretVersion, KvError> {
    check_name(name)?;
    let v = s.vault_by_name_mut(vault).ok_or_else(|| vault_not_found(vault))?;
    let version = SecretVersion {
        meta: meta(now_s, input.tags.unwrap_or_default(), false),
        value: input.value.unwrap_or_default(),
        content_type: input.content_type,
    };
    push(&mut v.secrets, name, version.clone());
    Ok(version)
}

/// A self-signed certificate (ECDSA P-256, a year's validity) with the key and the secret Key Vault keeps
/// behind it under the same name and version: the secret holds the PEM key and certificate (what `getSecret`
/// on a certificate returns), both marked managed.
pub fn put_certificate(
    s: &mut State,
    vault: &str,
    name: &str,
    now_s: u64,
) -> Result<CertificateVersion, KvError> {
    check_name(name)?;
    let v = s.vault_by_name_mut(vault).ok_or_else(|| vault_not_found(vault))?;
    let generated = generate_certificate(name, now_s)?;
    let m = meta(now_s, Tags::new(), false);
    let managed = VersionMeta { managed: true, ..m.clone() };
    push(&mut v.keys, name, KeyVersion { meta: managed.clone(), jwk: generated.jwk });
    push(
        &mut v.secrets,
        name,
        SecretVersion {
            meta: managed,
            value: generated.pem,
            content_type: Some(String::from("application/x-pem-file")),
        },
    );
    let cert = CertificateVersion {
        meta: m,
        cer: generated.cer,
        x5t: generated.x5t,
        subject: format!("CN={name}"),
        not_before: now_s,
        expires: now_s + 365 * 24 * 3600,
    };
    push(&mut v.certificates, name, cert.clone());
    Ok(cert)
}

/// An EC P-256 key (public part kept; the simulator performs no crypto with it).
pub fn put_key(s: &mut State, vault: &str, name: &str, now_s: u64) -> Result<KeyVersion, KvError> {
    check_name(name)?;
    let v = s.vault_by_name_mut(vault).ok_or_else(|| vault_not_found(vault))?;
    let pair = rcgen::KeyPair::generate().map_err(internal)?;
    let version = KeyVersion { meta: meta(now_s, Tags::new(), false), jwk: ec_jwk(&pair) };
    push(&mut v.keys, name, version.clone());
    Ok(version)
}

fn internal(e: impl std::fmt::Display) -> KvError {
    KvError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", e.to_string())
}

fn ec_jwk(pair: &rcgen::KeyPair) -> Value {
    let raw = pair.public_key_raw();
    let (x, y) = match raw.get(1..33).zip(raw.get(33..65)) {
        Some((x, y)) => (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y)),
        None => (String::new(), String::new()),
    };
    json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "key_ops": ["sign", "verify"]})
}

struct GeneratedCertificate {
    cer: String,
    x5t: String,
    pem: String,
    jwk: Value,
}

fn generate_certificate(name: &str, now_s: u64) -> Result<GeneratedCertificate, KvError> {
    let pair = rcgen::KeyPair::generate().map_err(internal)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(internal)?;
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let from =
        time::OffsetDateTime::from_unix_timestamp(i64::try_from(now_s).unwrap_or(0)).map_err(internal)?;
    params.not_before = from;
    params.not_after = from + time::Duration::days(365);
    let cert = params.self_signed(&pair).map_err(internal)?;
    let der = cert.der();
    let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    Ok(GeneratedCertificate {
        cer: STANDARD.encode(der),
        x5t: URL_SAFE_NO_PAD.encode(sha1.as_ref()),
        pem: format!("{}{}", pair.serialize_pem(), cert.pem()),
        jwk: ec_jwk(&pair),
    })
}

/// The data plane's set-secret: a new version, answered with its bundle (value included).
pub async fn set_secret(
    sim: &Sim,
    vault: &str,
    name: &str,
    input: SecretInput,
    base: &str,
) -> Result<Value, KvError> {
    let now = sim.clock.now_secs();
    let written = sim.write(|s| Ok(put_secret(s, vault, name, input, now))).await.map_err(internal)??;
    let stored = sim.read(|s| {
        s.vault_by_name(vault).and_then(|(_, _, v)| v.secrets.get(&key(name)).map(|o| o.name.clone()))
    });
    Ok(secret_bundle(base, stored.as_deref().unwrap_or(name), &written))
}

/// The admin API's and `SimHandle`'s way in: writes a secret (body: a set-secret body), or makes a
/// certificate or key (body ignored), and answers with its bundle as the data plane would show it.
pub async fn admin_put(
    sim: &Sim,
    vault: &str,
    kind: Kind,
    name: &str,
    body: &[u8],
) -> Result<Value, KvError> {
    let now = sim.clock.now_secs();
    let base =
        format!("https://{}.{}", vault.to_ascii_lowercase(), super::primary_suffix(&sim.config.keyvault));
    match kind {
        Kind::Secret => set_secret(sim, vault, name, SecretInput::from_body(body)?, &base).await,
        Kind::Certificate => {
            let c = sim.write(|s| Ok(put_certificate(s, vault, name, now))).await.map_err(internal)??;
            Ok(certificate_bundle(&base, name, &c))
        }
        Kind::Key => {
            let k = sim.write(|s| Ok(put_key(s, vault, name, now))).await.map_err(internal)??;
            Ok(key_bundle(&base, name, &k))
        }
    }
}

fn attributes(m: &VersionMeta) -> Value {
    json!({
        "enabled": m.enabled,
        "created": m.created,
        "updated": m.updated,
        "recoveryLevel": RECOVERY_LEVEL,
        "recoverableDays": RECOVERABLE_DAYS,
    })
}

/// Optional fields are left out when empty, as Key Vault does.
fn common(body: &mut Value, m: &VersionMeta) {
    if !m.tags.is_empty() {
        body["tags"] = json!(m.tags);
    }
    if m.managed {
        body["managed"] = Value::Bool(true);
    }
}

pub fn secret_bundle(base: &str, name: &str, v: &SecretVersion) -> Value {
    let mut body = json!({
        "value": v.value,
        "id": format!("{base}/secrets/{name}/{}", v.meta.version),
        "attributes": attributes(&v.meta),
    });
    if let Some(ct) = &v.content_type {
        body["contentType"] = json!(ct);
    }
    if v.meta.managed {
        body["kid"] = json!(format!("{base}/keys/{name}/{}", v.meta.version));
    }
    common(&mut body, &v.meta);
    body
}

fn secret_item(id: String, v: &SecretVersion) -> Value {
    let mut body = json!({ "id": id, "attributes": attributes(&v.meta) });
    if let Some(ct) = &v.content_type {
        body["contentType"] = json!(ct);
    }
    common(&mut body, &v.meta);
    body
}

fn certificate_attributes(c: &CertificateVersion) -> Value {
    let mut a = attributes(&c.meta);
    a["nbf"] = json!(c.not_before);
    a["exp"] = json!(c.expires);
    a
}

fn certificate_bundle(base: &str, name: &str, c: &CertificateVersion) -> Value {
    let version = &c.meta.version;
    let mut body = json!({
        "id": format!("{base}/certificates/{name}/{version}"),
        "kid": format!("{base}/keys/{name}/{version}"),
        "sid": format!("{base}/secrets/{name}/{version}"),
        "x5t": c.x5t,
        "cer": c.cer,
        "attributes": certificate_attributes(c),
        "policy": {
            "id": format!("{base}/certificates/{name}/policy"),
            "key_props": {"exportable": true, "kty": "EC", "crv": "P-256", "reuse_key": false},
            "secret_props": {"contentType": "application/x-pem-file"},
            "x509_props": {"subject": c.subject, "ekus": [], "key_usage": [], "validity_months": 12},
            "issuer": {"name": "Self"},
            "attributes": {"enabled": true, "created": c.meta.created, "updated": c.meta.updated},
        },
    });
    common(&mut body, &c.meta);
    body
}

fn certificate_item(id: String, c: &CertificateVersion) -> Value {
    let mut body = json!({ "id": id, "x5t": c.x5t, "attributes": certificate_attributes(c) });
    common(&mut body, &c.meta);
    body
}

fn key_bundle(base: &str, name: &str, k: &KeyVersion) -> Value {
    let mut jwk = k.jwk.clone();
    jwk["kid"] = json!(format!("{base}/keys/{name}/{}", k.meta.version));
    let mut body = json!({ "key": jwk, "attributes": attributes(&k.meta) });
    common(&mut body, &k.meta);
    body
}

fn key_item(kid: String, k: &KeyVersion) -> Value {
    let mut body = json!({ "kid": kid, "attributes": attributes(&k.meta) });
    common(&mut body, &k.meta);
    body
}

fn pick<'a, V>(
    obj: &'a VaultObject<V>,
    version: Option<&str>,
    meta: impl Fn(&V) -> &VersionMeta,
) -> Option<&'a V> {
    match version {
        None => obj.versions.last(),
        Some(want) => obj.versions.iter().find(|v| meta(v).version.eq_ignore_ascii_case(want)),
    }
}

/// GET of an object's current version, or of one version.
pub fn get(
    s: &State,
    vault: &str,
    kind: Kind,
    name: &str,
    version: Option<&str>,
    base: &str,
) -> Result<Value, KvError> {
    let (_, _, v) = s.vault_by_name(vault).ok_or_else(|| vault_not_found(vault))?;
    let what = match version {
        Some(ver) => format!("{name}/{ver}"),
        None => name.to_owned(),
    };
    let missing = || not_found(kind, &what);
    match kind {
        Kind::Secret => {
            let o = v.secrets.get(&key(name)).ok_or_else(missing)?;
            pick(o, version, |x| &x.meta).map(|x| secret_bundle(base, &o.name, x)).ok_or_else(missing)
        }
        Kind::Certificate => {
            let o = v.certificates.get(&key(name)).ok_or_else(missing)?;
            pick(o, version, |x| &x.meta).map(|x| certificate_bundle(base, &o.name, x)).ok_or_else(missing)
        }
        Kind::Key => {
            let o = v.keys.get(&key(name)).ok_or_else(missing)?;
            pick(o, version, |x| &x.meta).map(|x| key_bundle(base, &o.name, x)).ok_or_else(missing)
        }
    }
}

/// The list of a kind: one item per object, its current version's metadata, no values.
pub fn list(s: &State, vault: &str, kind: Kind, base: &str, paging: &Paging) -> Value {
    let Some((_, _, v)) = s.vault_by_name(vault) else {
        return paging.page(Vec::new(), "");
    };
    let items: Vec<Value> = match kind {
        Kind::Secret => v
            .secrets
            .values()
            .filter_map(|o| o.versions.last().map(|x| secret_item(format!("{base}/secrets/{}", o.name), x)))
            .collect(),
        Kind::Certificate => v
            .certificates
            .values()
            .filter_map(|o| {
                o.versions.last().map(|x| certificate_item(format!("{base}/certificates/{}", o.name), x))
            })
            .collect(),
        Kind::Key => v
            .keys
            .values()
            .filter_map(|o| o.versions.last().map(|x| key_item(format!("{base}/keys/{}", o.name), x)))
            .collect(),
    };
    paging.page(items, &format!("{base}/{}", kind.plural()))
}

/// The versions of one object, with their full ids and no values. [UNVERIFIED] an object that does not exist
/// lists no versions rather than answering 404.
pub fn versions(
    s: &State,
    vault: &str,
    kind: Kind,
    name: &str,
    base: &str,
    paging: &Paging,
) -> Result<Value, KvError> {
    let (_, _, v) = s.vault_by_name(vault).ok_or_else(|| vault_not_found(vault))?;
    let id = |n: &str, ver: &str| format!("{base}/{}/{n}/{ver}", kind.plural());
    let items: Vec<Value> = match kind {
        Kind::Secret => v.secrets.get(&key(name)).map_or_else(Vec::new, |o| {
            o.versions.iter().map(|x| secret_item(id(&o.name, &x.meta.version), x)).collect()
        }),
        Kind::Certificate => v.certificates.get(&key(name)).map_or_else(Vec::new, |o| {
            o.versions.iter().map(|x| certificate_item(id(&o.name, &x.meta.version), x)).collect()
        }),
        Kind::Key => v.keys.get(&key(name)).map_or_else(Vec::new, |o| {
            o.versions.iter().map(|x| key_item(id(&o.name, &x.meta.version), x)).collect()
        }),
    };
    Ok(paging.page(items, &format!("{base}/{}/{name}/versions", kind.plural())))
}
