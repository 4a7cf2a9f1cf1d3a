//! The HTTPS-intercepting CONNECT proxy: Azure's host names are served by the simulator with certificates
//! from its CA that name them; the simulator's own listeners are passed through; anything else is refused, so
//! nothing leaves the machine.

mod common;

use std::sync::Arc;

use common::*;
use idbind_sim::{SimHandle, Simulator};
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn proxy_addr(h: &SimHandle) -> String {
    h.proxy_url().unwrap_or_default().trim_start_matches("http://").to_owned()
}

/// Sends a request head to the proxy; returns the status code of its answer and the stream (the tunnel, on
/// 200).
async fn send_head(h: &SimHandle, head: &str) -> Result<(u16, BufReader<TcpStream>), Error> {
    let mut stream = BufReader::new(TcpStream::connect(proxy_addr(h)).await?);
    stream.write_all(head.as_bytes()).await?;
    let mut status = String::new();
    stream.read_line(&mut status).await?;
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await? == 0 || line == "\r\n" {
            break;
        }
    }
    let code = status.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((code, stream))
}

async fn connect(h: &SimHandle, target: &str) -> Result<(u16, BufReader<TcpStream>), Error> {
    send_head(h, &format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n")).await
}

/// A TLS client that trusts only the simulator's CA and checks the server name, as SDKs do.
fn tls(h: &SimHandle) -> Result<tokio_rustls::TlsConnector, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut h.ca_pem().unwrap_or_default().as_bytes()) {
        roots.add(cert?)?;
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// CONNECT to `host:443`, then a TLS handshake expecting the certificate to be valid for `expect_name`.
async fn handshake(h: &SimHandle, host: &str, expect_name: &str) -> Result<(), Error> {
    let (code, tunnel) = connect(h, &format!("{host}:443")).await?;
    if code != 200 {
        return Err(format!("CONNECT {host}:443 answered {code}").into());
    }
    let mut tls = tls(h)?.connect(ServerName::try_from(expect_name.to_owned())?, tunnel).await?;
    // Something the simulator answers over the tunnel, to be sure it is the one on the other end.
    tls.write_all(
        format!("GET /_sim/healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await?;
    if !answer.starts_with("HTTP/1.1 ") {
        return Err(format!("no HTTP answer through the tunnel: {answer}").into());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_hosts_are_intercepted_with_certificates_from_the_simulators_ca() -> TestResult {
    let h = Simulator::start(kv_config()).await?;
    for host in [
        "login.microsoftonline.com",
        "login.windows.net",
        "sts.windows.net",
        "login.microsoftonline.us",
        "login.chinacloudapi.cn",
        "management.azure.com",
        "management.usgovcloudapi.net",
        "kv-rbac.vault.azure.net",
        "kv-policies.vault.azure.net",
        "kv-rbac.vault.usgovcloudapi.net",
    ] {
        handshake(&h, host, host).await.map_err(|e| format!("{host}: {e}"))?;
    }
    // The certificate names the hosts it is for, not every name: a client that expects another host refuses
    // it.
    assert!(handshake(&h, "login.microsoftonline.com", "example.com").await.is_err());
    assert!(handshake(&h, "kv-rbac.vault.azure.net", "kv-rbac.vault.example.com").await.is_err());

    // A client that trusts only the public roots refuses it too: it is the simulator's, not Microsoft's.
    let public_roots = reqwest::Client::builder()
        .use_rustls_tls()
        .proxy(reqwest::Proxy::https(h.proxy_url().unwrap_or_default())?)
        .build()?;
    assert!(
        public_roots.get("https://login.microsoftonline.com/common/discovery/instance").send().await.is_err()
    );

    // What an SDK does with HTTPS_PROXY set: Entra, ARM and a vault under their real names.
    let c = proxied_client(&h)?;
    let tenant = h.tenant_id().to_owned();
    let oidc: Value = c
        .get(format!("https://login.microsoftonline.com/{tenant}/v2.0/.well-known/openid-configuration"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        oidc["token_endpoint"],
        format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token")
    );
    let token = token_for(&h, &c, APP_ID, APP_SECRET, ARM_SCOPE).await?;
    let arm = Arm { base: String::from("https://management.azure.com"), client: c.clone(), token };
    let rg = arm.get(&format!("/subscriptions/{SUB}/resourceGroups/{RG}?api-version=2021-04-01")).await?;
    assert_eq!((rg.status, rg.body["name"].as_str()), (200, Some(RG)), "{}", rg.body);
    let vault = c.get(format!("{}/secrets?api-version={KV_API}", vault_url(KV_RBAC))).send().await?;
    assert_eq!(vault.status(), 401);
    assert!(vault.headers().contains_key("www-authenticate"));
    assert!(h.counters().get("ProxyConnect", "200") >= 13);
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn other_hosts_are_refused_so_nothing_leaves_the_machine() -> TestResult {
    let h = Simulator::start(kv_config()).await?;
    for (target, code) in [
        ("example.com:443", 403),
        ("graph.microsoft.com:443", 403),
        ("login.microsoftonline.com:80", 403),
        ("kv-rbac.vault.azure.net:8443", 403),
        ("127.0.0.1:1", 403),
        // A vault that does not exist is a name that does not resolve.
        ("kv-nowhere.vault.azure.net:443", 502),
        ("not-a-target", 400),
    ] {
        let (status, mut rest) = connect(&h, target).await?;
        assert_eq!(status, code, "CONNECT {target}");
        // The proxy closes the connection after refusing: no tunnel.
        let mut tail = Vec::new();
        rest.read_to_end(&mut tail).await?;
        assert!(!String::from_utf8_lossy(&tail).contains("HTTP/1.1 200"), "{target}");
    }
    // A plain-HTTP proxy request is not forwarded either.
    let (status, _) = send_head(&h, "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n").await?;
    assert_eq!(status, 403);
    let c = proxied_client(&h)?;
    assert!(c.get("https://example.com/").send().await.is_err());
    let counters = h.counters();
    assert_eq!(
        (
            counters.get("ProxyConnect", "403"),
            counters.get("ProxyConnect", "502"),
            counters.get("ProxyConnect", "200")
        ),
        (7, 1, 0)
    );
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_with_https_proxy_set_still_reaches_the_simulators_own_listener() -> TestResult {
    let h = Simulator::start(kv_config()).await?;
    let c = proxied_client(&h)?;
    let token = token_for(&h, &c, APP_ID, APP_SECRET, ARM_SCOPE).await?;
    // The direct HTTPS listener through the proxy: passed through, its own certificate (127.0.0.1).
    let arm = Arm { base: https(&h), client: c, token };
    let rg = arm.get(&format!("/subscriptions/{SUB}/resourceGroups/{RG}?api-version=2021-04-01")).await?;
    assert_eq!(rg.status, 200, "{}", rg.body);
    let discovery = arm
        .get(&format!(
            "https://login.microsoftonline.com/common/discovery/instance?api-version=1.1&authorization_endpoint={}/{}/oauth2/v2.0/authorize",
            https(&h),
            h.tenant_id()
        ))
        .await?;
    assert_eq!(
        discovery.body["tenant_discovery_endpoint"],
        format!("{}/{}/v2.0/.well-known/openid-configuration", https(&h), h.tenant_id()),
        "login.microsoftonline.com knows the simulator's own listener: {}",
        discovery.body
    );
    assert!(h.counters().get("ProxyConnect", "200") >= 2);
    h.shutdown().await?;
    Ok(())
}
