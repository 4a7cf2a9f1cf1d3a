//! Chaos helpers (the soak): a simulator that persists its state and restarts on the same addresses, so a
//! running operator (whose ARM endpoint, authority host and CA are fixed when it starts) keeps working across
//! the restart; and a small seeded random number generator, so a failing run can be replayed from its seed.

use std::{net::SocketAddr, path::Path, time::Duration};

use idbind_sim::{SimConfig, SimHandle, Simulator};

use crate::e2e::TestError;

/// Makes `config` keep its state in `dir`: the state file (every acknowledged write is on disk before it is
/// answered) and the generated CA (reused on restart, so clients keep trusting it).
pub fn persist_in(config: &mut SimConfig, dir: &Path) {
    config.state_dir = Some(dir.to_path_buf());
    config.state_file = Some(dir.join("state.json"));
}

fn listen_addr(url: Option<&str>) -> Result<Option<SocketAddr>, TestError> {
    let Some(url) = url else { return Ok(None) };
    let host_port =
        url.split("://").nth(1).ok_or_else(|| format!("no scheme in {url}"))?.trim_end_matches('/');
    Ok(Some(host_port.parse()?))
}

/// Stops `sim` gracefully (in-flight requests finish, the last state is flushed) and starts a simulator from
/// the same `config` (which must persist: [`persist_in`]) on the same HTTPS and HTTP addresses, from the
/// persisted state, after `downtime`. Faults, holds and counters start empty.
pub async fn restart_simulator(
    sim: SimHandle,
    config: &SimConfig,
    downtime: Duration,
) -> Result<SimHandle, TestError> {
    if config.state_file.is_none() || config.state_dir.is_none() {
        return Err("restart_simulator needs a config with a state file and a state dir (persist_in)".into());
    }
    let mut config = config.clone();
    config.https_addr = listen_addr(sim.https_url())?;
    config.http_addr = listen_addr(sim.http_url())?;
    sim.shutdown().await?;
    tokio::time::sleep(downtime).await;
    // The old listeners are closed once shutdown returns; retry briefly anyway in case the kernel has not
    // released the port yet.
    let mut tries = 0;
    loop {
        match Simulator::start(config.clone()).await {
            Ok(sim) => return Ok(sim),
            Err(idbind_sim::SimError::Bind { addr, source }) if tries < 50 => {
                tries += 1;
                if tries == 50 {
                    return Err(format!("rebinding {addr}: {source}").into());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// SplitMix64: tiny, fast, and the same sequence for the same seed everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// A seed from the clock and the process id, for runs that do not ask for one.
    pub fn fresh_seed() -> u64 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut r = Rng(nanos ^ (u64::from(std::process::id()) << 32));
        r.next_u64()
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in 0.0..1.0.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}
