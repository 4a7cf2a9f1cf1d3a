//! `idbind run` as a process of its own, as its pod would run it, for tests that kill and restart it (crash
//! consistency, the soak) or that need it to watch every namespace (the trust boundary). It talks to the
//! test's control plane and simulator and, unless told otherwise, watches only the test's namespace.
//!
//! `IDBIND_TEST_OPERATOR`, when set, names another `idbind` binary to run (an older build, to show that a
//! test fails on it). Otherwise it is the `idbind` binary `cargo test` built for the test
//! ([`operator_binary`]).

use std::{
    fs::File,
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use crate::e2e::{APP_ID, APP_SECRET, Env, RG, SUB, TestError};

/// A running operator; killed (SIGKILL) when dropped.
pub struct Operator {
    child: Child,
    pub log: PathBuf,
}

impl Operator {
    /// Starts `idbind run` for `env`, signed in as the `operator` ServiceAccount of the test's operator
    /// namespace (install its RBAC first: [`crate::e2e::install_operator_rbac`]), with `extra` environment on
    /// top (e.g. `IDBIND_CRASH_AT`, or another `KUBECONFIG`; an empty value removes the variable). `run`
    /// names the log file under the control plane's directory. The test's namespace is a team's: its
    /// [`crate::e2e::team_policy`] is applied (again, harmlessly) first, as a platform team installs one with
    /// the operator.
    pub fn start(env: &Env, run: &str, extra: &[(&str, &str)]) -> Result<Operator, TestError> {
        crate::e2e::apply_cluster(env.plane, &crate::e2e::team_policy(&env.ns))?;
        let kubeconfig = crate::e2e::operator_kubeconfig(env.plane, &env.ns, run)?;
        let dir = env.plane.dir().join("operators");
        std::fs::create_dir_all(&dir)?;
        let ca = dir.join(format!("{}-sim-ca.pem", env.ns));
        std::fs::write(&ca, env.sim.ca_pem().ok_or("the simulator has no CA")?)?;
        let log = dir.join(format!("{}-{run}.log", env.ns));
        let mut cmd = Command::new(operator_binary()?);
        cmd.arg("run")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAMESPACE", crate::e2e::operator_namespace(&env.ns))
            .env("POD_NAME", run)
            .env("IDBIND_CLUSTER_NAME", "e2e")
            .env("IDBIND_OIDC_ISSUER", env.plane.server())
            .env("AZURE_SUBSCRIPTION_ID", SUB)
            .env("AZURE_TENANT_ID", env.sim.tenant_id())
            .env("AZURE_CLIENT_ID", APP_ID)
            .env("AZURE_CLIENT_SECRET", APP_SECRET)
            .env("IDBIND_CREDENTIAL", "client-secret")
            .env("IDBIND_RESOURCE_GROUP", RG)
            .env("IDBIND_LOCATION", "westeurope")
            .env("IDBIND_CLOUD", "custom")
            .env("IDBIND_ARM_ENDPOINT", env.sim.https_url().ok_or("no HTTPS listener")?)
            .env("IDBIND_AUTHORITY_HOST", env.sim.authority_host().ok_or("no authority host")?)
            .env("IDBIND_CA_FILE", &ca)
            .env("IDBIND_WATCH_NAMESPACE", &env.ns)
            .env("IDBIND_RESYNC_SECONDS", "2")
            .env("IDBIND_BUDGET_SCALE", "10")
            .env("IDBIND_LEADER_ELECT", "false")
            .env("IDBIND_HTTP_ADDR", "127.0.0.1:0")
            .env("IDBIND_LOG_FORMAT", "text")
            .env("RUST_LOG", "info,kube=warn")
            .stdin(Stdio::null())
            .stdout(File::create(&log)?)
            .stderr(File::options().append(true).open(&log)?);
        for (k, v) in extra {
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        Ok(Operator { child: idbind_testenv::spawn_tied(cmd)?, log })
    }

    /// SIGTERM, as the kubelet sends it when a pod stops.
    pub fn terminate(&self) -> Result<(), TestError> {
        let status = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status()?;
        if !status.success() {
            return Err("kill -TERM failed".into());
        }
        Ok(())
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(mut self) -> Result<(), TestError> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Waits for the process to end by itself (e.g. at a crash point), up to `timeout`.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Result<std::process::ExitStatus, TestError> {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if start.elapsed() > timeout {
                return Err(format!(
                    "the operator did not exit within {timeout:?}; log: {}",
                    self.log.display()
                )
                .into());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// The log so far (for failure messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The `idbind` binary to run: `IDBIND_TEST_OPERATOR`, or the one `cargo test` built for this test run, which
/// it names in `CARGO_BIN_EXE_idbind` while the test runs, or (a test binary run by hand) the `idbind` beside
/// the test binary's `deps/` folder. Found at run time, so these helpers need not be compiled into each test
/// binary, where `env!("CARGO_BIN_EXE_idbind")` would be known.
fn operator_binary() -> Result<PathBuf, TestError> {
    if let Some(binary) =
        std::env::var_os("IDBIND_TEST_OPERATOR").or_else(|| std::env::var_os("CARGO_BIN_EXE_idbind"))
    {
        return Ok(binary.into());
    }
    let test = std::env::current_exe()?;
    let beside = test.parent().and_then(std::path::Path::parent).map(|profile| profile.join("idbind"));
    match beside {
        Some(binary) if binary.is_file() => Ok(binary),
        _ => Err(format!(
            "no idbind binary for {}: run the test with `cargo test`, or name one in IDBIND_TEST_OPERATOR",
            test.display()
        )
        .into()),
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
