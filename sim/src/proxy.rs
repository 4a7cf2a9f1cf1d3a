//! The HTTPS-intercepting CONNECT proxy: Azure's SDKs, unchanged, reach the simulator under Azure's own host
//! names when `HTTPS_PROXY` points here and they trust the simulator's CA.
//!
//! `CONNECT host:443` for a host the simulator plays (`CLOUD_HOSTS`, or `<vault>.<suffix>` of an existing
//! vault) answers 200, then terminates TLS with the simulator's leaf certificate (whose names cover those
//! hosts) and serves the simulator's HTTP on the decrypted stream, routed by path and, for vaults, by `Host`.
//! `CONNECT` to one of the simulator's own listeners is passed through unchanged (a client with `HTTPS_PROXY`
//! set that also talks to the direct listener). Anything else is refused (403; 502 for a vault that does not
//! exist, as a name that does not resolve): nothing leaves the machine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::server::{serve_tls, stopped};
use crate::shared::Sim;

/// The Entra and ARM hosts of the public, China and US Government clouds (docs/azure.md#clouds), with the
/// Entra aliases instance discovery names.
pub const CLOUD_HOSTS: &[&str] = &[
    "login.microsoftonline.com",
    "login.windows.net",
    "login.microsoft.com",
    "sts.windows.net",
    "login.chinacloudapi.cn",
    "login.partner.microsoftonline.cn",
    "login.microsoftonline.us",
    "login.usgovcloudapi.net",
    "management.azure.com",
    "management.core.windows.net",
    "management.chinacloudapi.cn",
    "management.usgovcloudapi.net",
];

/// The names the leaf certificate must carry for the proxy: the cloud hosts, and each vault suffix with its
/// wildcard.
pub fn certificate_names(sim_config: &crate::config::SimConfig) -> Vec<String> {
    let mut names: Vec<String> = CLOUD_HOSTS.iter().map(|h| (*h).to_owned()).collect();
    for c in &sim_config.keyvault.clouds {
        names.push(c.dns_suffix.clone());
        names.push(format!("*.{}", c.dns_suffix));
    }
    names
}

const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HEAD: usize = 16 * 1024;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the proxy does with one CONNECT.
#[derive(Debug, PartialEq)]
enum Decision {
    Intercept,
    PassThrough(SocketAddr),
    Refuse(u16, &'static str, String),
}

pub struct Proxy {
    pub sim: Arc<Sim>,
    pub acceptor: TlsAcceptor,
    pub app: axum::Router,
    /// The simulator's own listeners, which CONNECT may reach unchanged.
    pub own: Vec<SocketAddr>,
}

pub fn spawn(
    listener: TcpListener,
    proxy: Proxy,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let proxy = Arc::new(proxy);
    tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                _ = stopped(&mut shutdown) => break,
                accepted = listener.accept() => {
                    let Ok((stream, _peer)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    conns.spawn(tunnel(stream, proxy.clone(), shutdown.clone()));
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        drop(listener);
        let drained =
            tokio::time::timeout(DRAIN_TIMEOUT, async { while conns.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            conns.abort_all();
        }
    })
}

/// Reads the request head (up to the empty line) and returns its first line.
async fn read_head(reader: &mut BufReader<TcpStream>) -> Option<String> {
    let mut first = None;
    let mut total = 0;
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).await.ok()?;
        total += n;
        if n == 0 || total > MAX_HEAD {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return first;
        }
        first.get_or_insert_with(|| line.to_owned());
    }
}

fn decide(proxy: &Proxy, first_line: &str) -> Decision {
    let mut parts = first_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !method.eq_ignore_ascii_case("CONNECT") {
        return Decision::Refuse(
            403,
            "Forbidden",
            String::from("This proxy only tunnels HTTPS (CONNECT).\n"),
        );
    }
    let Some((host, port)) = target.rsplit_once(':') else {
        return Decision::Refuse(400, "Bad Request", format!("CONNECT needs host:port, got '{target}'.\n"));
    };
    let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    let port: u16 = port.parse().unwrap_or(0);
    if port == 443 && CLOUD_HOSTS.contains(&host.as_str()) {
        return Decision::Intercept;
    }
    if port == 443
        && let Some(vault) = crate::kv::vault_host(&proxy.sim.config.keyvault, &host)
    {
        if proxy.sim.read(|s| s.vault_by_name(&vault.vault).is_some()) {
            return Decision::Intercept;
        }
        return Decision::Refuse(
            502,
            "Bad Gateway",
            format!("No such host: '{host}' is not a vault here.\n"),
        );
    }
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if let Some(own) = proxy.own.iter().find(|a| loopback && a.port() == port) {
        return Decision::PassThrough(*own);
    }
    Decision::Refuse(
        403,
        "Forbidden",
        format!("'{target}' is not a host the simulator plays; nothing leaves the machine.\n"),
    )
}

async fn tunnel(stream: TcpStream, proxy: Arc<Proxy>, mut shutdown: watch::Receiver<bool>) {
    let mut reader = BufReader::new(stream);
    let Ok(Some(first_line)) = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut reader)).await else {
        return;
    };
    let decision = decide(&proxy, &first_line);
    let status = match &decision {
        Decision::Intercept | Decision::PassThrough(_) => 200,
        Decision::Refuse(code, ..) => *code,
    };
    proxy.sim.counters.record("ProxyConnect", &status.to_string());
    match decision {
        Decision::Intercept => {
            if reader.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await.is_ok() {
                serve_tls(reader, proxy.acceptor.clone(), proxy.app.clone(), shutdown).await;
            }
        }
        Decision::PassThrough(addr) => {
            let Ok(mut upstream) = TcpStream::connect(addr).await else {
                let _ = reader.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n").await;
                return;
            };
            if reader.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await.is_ok() {
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut reader, &mut upstream) => {}
                    _ = stopped(&mut shutdown) => {}
                }
            }
        }
        Decision::Refuse(code, reason, body) => {
            let answer = format!(
                "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: \
                 close\r\n\r\n{body}",
                body.len()
            );
            let _ = reader.write_all(answer.as_bytes()).await;
            let _ = reader.shutdown().await;
        }
    }
}
