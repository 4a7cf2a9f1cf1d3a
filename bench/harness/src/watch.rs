//! Follows every binding through one `kubectl get -w` stream (a list, then a watch) and records, on the
//! harness's clock, when each was first seen and when it first reported Ready=True for its current
//! generation. Cheap for the API server at any N (no polling of full lists).

use std::sync::PoisonError;
use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    process::{Child, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use idbind_testenv::ControlPlane;

#[derive(Clone, Debug, Default)]
pub struct Binding {
    /// First event seen (≈ creation, within the watch's delivery delay).
    pub seen: Option<Instant>,
    pub generation: i64,
    pub observed_generation: i64,
    pub ready: bool,
    /// When it first became Ready for generation `g`: `ready_at[g]`.
    pub ready_at: HashMap<i64, Instant>,
}

#[derive(Default)]
pub struct State {
    pub bindings: HashMap<String, Binding>,
    /// Bindings Ready for their current generation.
    pub ready_now: usize,
    pub events: u64,
    pub restarts: u32,
}

pub struct Watch {
    pub state: Arc<Mutex<State>>,
    stop: Arc<Mutex<bool>>,
    child: Arc<Mutex<Option<Child>>>,
}

const TEMPLATE: &str = r#"{.metadata.namespace}/{.metadata.name} {.metadata.generation} {.status.observedGeneration} {.status.conditions[?(@.type=="Ready")].status}{"\n"}"#;

impl Watch {
    pub fn start(cp: &ControlPlane) -> Result<Watch> {
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(Mutex::new(false));
        let child: Arc<Mutex<Option<Child>>> = Arc::new(Mutex::new(None));
        let kubeconfig = cp.kubeconfig();
        let (s, st, ch) = (state.clone(), stop.clone(), child.clone());
        // A kubectl per attempt: when the server ends the watch (after its request timeout) the stream closes
        // and a new list + watch starts; the records are kept across restarts.
        let make = move || {
            let mut cmd = std::process::Command::new(idbind_testenv::bin_dir().join("kubectl"));
            cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
                .args(["get", "workloadidentitybindings.idbind.dev", "-A", "-w", "--request-timeout=0", "-o"])
                .arg(format!("jsonpath={TEMPLATE}"))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            cmd
        };
        thread::Builder::new().name("watch".into()).spawn(move || {
            loop {
                if *lock(&st) {
                    return;
                }
                let Ok(mut c) = make().spawn() else {
                    thread::sleep(Duration::from_secs(1));
                    continue;
                };
                let out = c.stdout.take();
                *lock(&ch) = Some(c);
                if let Some(out) = out {
                    for line in BufReader::new(out).lines() {
                        let Ok(line) = line else { break };
                        record(&s, &line, Instant::now());
                    }
                }
                if let Some(mut c) = lock(&ch).take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                lock(&s).restarts += 1;
                thread::sleep(Duration::from_millis(500));
            }
        })?;
        Ok(Watch { state, stop, child })
    }

    pub fn ready_now(&self) -> usize {
        lock(&self.state).ready_now
    }

    pub fn snapshot<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&lock(&self.state))
    }

    /// Waits until binding `key` is Ready for generation `generation`; returns when.
    pub fn wait_ready(&self, key: &str, generation: i64, timeout: Duration) -> Result<Instant> {
        let start = Instant::now();
        loop {
            if let Some(t) =
                lock(&self.state).bindings.get(key).and_then(|b| b.ready_at.get(&generation).copied())
            {
                return Ok(t);
            }
            if start.elapsed() > timeout {
                return Err(anyhow::anyhow!(
                    "{key} not Ready for generation {generation} within {timeout:?}"
                ))
                .context("watch");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&self) {
        *lock(&self.stop) = true;
        if let Some(c) = lock(&self.child).as_mut() {
            let _ = c.kill();
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop();
    }
}

fn record(state: &Mutex<State>, line: &str, now: Instant) {
    let mut parts = line.split_whitespace();
    let (Some(key), Some(generation)) = (parts.next(), parts.next().and_then(|g| g.parse::<i64>().ok()))
    else {
        return;
    };
    // observedGeneration and the Ready status may be absent (a new binding has no status).
    let rest: Vec<&str> = parts.collect();
    let (observed, ready) = match rest.as_slice() {
        [o, r, ..] => (o.parse::<i64>().unwrap_or(0), *r == "True"),
        [x] => match x.parse::<i64>() {
            Ok(o) => (o, false),
            Err(_) => (0, *x == "True"),
        },
        [] => (0, false),
    };
    let mut s = state.lock().unwrap_or_else(PoisonError::into_inner);
    s.events += 1;
    let b = s.bindings.entry(key.to_string()).or_default();
    let was = b.ready && b.observed_generation == b.generation;
    b.seen.get_or_insert(now);
    b.generation = generation;
    b.observed_generation = observed;
    b.ready = ready;
    let is = ready && observed == generation;
    if is {
        b.ready_at.entry(generation).or_insert(now);
    }
    match (was, is) {
        (false, true) => s.ready_now += 1,
        (true, false) => s.ready_now -= 1,
        _ => {}
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_generations_and_readiness() {
        let s = Mutex::new(State::default());
        let t = Instant::now();
        record(&s, "ns/a 1  ", t);
        record(&s, "ns/a 1 1 False", t);
        assert_eq!(lock(&s).ready_now, 0);
        record(&s, "ns/a 1 1 True", t);
        assert_eq!(lock(&s).ready_now, 1);
        record(&s, "ns/a 2 1 True", t);
        assert_eq!(lock(&s).ready_now, 0);
        record(&s, "ns/a 2 2 True", t);
        let st = lock(&s);
        assert_eq!(st.ready_now, 1);
        assert!(st.bindings["ns/a"].ready_at.contains_key(&2));
    }
}
