//! Starting a simulator in-process and controlling it: what the operator's tests and benchmarks use, and what
//! `idbind-sim` wraps.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{BehaviourConfig, LatencyConfig, SimConfig, ThrottleConfig};
use crate::entra::tokens::AccessClaims;
use crate::error::SimError;
use crate::harness::counters::CounterSnapshot;
use crate::harness::faults::{FaultRule, FaultStatus};
use crate::harness::holds::{HoldSpec, HoldsStatus};
use crate::harness::persist::{Persister, Snapshot};
use crate::seed::Seed;
use crate::shared::{Sim, Urls, lock};
use crate::state::State;

pub struct Simulator;

/// A running simulator. Dropping it stops the listeners; `shutdown` does it gracefully and makes sure the
/// last state is on disk.
pub struct SimHandle {
    sim: Arc<Sim>,
    shutdown: watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<()>>,
    https_url: Option<String>,
    http_url: Option<String>,
    proxy_url: Option<String>,
    ca_pem: Option<String>,
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), SimError> {
    let l = TcpListener::bind(addr).await.map_err(|source| SimError::Bind { addr, source })?;
    let local = l.local_addr().map_err(|source| SimError::Bind { addr, source })?;
    Ok((l, local))
}

fn url(scheme: &str, addr: SocketAddr) -> String {
    // Loopback listeners are announced as 127.0.0.1, which the certificate names as an IP SAN.
    let host = if addr.ip().is_loopback() { String::from("127.0.0.1") } else { addr.ip().to_string() };
    match addr {
        SocketAddr::V6(_) if !addr.ip().is_loopback() => {
            format!("{scheme}://[{host}]:{}", addr.port())
        }
        _ => format!("{scheme}://{host}:{}", addr.port()),
    }
}

impl Simulator {
    /// Starts a simulator on a multi-thread tokio runtime (the caller's).
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        if let Some(dir) = &config.state_dir {
            std::fs::create_dir_all(dir).map_err(|source| SimError::Write { path: dir.clone(), source })?;
        }
        if config.proxy_addr.is_some() && matches!(config.tls, crate::config::TlsConfig::Files { .. }) {
            return Err(SimError::Config(String::from(
                "the CONNECT proxy needs the generated CA (it serves Azure's host names); drop --tls-cert",
            )));
        }
        // One serving certificate for every listener: the loopback names and the hosts the proxy plays.
        let tls = match (config.https_addr, config.proxy_addr) {
            (None, None) => None,
            _ => Some(crate::tls::load_with(
                &config.tls,
                config.state_dir.as_deref(),
                &crate::proxy::certificate_names(&config),
            )?),
        };
        let loaded = match &config.state_file {
            Some(p) => crate::harness::persist::load(p)?,
            None => None,
        };
        let ca_pem = tls.as_ref().map(|t| t.ca_pem.clone());
        let sim = Arc::new(Sim::new(config.clone(), loaded, ca_pem.clone())?);

        let https = match config.https_addr {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let http = match config.http_addr {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let proxy = match config.proxy_addr {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let proxy_url = proxy.as_ref().map(|(_, a)| url("http", *a));
        let own: Vec<SocketAddr> = https.iter().chain(http.iter()).map(|(_, a)| *a).collect();
        let https_url = https.as_ref().map(|(_, a)| url("https", *a));
        let http_url = http.as_ref().map(|(_, a)| url("http", *a));
        let _ = sim.urls.set(Urls { https: https_url.clone(), http: http_url.clone() });

        if let Some(path) = &config.state_file {
            let weak: Weak<Sim> = Arc::downgrade(&sim);
            let snapshot: Snapshot = Arc::new(move || match weak.upgrade() {
                Some(sim) => sim.snapshot_file(),
                None => Err(SimError::Persist(String::from("the simulator is gone"))),
            });
            let persister = Persister::spawn(path.clone(), 0, snapshot);
            let generation = lock(&sim.store).generation;
            persister.wait_durable(generation).await?;
            let _ = sim.persister.set(persister);
        }

        let (shutdown, rx) = watch::channel(false);
        let app = crate::http::router(sim.clone());
        let mut servers = Vec::new();
        if let (Some((listener, _)), Some(tls)) = (https, &tls) {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config.clone());
            servers.push(crate::server::spawn(listener, Some(acceptor), app.clone(), rx.clone()));
        }
        if let (Some((listener, _)), Some(tls)) = (proxy, &tls) {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config.clone());
            let proxy = crate::proxy::Proxy { sim: sim.clone(), acceptor, app: app.clone(), own };
            servers.push(crate::proxy::spawn(listener, proxy, rx.clone()));
        }
        if let Some((listener, _)) = http {
            servers.push(crate::server::spawn(listener, None, app, rx));
        }
        let handle = SimHandle { sim, shutdown, servers, https_url, http_url, proxy_url, ca_pem };
        if let Some(dir) = &config.state_dir {
            handle.write_state_dir(dir)?;
        }
        tracing::info!(
            https = ?handle.https_url, http = ?handle.http_url, proxy = ?handle.proxy_url, "ARM simulator started"
        );
        Ok(handle)
    }
}

