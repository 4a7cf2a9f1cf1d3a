//! The shared heart of a running simulator: state, clock, throttling, faults, holds, counters and keys,
//! shared by the HTTP handlers and the in-process handle.

use std::collections::HashSet;
use std::sync::PoisonError;
use std::sync::{Arc, Mutex, OnceLock};

use crate::config::{BehaviourConfig, LatencyConfig, SimConfig};
use crate::entra::oidc::OidcKeys;
use crate::entra::tokens::TokenIssuer;
use crate::error::{ArmError, SimError};
use crate::harness::clock::Clock;
use crate::harness::counters::Counters;
use crate::harness::faults::Faults;
use crate::harness::holds::Holds;
use crate::harness::persist::{FILE_VERSION, PersistedFile, Persister};
use crate::harness::throttle::Throttler;
use crate::state::{State, key};

pub struct Store {
    pub state: State,
    /// Bumped by every successful write; the persister writes generations.
    pub generation: u64,
}

pub struct Sim {
    pub config: SimConfig,
    pub store: Mutex<Store>,
    pub clock: Clock,
    pub throttle: Throttler,
    pub faults: Faults,
    pub holds: Holds,
    pub counters: Counters,
    pub tokens: TokenIssuer,
    pub oidc: OidcKeys,
    pub latency: Mutex<LatencyConfig>,
    pub behaviour: Mutex<BehaviourConfig>,
    /// Identities (lowercased ids) with a FIC write in flight.
    pub fic_inflight: Mutex<HashSet<String>>,
    pub persister: OnceLock<Persister>,
    pub urls: OnceLock<Urls>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Urls {
    pub https: Option<String>,
    pub http: Option<String>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Critical sections only move plain data, so a panic inside one cannot leave it half updated in a way
    // that matters more than the panic itself; do not cascade poisoning.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The state a fresh simulator starts from: built-in roles plus the configured seed.
pub fn initial_state(config: &SimConfig, now_ms: u64) -> State {
    let mut state = State { tenant_id: config.tenant_id.clone(), ..Default::default() };
    for role in crate::arm::roles::builtin_role_definitions() {
        state.role_definitions.insert(key(&role.name), role);
    }
    config.seed.apply(&mut state, now_ms);
    state
}

impl Sim {
    pub fn new(
        config: SimConfig,
        loaded: Option<PersistedFile>,
        own_ca_pem: Option<String>,
    ) -> Result<Self, SimError> {
        config.seed.validate()?;
        let clock = Clock::default();
        let (state, tokens) = match loaded {
            Some(file) => {
                let mut state = file.state;
                state.reindex();
                // A seed given at restart adds what is new and leaves the rest alone.
                config.seed.apply(&mut state, clock.now_ms());
                // Built-in roles are Azure's, not the state's: a file written by an older simulator gets
                // today's definitions (new roles, corrected permissions), as Azure's own definitions change
                // under existing assignments.
                for role in crate::arm::roles::builtin_role_definitions() {
                    state.role_definitions.insert(key(&role.name), role);
                }
                (state, TokenIssuer::from_file(&file.signing_key)?)
            }
            None => (initial_state(&config, clock.now_ms()), TokenIssuer::generate()?),
        };
        let trusted: Vec<String> = own_ca_pem.into_iter().collect();
        let oidc = OidcKeys::new(&trusted, &config.entra.extra_ca_files)?;
        Ok(Self {
            store: Mutex::new(Store { state, generation: 1 }),
            clock,
            throttle: Throttler::new(config.throttle.clone()),
            faults: Faults::new(config.faults.clone()),
            holds: Holds::default(),
            counters: Counters::default(),
            tokens,
            oidc,
            latency: Mutex::new(config.latency.clone()),
            behaviour: Mutex::new(config.behaviour.clone()),
            fic_inflight: Mutex::new(HashSet::new()),
            persister: OnceLock::new(),
            urls: OnceLock::new(),
            config,
        })
    }

    pub fn tenant_id(&self) -> &str {
        &self.config.tenant_id
    }

    pub fn behaviour(&self) -> BehaviourConfig {
        lock(&self.behaviour).clone()
    }

    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&lock(&self.store).state)
    }

    /// Applies a change; only a successful one bumps the generation. Returns the result and the generation
    /// that must be durable before the change is acknowledged.
    pub fn mutate<R>(&self, f: impl FnOnce(&mut State) -> Result<R, ArmError>) -> Result<(R, u64), ArmError> {
        let mut store = lock(&self.store);
        let r = f(&mut store.state)?;
        store.generation += 1;
        Ok((r, store.generation))
    }

    /// `mutate`, then wait until the change is on disk (when persistence is on).
    pub async fn write<R>(&self, f: impl FnOnce(&mut State) -> Result<R, ArmError>) -> Result<R, ArmError> {
        let (r, generation) = self.mutate(f)?;
        self.durable(generation).await?;
        Ok(r)
    }

    pub async fn durable(&self, generation: u64) -> Result<(), ArmError> {
        match self.persister.get() {
            Some(p) => p.wait_durable(generation).await.map_err(|e| {
                ArmError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalServerError",
                    format!("The change could not be stored: {e}"),
                )
            }),
            None => Ok(()),
        }
    }

    /// The state file's content for the current generation.
    pub fn snapshot_file(&self) -> Result<(u64, Vec<u8>), SimError> {
        let store = lock(&self.store);
        let file = PersistedFileRef {
            version: FILE_VERSION,
            signing_key: self.tokens.to_file(),
            state: &store.state,
        };
        let bytes = serde_json::to_vec(&file).map_err(|e| SimError::Persist(e.to_string()))?;
        Ok((store.generation, bytes))
    }

    /// Back to the initial state (seed and built-ins); faults, holds, counters and buckets are cleared too.
    pub async fn reset(&self) -> Result<(), ArmError> {
        let fresh = initial_state(&self.config, self.clock.now_ms());
        self.write(|s| {
            *s = fresh;
            Ok(())
        })
        .await?;
        self.faults.set(Vec::new());
        self.holds.clear();
        self.counters.reset();
        self.throttle.reset();
        Ok(())
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct PersistedFileRef<'a> {
    version: u32,
    signing_key: crate::harness::persist::SigningKeyFile,
    state: &'a State,
}

pub type SharedSim = Arc<Sim>;
