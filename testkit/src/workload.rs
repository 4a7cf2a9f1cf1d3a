//! A workload pod, set up exactly as the azure-workload-identity webhook and the kubelet set one up: the
//! ServiceAccount's token for the exchange audience in a file (written afresh before every read, as the
//! kubelet rotates it), the client and tenant ids from the ServiceAccount's annotations, and Azure's hosts
//! reached by their real names (through the simulator's proxy, which plays them). The code in it is Azure's
//! official Python SDKs, unchanged: `WorkloadIdentityCredential` and `SecretClient`
//! (tests/workload/workload.py).
//!
//! The Python comes from the venv `make venv` builds (`.cache/venv`, or `IDBIND_PYTHON`).

use std::{
    io::{BufRead, BufReader, Write},
    path::PathBuf,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
};

use serde_json::{Value, json};

use crate::e2e::{Env, TestError};

/// The audience the webhook projects the token for.
pub(crate) const EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// What one read of a secret gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    Value(String),
    /// The SDK's error: the HTTP status (401 for a failed sign-in) and its first line.
    Refused {
        status: u16,
        error: String,
    },
}

/// The token the kubelet projects into a pod of ServiceAccount `ns/sa` for the exchange audience (valid an
/// hour): what a workload signs in to Entra with.
pub(crate) fn exchange_token(env: &Env, ns: &str, sa: &str) -> Result<String, TestError> {
    let args = ["create", "token", sa, "-n", ns, "--audience", EXCHANGE_AUDIENCE, "--duration", "1h"];
    Ok(env.plane.kubectl_ok(&args)?.trim().to_string())
}

/// The workload's Python process; it serves one read per request line and is killed when dropped.
pub struct Workload {
    child: Child,
    requests: ChildStdin,
    answers: BufReader<ChildStdout>,
    dir: PathBuf,
}

impl Workload {
    /// Starts the workload for `env`, whose simulator must run its proxy (`SimConfig::proxy_addr`).
    pub fn start(env: &Env) -> Result<Workload, TestError> {
        let proxy = env.sim.proxy_url().ok_or("the simulator runs no proxy: set SimConfig::proxy_addr")?;
        let dir = env.plane.dir().join("workloads").join(&env.ns);
        std::fs::create_dir_all(&dir)?;
        let ca = dir.join("azure-ca.pem");
        std::fs::write(&ca, env.sim.ca_pem().ok_or("the simulator has no CA")?)?;
        let script = idbind_testenv::workspace_root().join("tests/workload/workload.py");
        let mut child = Command::new(python()?)
            .arg(script)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            // What the webhook sets (the client id and token file come per request: one process plays many
            // pods), and what points a pod at Azure through an egress proxy.
            .env("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com/")
            .env("HTTPS_PROXY", &proxy)
            .env("REQUESTS_CA_BUNDLE", &ca)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // The SDKs log each failed sign-in there.
            .stderr(std::fs::File::create(dir.join("workload.log"))?)
            .spawn()?;
        let requests = child.stdin.take().ok_or("no stdin")?;
        let answers = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(Workload { child, requests, answers, dir })
    }

    /// The ServiceAccount token of `ns/sa` for the exchange audience, written to a file as the kubelet
    /// projects it into the pod (writing it again is a rotation).
    pub fn mount_token(&self, env: &Env, ns: &str, sa: &str) -> Result<PathBuf, TestError> {
        let file = self.dir.join(format!("{ns}-{sa}.token"));
        std::fs::write(&file, exchange_token(env, ns, sa)?)?;
        Ok(file)
    }

    /// One attempt, as a pod of ServiceAccount `ns/sa` started now, to read `secret` from vault `vault`.
    pub fn read(
        &mut self,
        env: &Env,
        ns: &str,
        sa: &str,
        vault: &str,
        secret: &str,
    ) -> Result<Read, TestError> {
        let token_file = self.mount_token(env, ns, sa)?;
        let text = env.plane.kubectl_ok(&["get", "sa", sa, "-n", ns, "-o", "json"])?;
        let pod = Pod::of(env, &serde_json::from_str(&text)?, token_file);
        self.read_as(&pod, vault, secret)
    }

    /// One attempt, as `pod`, to read `secret` from vault `vault` (its name: the SDK is given
    /// `https://{vault}.vault.azure.net`).
    pub fn read_as(&mut self, pod: &Pod, vault: &str, secret: &str) -> Result<Read, TestError> {
        let request = json!({
            "vault_url": format!("https://{vault}.vault.azure.net"),
            "secret": secret,
            "client_id": pod.client_id,
            "tenant_id": pod.tenant_id,
            "token_file": pod.token_file,
        });
        writeln!(self.requests, "{request}")?;
        let mut line = String::new();
        if self.answers.read_line(&mut line)? == 0 {
            return Err("the workload process ended".into());
        }
        let answer: Value = serde_json::from_str(&line)?;
        Ok(if answer["ok"] == true {
            Read::Value(answer["value"].as_str().unwrap_or_default().to_string())
        } else {
            Read::Refused {
                status: u16::try_from(answer["status"].as_u64().unwrap_or(0)).unwrap_or(0),
                error: answer["error"].as_str().unwrap_or_default().to_string(),
            }
        })
    }
}

/// What the webhook puts in a pod of a ServiceAccount: its identity's client id and tenant (from the
/// ServiceAccount's annotations) and the projected token file.
#[derive(Debug, Clone)]
pub struct Pod {
    pub client_id: String,
    pub tenant_id: String,
    pub token_file: PathBuf,
}

impl Pod {
    /// The pod of `service_account` (the ServiceAccount object as the API server returns it).
    pub fn of(env: &Env, service_account: &Value, token_file: PathBuf) -> Pod {
        let annotations = &service_account["metadata"]["annotations"];
        let annotation = |key: &str| annotations[key].as_str().map(str::to_string);
        Pod {
            client_id: annotation("azure.workload.identity/client-id").unwrap_or_default(),
            // The webhook falls back to the cluster's tenant when the ServiceAccount names none.
            tenant_id: annotation("azure.workload.identity/tenant-id")
                .unwrap_or_else(|| env.sim.tenant_id().to_string()),
            token_file,
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The venv's Python with Azure's SDKs (`make venv`).
fn python() -> Result<PathBuf, TestError> {
    let python = std::env::var_os("IDBIND_PYTHON")
        .map_or_else(|| idbind_testenv::workspace_root().join(".cache/venv/bin/python"), PathBuf::from);
    if !python.exists() {
        return Err(format!(
            "{} is missing: `make venv` installs Azure's Python SDKs the workload tests use",
            python.display()
        )
        .into());
    }
    Ok(python)
}