impl SimHandle {
    pub fn https_url(&self) -> Option<&str> {
        self.https_url.as_deref()
    }

    pub fn http_url(&self) -> Option<&str> {
        self.http_url.as_deref()
    }

    /// The CONNECT proxy (`http://127.0.0.1:<port>`), when `SimConfig::proxy_addr` is set: what `HTTPS_PROXY`
    /// should say for clients that use Azure's own host names.
    pub fn proxy_url(&self) -> Option<String> {
        self.proxy_url.clone()
    }

    /// The CA certificate (PEM) clients must trust for the HTTPS listener.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    pub fn tenant_id(&self) -> &str {
        self.sim.tenant_id()
    }

    /// The authority host for Entra clients (`{authority}/{tenant}/oauth2/v2.0/token`).
    pub fn authority_host(&self) -> Option<String> {
        self.https_url.as_ref().map(|u| format!("{u}/"))
    }

    /// What `endpoint.json` holds.
    pub fn endpoint_json(&self, ca_file: Option<&Path>) -> serde_json::Value {
        json!({
            "https": self.https_url,
            "http": self.http_url,
            "proxy": self.proxy_url,
            "caFile": ca_file,
            "tenantId": self.tenant_id(),
            "authorityHost": self.authority_host(),
            "admin": self.https_url.as_ref().or(self.http_url.as_ref()).map(|u| format!("{u}/_sim")),
        })
    }

    fn write_state_dir(&self, dir: &Path) -> Result<(), SimError> {
        let ca_file: Option<PathBuf> = match &self.ca_pem {
            Some(pem) => {
                let p = dir.join("ca.pem");
                // A generated CA was already saved (and must not be replaced on restart); a given one is
                // copied so tools find it in the same place.
                if !p.exists() {
                    crate::harness::persist::write_atomically(&p, pem.as_bytes())?;
                }
                Some(p)
            }
            None => None,
        };
        let endpoint = self.https_url.clone().or_else(|| self.http_url.clone()).unwrap_or_default();
        crate::harness::persist::write_atomically(&dir.join("endpoint"), format!("{endpoint}\n").as_bytes())?;
        let doc = serde_json::to_vec_pretty(&self.endpoint_json(ca_file.as_deref()))
            .map_err(|e| SimError::Persist(e.to_string()))?;
        crate::harness::persist::write_atomically(&dir.join("endpoint.json"), &doc)
    }

    /// The full state as JSON (what `GET /_sim/state` answers).
    pub fn state(&self) -> serde_json::Value {
        self.sim.read(|s| serde_json::to_value(s).unwrap_or(serde_json::Value::Null))
    }

    /// The full state, typed.
    pub fn state_typed(&self) -> State {
        self.sim.read(Clone::clone)
    }

    pub fn counters(&self) -> CounterSnapshot {
        self.sim.counters.snapshot()
    }

    pub fn reset_counters(&self) {
        self.sim.counters.reset();
    }

    pub fn set_faults(&self, rules: Vec<FaultRule>) {
        self.sim.faults.set(rules);
    }

    pub fn faults(&self) -> Vec<FaultStatus> {
        self.sim.faults.get()
    }

    /// Merges a seed into the state.
    pub async fn seed(&self, seed: Seed) -> Result<(), SimError> {
        seed.validate()?;
        let now = self.sim.clock.now_ms();
        self.sim
            .write(|s| {
                seed.apply(s, now);
                Ok(())
            })
            .await
            .map_err(|e| SimError::Persist(e.to_string()))
    }

    /// Back to the configured seed; faults, holds, counters and buckets cleared.
    pub async fn reset(&self) -> Result<(), SimError> {
        self.sim.reset().await.map_err(|e| SimError::Persist(e.to_string()))
    }

    pub fn hold(&self, spec: HoldSpec) -> u64 {
        self.sim.holds.add(spec)
    }

    pub fn holds(&self) -> HoldsStatus {
        self.sim.holds.status()
    }

    pub fn held_count(&self) -> usize {
        self.sim.holds.held_count()
    }

    pub fn release_hold(&self, id: u64) -> bool {
        self.sim.holds.release(id)
    }

    pub fn release_all_holds(&self) -> usize {
        self.sim.holds.release_all()
    }

    /// Waits until at least `count` writes are held; false on timeout.
    pub async fn wait_for_held(&self, count: usize, timeout: Duration) -> bool {
        self.sim.holds.wait_held(count, timeout).await
    }

    /// Moves the simulator's clock forward (token expiry, replication delay, buckets).
    pub fn advance_clock(&self, by: Duration) {
        self.sim.clock.advance(by);
    }

    pub fn now_ms(&self) -> u64 {
        self.sim.clock.now_ms()
    }

    pub fn throttle(&self) -> ThrottleConfig {
        self.sim.throttle.config()
    }

    pub fn set_throttle(&self, config: ThrottleConfig) {
        self.sim.throttle.set_config(config);
    }

    pub fn set_latency(&self, config: LatencyConfig) {
        *lock(&self.sim.latency) = config;
    }

    pub fn behaviour(&self) -> BehaviourConfig {
        self.sim.behaviour()
    }

    pub fn set_behaviour(&self, config: BehaviourConfig) {
        *lock(&self.sim.behaviour) = config;
    }

    /// An ARM access token for a principal, without going through the token endpoint.
    pub fn issue_token(&self, principal_id: &str, app_id: &str) -> Result<String, SimError> {
        let now = self.sim.clock.now_secs();
        let lifetime = self.sim.config.entra.token_lifetime_secs.max(1);
        self.sim.tokens.issue(&AccessClaims {
            aud: String::from("https://management.azure.com/"),
            iss: format!("https://sts.windows.net/{}/", self.tenant_id()),
            iat: now,
            nbf: now,
            exp: now + lifetime,
            oid: principal_id.to_owned(),
            tid: self.tenant_id().to_owned(),
            appid: app_id.to_owned(),
            sub: principal_id.to_owned(),
            idtyp: String::from("app"),
            ver: String::from("1.0"),
        })
    }

    /// An access token for any audience (e.g. `https://vault.azure.net` or a wrong one), without going
    /// through the token endpoint.
    pub fn issue_token_for(
        &self,
        principal_id: &str,
        app_id: &str,
        audience: &str,
    ) -> Result<String, SimError> {
        let now = self.sim.clock.now_secs();
        let lifetime = self.sim.config.entra.token_lifetime_secs.max(1);
        self.sim.tokens.issue(&AccessClaims {
            aud: audience.to_owned(),
            iss: format!("https://sts.windows.net/{}/", self.tenant_id()),
            iat: now,
            nbf: now,
            exp: now + lifetime,
            oid: principal_id.to_owned(),
            tid: self.tenant_id().to_owned(),
            appid: app_id.to_owned(),
            sub: principal_id.to_owned(),
            idtyp: String::from("app"),
            ver: String::from("1.0"),
        })
    }

    /// Writes a new version of a Key Vault secret (the vault must exist) and returns its id,
    /// `https://{vault}.vault.azure.net/secrets/{name}/{version}`.
    pub async fn set_secret(&self, vault: &str, name: &str, value: &str) -> Result<String, SimError> {
        let body =
            serde_json::to_vec(&json!({ "value": value })).map_err(|e| SimError::Config(e.to_string()))?;
        self.put_vault_object(vault, crate::kv::Kind::Secret, name, &body).await
    }

    /// Makes a new self-signed certificate (with its managed key and secret) in a vault; returns its id.
    pub async fn set_certificate(&self, vault: &str, name: &str) -> Result<String, SimError> {
        self.put_vault_object(vault, crate::kv::Kind::Certificate, name, b"{}").await
    }

    /// Makes a new EC key in a vault; returns its id (`kid`).
    pub async fn set_key(&self, vault: &str, name: &str) -> Result<String, SimError> {
        self.put_vault_object(vault, crate::kv::Kind::Key, name, b"{}").await
    }

    async fn put_vault_object(
        &self,
        vault: &str,
        kind: crate::kv::Kind,
        name: &str,
        body: &[u8],
    ) -> Result<String, SimError> {
        let bundle = crate::kv::objects::admin_put(&self.sim, vault, kind, name, body)
            .await
            .map_err(|e| SimError::Config(e.to_string()))?;
        let id = bundle.get("id").or_else(|| bundle.pointer("/key/kid"));
        Ok(id.and_then(serde_json::Value::as_str).unwrap_or_default().to_owned())
    }

    /// `fic_propagation_ms`: FICs written from now on match at token exchange only after this long.
    pub fn set_fic_propagation(&self, window: Duration) {
        lock(&self.sim.behaviour).fic_propagation_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    }

    /// `role_propagation_ms`: role assignments created or deleted from now on change what the Key Vault data
    /// plane allows only after this long.
    pub fn set_role_propagation(&self, window: Duration) {
        lock(&self.sim.behaviour).role_propagation_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    }

    /// Stops accepting, lets in-flight requests finish (held ones are released first), and flushes the state
    /// file.
    pub async fn shutdown(mut self) -> Result<(), SimError> {
        self.sim.holds.release_all();
        let _ = self.shutdown.send(true);
        for s in self.servers.drain(..) {
            let _ = s.await;
        }
        if let Some(p) = self.sim.persister.get() {
            let generation = lock(&self.sim.store).generation;
            p.wait_durable(generation).await?;
            p.stop();
        }
        Ok(())
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(p) = self.sim.persister.get() {
            p.stop();
        }
    }
}
