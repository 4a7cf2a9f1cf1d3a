//! The image `make image` builds (hack/image/build.sh), as a registry, a scanner and a kubelet see it:
//!
//! - two builds of one tree give one manifest digest, byte-identical archives and SBOMs;
//! - skopeo and umoci read the layout and the archive, and `skopeo copy` of the archive keeps the digest (so
//!   it can be pushed as it is); the image runs as 65532:65532, `/usr/local/bin/idbind run`, port 8080, with
//!   the OCI labels; its root filesystem holds the binary, exactly the shared libraries ldd lists for it, the
//!   CA bundle, passwd/group and the Debian notices, and no shell; the SBOM beside it (and attached to it as
//!   an OCI referrer) names the binary by its SHA-256 and lists its crates, not the test-only ones;
//! - the image runs as a real container (runc, unpacked by umoci) the way the Deployment in
//!   config/manager/deployment.yaml runs it: its securityContext (user 65532, supplementary group fsGroup,
//!   read-only root filesystem, every capability dropped, no new privileges), its memory limit, its
//!   environment (the ConfigMap's settings, with what an install's overlay sets, and the Downward API's), the
//!   ServiceAccount token, CA and namespace at the in-cluster paths with KUBERNETES_SERVICE_HOST/PORT, and
//!   its projected Entra token, so the operator signs in to Azure with workload identity as in a real
//!   cluster. It answers /readyz, a binding converges against the simulator, and SIGTERM stops it within the
//!   Deployment's grace period, handing back the Lease.
//!
//! The container shares the host's network namespace (so 127.0.0.1 reaches the test's API server and
//! simulator) and keeps its own pid, mount, ipc and uts namespaces. The pod's seccompProfile (RuntimeDefault)
//! is not applied: runc has no runtime default profile of its own.
//!
//! The image is `IDBIND_IMAGE_LAYOUT` (an OCI layout) or target/image/oci, which `make image` writes. The
//! tests need umoci, skopeo and runc (Debian: `apt-get install -y umoci skopeo runc`) and root (runc).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::{self, File},
    net::TcpListener,
    os::unix::fs::{PermissionsExt, chown},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use idbind::{
    azure::{AzureApi, FederatedCredential},
    core::resource_id::ResourceId,
};
use idbind_testenv::workspace_root;
use idbind_testkit::{
    e2e::{
        Env, KV_RG, RG, SUB, TestError, TestResult, eventually, install_operator_rbac, operator_namespace,
        start_without_operator,
    },
    steps::step,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The resource group of the operator's own identity (apart from the identities it manages).
const OPERATOR_RG: &str = "rg-operator";
/// The operator's ServiceAccount in the test's operator namespace (see `install_operator_rbac`).
const OPERATOR_SA: &str = "operator";
/// The pod's name, as the Downward API gives it (and the Lease's holder).
const POD_NAME: &str = "idbind-image-0";

/// Runs a program and returns its stdout, or fails with its stderr (and a hint when it is not installed).
fn run(program: &str, args: &[&str]) -> Result<String, TestError> {
    let out = Command::new(program).args(args).stdin(Stdio::null()).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "{program} is not installed: apt-get install -y umoci skopeo runc (what .ci/run installs)"
            )
        } else {
            format!("{program}: {e}")
        }
    })?;
    if !out.status.success() {
        return Err(format!(
            "{program} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        )
        .into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn read_json(path: &Path) -> Result<Value, TestError> {
    Ok(serde_json::from_str(&fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?)?)
}

fn read_yaml(relative: &str) -> Result<Value, TestError> {
    Ok(serde_yaml::from_str(&fs::read_to_string(workspace_root().join(relative))?)?)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The image to test: its OCI layout and the tag in its index.json.
struct Layout {
    dir: PathBuf,
    tag: String,
    digest: String,
    /// Whether the layout is `make image`'s (not one named by IDBIND_IMAGE_LAYOUT).
    default: bool,
}

impl Layout {
    fn find() -> Result<Layout, TestError> {
        let (dir, default) = match std::env::var_os("IDBIND_IMAGE_LAYOUT") {
            Some(dir) => (PathBuf::from(dir), false),
            None => (workspace_root().join("target/image/oci"), true),
        };
        let index = read_json(&dir.join("index.json")).map_err(|e| {
            format!(
                "no OCI image layout at {} ({e}): run `make image` first (or point IDBIND_IMAGE_LAYOUT at one)",
                dir.display()
            )
        })?;
        let tagged = index["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"].is_string())
            .ok_or("the layout's index.json tags no image")?;
        Ok(Layout {
            tag: tagged["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap_or_default()
                .into(),
            digest: tagged["digest"].as_str().unwrap_or_default().into(),
            dir,
            default,
        })
    }

    fn reference(&self, transport: &str) -> String {
        format!("{transport}:{}:{}", self.dir.display(), self.tag)
    }

    fn blob(&self, digest: &str) -> Result<Vec<u8>, TestError> {
        let hex = digest.strip_prefix("sha256:").ok_or("not a sha256 digest")?;
        Ok(fs::read(self.dir.join("blobs/sha256").join(hex))?)
    }
}

/// A folder of this test process under .cache/image-test/<pid>; the folders (and runc containers) of test
/// processes that are gone are removed first, since a killed test cannot clean up after itself.
fn scratch(name: &str) -> Result<PathBuf, TestError> {
    let root = workspace_root().join(".cache/image-test");
    fs::create_dir_all(&root)?;
    let alive = |pid: &str| pid.parse::<u32>().is_ok_and(|p| Path::new(&format!("/proc/{p}")).exists());
    let runc_root = runc_root();
    if let Ok(list) = run("runc", &["--root", &runc_root.display().to_string(), "list", "-q"]) {
        for id in list.lines() {
            if id.strip_prefix("idbind-image-").is_some_and(|pid| !alive(pid)) {
                let _ = run("runc", &["--root", &runc_root.display().to_string(), "delete", "--force", id]);
            }
        }
    }
    for entry in fs::read_dir(&root)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.chars().all(|c| c.is_ascii_digit()) && !alive(&name) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    let dir = root.join(std::process::id().to_string()).join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn runc_root() -> PathBuf {
    workspace_root().join(".cache/image-test/runc")
}

/// `hack/image/build.sh --out DIR`; returns the digest it prints.
fn build_image(out: &Path) -> Result<String, TestError> {
    let script = workspace_root().join("hack/image/build.sh");
    let stdout = run(&script.display().to_string(), &["--out", &out.display().to_string()])?;
    Ok(stdout.lines().last().unwrap_or_default().trim().to_string())
}

#[test]
fn two_builds_of_one_tree_give_one_digest() -> TestResult {
    let dir = scratch("reproducible")?;
    let (a, b) = (dir.join("a"), dir.join("b"));
    let first = build_image(&a)?;
    let second = build_image(&b)?;
    eprintln!("first build: {first}\nsecond build: {second}");
    assert!(first.starts_with("sha256:") && first.len() == 71, "not a digest: {first}");
    assert_eq!(first, second, "two builds of one tree gave two image digests");
    assert_eq!(fs::read_to_string(a.join("digest"))?.trim(), first);
    for file in ["idbind.oci.tar", "idbind.cdx.json", "oci/index.json"] {
        assert!(fs::read(a.join(file))? == fs::read(b.join(file))?, "{file} differs between the two builds");
    }
    fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn the_image_holds_the_binary_its_libraries_and_nothing_else() -> TestResult {
    let layout = Layout::find()?;
    let dir = scratch("contents")?;

    // What a registry and a kubelet read: the config, through skopeo.
    let config: Value =
        serde_json::from_str(&run("skopeo", &["inspect", "--config", &layout.reference("oci")])?)?;
    let c = &config["config"];
    assert_eq!(c["User"], "65532:65532");
    assert_eq!(c["Entrypoint"], json!(["/usr/local/bin/idbind"]));
    assert_eq!(c["Cmd"], json!(["run"]));
    assert_eq!(c["ExposedPorts"], json!({"8080/tcp": {}}));
    let labels = &c["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(labels["org.opencontainers.image.licenses"], env!("CARGO_PKG_LICENSE"));
    let revision = labels["org.opencontainers.image.revision"].as_str().unwrap_or_default();
    if layout.default {
        let head = run("git", &["-C", &workspace_root().display().to_string(), "rev-parse", "HEAD"])?;
        assert!(
            revision.starts_with(head.trim()),
            "target/image is of revision {revision}, this tree is {}: run `make image` again",
            head.trim()
        );
    }
    assert!(labels["org.opencontainers.image.created"].is_string());

    // The archive beside the layout is the same image, and copying it (what a push does) keeps the digest.
    let archive = layout.dir.with_file_name("idbind.oci.tar");
    let archive_ref = format!("oci-archive:{}:{}", archive.display(), layout.tag);
    let inspected: Value = serde_json::from_str(&run("skopeo", &["inspect", &archive_ref])?)?;
    assert_eq!(inspected["Digest"], layout.digest.as_str());
    let copy = dir.join("copy");
    run("skopeo", &["copy", "--quiet", &archive_ref, &format!("oci:{}:{}", copy.display(), layout.tag)])?;
    let copied: Value = serde_json::from_str(&run(
        "skopeo",
        &["inspect", &format!("oci:{}:{}", copy.display(), layout.tag)],
    )?)?;
    assert_eq!(copied["Digest"], layout.digest.as_str(), "skopeo copy rewrote the image");

    // The root filesystem, as umoci unpacks it.
    let bundle = dir.join("bundle");
    let image = format!("{}:{}", layout.dir.display(), layout.tag);
    run("umoci", &["unpack", "--image", &image, &bundle.display().to_string()])?;
    let rootfs = bundle.join("rootfs");
    let mut files = BTreeSet::new();
    walk(&rootfs, &rootfs, &mut files)?;
    let binary = rootfs.join("usr/local/bin/idbind");
    let mut wanted: BTreeSet<String> = [
        "usr/local/bin/idbind",
        "etc/passwd",
        "etc/group",
        "etc/nsswitch.conf",
        "etc/ssl/certs/ca-certificates.crt",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    // Exactly the libraries the dynamic loader maps for the binary (ldd on the host resolves the same names).
    for line in run("ldd", &[&binary.display().to_string()])?.lines() {
        let path = line.split("=>").last().unwrap_or_default().trim().split(' ').next().unwrap_or_default();
        if path.starts_with('/') {
            wanted.insert(path.trim_start_matches('/').to_string());
        }
    }
    let notices: BTreeSet<String> = files
        .iter()
        .filter(|f| {
            (f.starts_with("usr/share/doc/") && f.ends_with("/copyright"))
                || f.starts_with("var/lib/dpkg/status.d/")
        })
        .cloned()
        .collect();
    let rest: BTreeSet<String> = files.difference(&notices).cloned().collect();
    assert_eq!(rest, wanted, "the image holds other files than the binary needs");
    assert!(
        notices.contains("usr/share/doc/libc6/copyright") && notices.contains("var/lib/dpkg/status.d/libc6")
    );
    for shell in ["bin/sh", "bin/bash", "usr/bin/sh", "bin/busybox"] {
        assert!(!rootfs.join(shell).exists(), "{shell} in the image");
    }
    let passwd = fs::read_to_string(rootfs.join("etc/passwd"))?;
    assert!(passwd.lines().any(|l| l.starts_with("nonroot:x:65532:65532:")), "{passwd}");
    assert!(fs::read_to_string(rootfs.join("etc/group"))?.lines().any(|l| l == "nonroot:x:65532:"));

    // The SBOM beside the image names this binary and its crates, and is attached to the image.
    let sbom_path = layout.dir.with_file_name("idbind.cdx.json");
    let sbom_bytes = fs::read(&sbom_path)?;
    let sbom: Value = serde_json::from_slice(&sbom_bytes)?;
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    assert_eq!(sbom["metadata"]["component"]["name"], "idbind");
    assert_eq!(
        sbom["metadata"]["component"]["hashes"][0]["content"].as_str(),
        Some(sha256_hex(&fs::read(&binary)?).as_str()),
        "the SBOM describes another binary"
    );
    let crates: BTreeSet<&str> = sbom["components"]
        .as_array()
        .ok_or("an SBOM without components")?
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for linked in ["kube-client", "azure_core", "rustls", "tokio", "tikv-jemallocator"] {
        assert!(crates.contains(linked), "{linked} missing from the SBOM");
    }
    for test_only in ["proptest", "mlua", "idbind-sim", "idbind-testenv", "pretty_assertions"] {
        assert!(!crates.contains(test_only), "{test_only} (a dev-dependency) is in the SBOM");
    }
    let index = read_json(&layout.dir.join("index.json"))?;
    let referrer = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["artifactType"] == "application/vnd.cyclonedx+json")
        .ok_or("no SBOM attached in index.json")?;
    let referrer: Value =
        serde_json::from_slice(&layout.blob(referrer["digest"].as_str().unwrap_or_default())?)?;
    assert_eq!(
        referrer["subject"]["digest"],
        layout.digest.as_str(),
        "the SBOM is attached to another image"
    );
    assert_eq!(referrer["layers"][0]["digest"], format!("sha256:{}", sha256_hex(&sbom_bytes)));
    fs::remove_dir_all(&dir)?;
    Ok(())
}

/// Every file and symlink under `dir`, relative to `root`.
fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) -> TestResult {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(root, &path, out)?;
        } else {
            out.insert(path.strip_prefix(root)?.display().to_string());
        }
    }
    Ok(())
}

/// A runc container, deleted (`runc delete --force`) when dropped, whatever the test did.
struct Container {
    id: String,
    log: PathBuf,
}

impl Container {
    /// `runc run --detach`: the container's stdout and stderr (the operator's log) go to `log`.
    fn start(bundle: &Path, log: PathBuf) -> Result<Container, TestError> {
        let container = Container { id: format!("idbind-image-{}", std::process::id()), log };
        fs::create_dir_all(runc_root())?;
        let status = Command::new("runc")
            .arg("--root")
            .arg(runc_root())
            .args(["run", "--detach", "--bundle"])
            .arg(bundle)
            .arg(&container.id)
            .stdin(Stdio::null())
            .stdout(File::create(&container.log)?)
            .stderr(File::options().append(true).open(&container.log)?)
            .status()?;
        if !status.success() {
            return Err(format!("runc run failed: {}", container.log_text()).into());
        }
        Ok(container)
    }

    fn runc(&self, args: &[&str]) -> Result<String, TestError> {
        let root = runc_root().display().to_string();
        let mut all = vec!["--root", root.as_str()];
        all.extend_from_slice(args);
        run("runc", &all)
    }

    fn state(&self) -> Result<Value, TestError> {
        Ok(serde_json::from_str(&self.runc(&["state", &self.id])?)?)
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.runc(&["delete", "--force", &self.id]);
    }
}

/// The operator's own Azure identity, federated with its ServiceAccount and given the Azure roles README
/// lists: set up as an administrator would (`az identity create`, `az identity federated-credential create`,
/// `az role assignment create`), signed in as the administrator. The container never sees a secret; it signs
/// in with its projected token.
async fn operator_identity(env: &Env, op_ns: &str, audience: &str) -> Result<String, TestError> {
    let arm = idbind_testkit::azure_rbac::admin_arm(env)?;
    let id: ResourceId = format!(
        "/subscriptions/{SUB}/resourceGroups/{OPERATOR_RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/idbind"
    )
    .parse()?;
    let ids = arm.put_identity(&id, "westeurope", &BTreeMap::new()).await?;
    let fic = FederatedCredential {
        name: "idbind".into(),
        issuer: env.plane.server().to_string(),
        subject: format!("system:serviceaccount:{op_ns}:{OPERATOR_SA}"),
        audiences: vec![audience.to_string()],
    };
    arm.put_federated_credential(&id, &fic).await?;
    let identities = [format!("/subscriptions/{SUB}/resourceGroups/{RG}")];
    idbind_testkit::azure_rbac::grant_operator_roles_now(&env.sim, &ids.principal_id, &identities).await?;
    Ok(ids.client_id)
}

/// A file of a volume as the kubelet writes it for a pod with fsGroup: owned by root, readable by the group.
fn volume_file(dir: &Path, name: &str, contents: &[u8], fs_group: u32) -> TestResult {
    fs::create_dir_all(dir)?;
    let path = dir.join(name);
    fs::write(&path, contents)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o440))?;
    chown(&path, Some(0), Some(fs_group))?;
    Ok(())
}

fn bind(destination: &str, source: &Path) -> Value {
    json!({"destination": destination, "type": "bind", "source": source,
           "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]})
}

/// The pod's and the container's securityContext onto the runtime spec, as the kubelet and the runtime apply
/// them. A field this test does not know fails it: a new hardening setting must be applied here too.
fn apply_security_context(spec: &mut Value, pod: &Value, container: &Value) -> Result<u32, TestError> {
    let psc = &pod["securityContext"];
    let csc = &container["securityContext"];
    for key in psc.as_object().ok_or("the pod has no securityContext")?.keys() {
        if !["runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup", "seccompProfile"].contains(&key.as_str()) {
            return Err(
                format!("pod securityContext.{key} is not applied by tests/image.rs: teach it").into()
            );
        }
    }
    for key in csc.as_object().ok_or("the container has no securityContext")?.keys() {
        let known = [
            "allowPrivilegeEscalation",
            "privileged",
            "readOnlyRootFilesystem",
            "runAsNonRoot",
            "capabilities",
        ];
        if !known.contains(&key.as_str()) {
            return Err(format!(
                "container securityContext.{key} is not applied by tests/image.rs: teach it"
            )
            .into());
        }
    }
    let field = |name: &str| csc[name].as_u64().or_else(|| psc[name].as_u64());
    let uid = field("runAsUser").ok_or("no runAsUser")?;
    let gid = field("runAsGroup").ok_or("no runAsGroup")?;
    let fs_group = u32::try_from(psc["fsGroup"].as_u64().ok_or("no fsGroup")?)?;
    if csc["runAsNonRoot"] == true || psc["runAsNonRoot"] == true {
        // The kubelet refuses to start the container as root.
        assert_ne!(uid, 0, "runAsNonRoot with user 0");
    }
    assert_eq!(csc["privileged"], false, "a privileged container");
    spec["process"]["user"] = json!({"uid": uid, "gid": gid, "additionalGids": [fs_group]});
    spec["root"]["readonly"] = json!(csc["readOnlyRootFilesystem"] == true);
    spec["process"]["noNewPrivileges"] = json!(csc["allowPrivilegeEscalation"] == false);
    assert_eq!(csc["capabilities"], json!({"drop": ["ALL"]}), "capabilities other than drop ALL");
    for set in ["bounding", "effective", "inheritable", "permitted", "ambient"] {
        spec["process"]["capabilities"][set] = json!([]);
    }
    // seccompProfile RuntimeDefault: not applied (see the module's doc).
    Ok(fs_group)
}

/// A Kubernetes memory quantity in bytes ("256Mi").
fn bytes(quantity: &str) -> Result<u64, TestError> {
    let (digits, factor) = [("Ki", 1u64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)]
        .iter()
        .find_map(|(suffix, factor)| quantity.strip_suffix(suffix).map(|d| (d, *factor)))
        .unwrap_or((quantity, 1));
    Ok(digits.parse::<u64>()? * factor)
}

fn free_port() -> Result<u16, TestError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn status_field<'a>(status: &'a str, name: &str) -> &'a str {
    status.lines().find_map(|l| l.strip_prefix(&format!("{name}:"))).map(str::trim).unwrap_or_default()
}

fn lease_holder(env: &Env, op_ns: &str) -> Result<String, TestError> {
    Ok(env.plane.kubectl_ok(&[
        "get",
        "lease",
        "idbind-leader",
        "-n",
        op_ns,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])?)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_image_runs_as_the_deployment_runs_it() -> TestResult {
    let layout = Layout::find()?;
    let uid = status_field(&fs::read_to_string("/proc/self/status")?, "Uid")
        .split_whitespace()
        .next()
        .map(String::from);
    assert_eq!(uid.as_deref(), Some("0"), "runc needs root (CI runs as root)");
    let dir = scratch("container")?;
    let deployment = read_yaml("config/manager/deployment.yaml")?;
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];

    let env = start_without_operator("image", |config| {
        config.seed.add_rg(SUB, OPERATOR_RG, Some("westeurope".into()));
    })
    .await?;
    install_operator_rbac(env.plane, &env.ns, &[])?;
    let op_ns = operator_namespace(&env.ns);

    // The runtime spec umoci derives from the image: its user and command before the Deployment says more.
    let bundle = dir.join("bundle");
    let image = format!("{}:{}", layout.dir.display(), layout.tag);
    run("umoci", &["unpack", "--image", &image, &bundle.display().to_string()])?;
    let mut spec = read_json(&bundle.join("config.json"))?;
    assert_eq!(spec["process"]["user"], json!({"uid": 65532, "gid": 65532}), "the image's USER");
    assert_eq!(spec["process"]["args"], json!(["/usr/local/bin/idbind", "run"]), "ENTRYPOINT and CMD");
    assert_eq!(container["args"], json!(["run"]), "the Deployment's args, the image's CMD");
    let fs_group = apply_security_context(&mut spec, pod, container)?;
    spec["process"]["terminal"] = json!(false);
    spec["hostname"] = json!(POD_NAME);
    // The host's network namespace, so 127.0.0.1 is the test's API server and simulator; the others stay.
    if let Some(namespaces) = spec["linux"]["namespaces"].as_array_mut() {
        namespaces.retain(|n| n["type"] != "network");
    }
    let limit = container["resources"]["limits"]["memory"].as_str().ok_or("no memory limit")?;
    spec["linux"]["resources"]["memory"] = json!({"limit": bytes(limit)?});

    // Volumes, as the kubelet mounts them: the ServiceAccount's (token, CA, namespace at the in-cluster
    // paths), the Deployment's own (its projected Entra token), and the simulator's CA, which an install
    // behind a TLS-inspecting proxy mounts from a ConfigMap (config_map.yaml, IDBIND_CA_FILE).
    let volumes = dir.join("volumes");
    let sa_dir = volumes.join("kube-api-access");
    let sa_token = env.plane.kubectl_ok(&["create", "token", OPERATOR_SA, "-n", &op_ns, "--duration=1h"])?;
    volume_file(&sa_dir, "token", sa_token.trim().as_bytes(), fs_group)?;
    volume_file(&sa_dir, "ca.crt", &fs::read(env.plane.ca_file())?, fs_group)?;
    volume_file(&sa_dir, "namespace", op_ns.as_bytes(), fs_group)?;
    let mut mounts = vec![bind("/var/run/secrets/kubernetes.io/serviceaccount", &sa_dir)];
    let mut audience = None;
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        let name = mount["name"].as_str().ok_or("a volumeMount without a name")?;
        let volume = pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == name)
            .ok_or_else(|| format!("no volume {name}"))?;
        let host = volumes.join(name);
        for source in volume["projected"]["sources"]
            .as_array()
            .ok_or_else(|| format!("volume {name}: not projected"))?
        {
            let token = &source["serviceAccountToken"];
            let aud = token["audience"].as_str().ok_or_else(|| format!("volume {name}: not a token"))?;
            let seconds = token["expirationSeconds"].as_u64().unwrap_or(3600);
            let jwt = env.plane.kubectl_ok(&[
                "create",
                "token",
                OPERATOR_SA,
                "-n",
                &op_ns,
                "--audience",
                aud,
                &format!("--duration={seconds}s"),
            ])?;
            volume_file(&host, token["path"].as_str().ok_or("no path")?, jwt.trim().as_bytes(), fs_group)?;
            audience = Some(aud.to_string());
        }
        assert_eq!(mount["readOnly"], true, "volume {name} mounted writable");
        mounts.push(bind(mount["mountPath"].as_str().ok_or("no mountPath")?, &host));
    }
    let ca_dir = volumes.join("idbind-ca");
    volume_file(&ca_dir, "ca.pem", env.sim.ca_pem().ok_or("the simulator has no CA")?.as_bytes(), fs_group)?;
    mounts.push(bind("/etc/idbind/ca", &ca_dir));
    spec["mounts"].as_array_mut().ok_or("no mounts in the spec")?.extend(mounts);

    let audience = audience.ok_or("the Deployment mounts no Entra token")?;
    let client_id = step("the operator's own identity", operator_identity(&env, &op_ns, &audience)).await?;

    // The environment: the image's, then the ConfigMap's settings with what an install's overlay adds (this
    // cluster, this Azure, the operator's identity), then the Deployment's env (the Downward API's values and
    // the token file), then the Service variables the kubelet adds.
    let port = free_port()?;
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for kv in spec["process"]["env"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        let (k, v) = kv.split_once('=').ok_or("an env entry without =")?;
        if k != "TERM" {
            // umoci's, for a terminal; the kubelet sets none.
            vars.insert(k.into(), v.into());
        }
    }
    let config_map = read_yaml("config/manager/config_map.yaml")?;
    for (k, v) in config_map["data"].as_object().ok_or("a ConfigMap without data")? {
        vars.insert(k.clone(), v.as_str().ok_or("a ConfigMap value that is not a string")?.into());
    }
    let overlay = [
        ("IDBIND_CLUSTER_NAME", "e2e".to_string()),
        ("IDBIND_OIDC_ISSUER", env.plane.server().to_string()),
        ("AZURE_SUBSCRIPTION_ID", SUB.into()),
        ("AZURE_TENANT_ID", env.sim.tenant_id().into()),
        ("AZURE_CLIENT_ID", client_id.clone()),
        ("IDBIND_RESOURCE_GROUP", RG.into()),
        ("IDBIND_LOCATION", "westeurope".into()),
        ("IDBIND_CLOUD", "custom".into()),
        ("IDBIND_ARM_ENDPOINT", env.sim.https_url().ok_or("no HTTPS listener")?.into()),
        ("IDBIND_AUTHORITY_HOST", env.sim.authority_host().ok_or("no authority host")?),
        ("IDBIND_CA_FILE", "/etc/idbind/ca/ca.pem".into()),
        // This test's own: one namespace of the shared control plane, a free port on the host's network, and
        // the request budget the other tests use.
        ("IDBIND_WATCH_NAMESPACE", env.ns.clone()),
        ("IDBIND_HTTP_ADDR", format!("127.0.0.1:{port}")),
        ("IDBIND_BUDGET_SCALE", "10".into()),
    ];
    for (k, v) in overlay {
        vars.insert(k.into(), v);
    }
    for var in container["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().ok_or("an env entry without a name")?;
        let value = match (var["value"].as_str(), var["valueFrom"]["fieldRef"]["fieldPath"].as_str()) {
            (Some(v), _) => v.to_string(),
            (None, Some("metadata.name")) => POD_NAME.into(),
            (None, Some("metadata.namespace")) => op_ns.clone(),
            (None, Some("spec.serviceAccountName")) => OPERATOR_SA.into(),
            _ => return Err(format!("env {name}: not understood by tests/image.rs").into()),
        };
        vars.insert(name.into(), value);
    }
    let api_port = env.plane.server().rsplit(':').next().ok_or("no port in the server URL")?;
    vars.insert("KUBERNETES_SERVICE_HOST".into(), "127.0.0.1".into());
    vars.insert("KUBERNETES_SERVICE_PORT".into(), api_port.into());
    assert!(!vars.contains_key("AZURE_CLIENT_SECRET") && !vars.contains_key("KUBECONFIG"));
    assert_eq!(vars["IDBIND_CREDENTIAL"], "workload-identity", "the ConfigMap's credential");
    spec["process"]["env"] = json!(vars.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>());
    fs::write(bundle.join("config.json"), serde_json::to_vec_pretty(&spec)?)?;

    // A new federated credential is unusable for a moment (the simulator's propagation delay, 1 s here).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let running = Container::start(&bundle, dir.join("idbind.log"))?;
    eprintln!("container {} (log {})", running.id, running.log.display());
    let with_log =
        |e: TestError| -> TestError { format!("{e}\n--- container log:\n{}", running.log_text()).into() };
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build()?;
    let base = format!("http://127.0.0.1:{port}");

    step("ready, as the Deployment's probe asks", async {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            match http.get(format!("{base}/readyz")).send().await {
                Ok(r) if r.status().is_success() => break,
                last if std::time::Instant::now() > deadline => {
                    return Err(format!("/readyz did not answer 200 within 60 s: {last:?}").into());
                }
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        Ok(())
    })
    .await
    .map_err(with_log)?;

    step("the container runs with the Deployment's securityContext", async {
        let pid = running.state()?["pid"].as_u64().ok_or("runc state without a pid")?;
        let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
        assert_eq!(status_field(&status, "Uid"), "65532\t65532\t65532\t65532");
        assert_eq!(status_field(&status, "Gid"), "65532\t65532\t65532\t65532");
        assert_eq!(status_field(&status, "Groups"), fs_group.to_string());
        for caps in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(status_field(&status, caps), "0000000000000000", "{caps}");
        }
        assert_eq!(status_field(&status, "NoNewPrivs"), "1");
        let mountinfo = fs::read_to_string(format!("/proc/{pid}/mountinfo"))?;
        let root = mountinfo
            .lines()
            .map(|l| l.split(' ').collect::<Vec<_>>())
            .find(|f| f.get(4) == Some(&"/"))
            .ok_or("no root mount")?;
        assert!(root[5].split(',').any(|o| o == "ro"), "the root filesystem is writable: {root:?}");
        let ns = |p: &str, kind: &str| fs::read_link(format!("/proc/{p}/ns/{kind}"));
        assert_eq!(ns(&pid.to_string(), "net")?, ns("self", "net")?, "the host's network namespace");
        for kind in ["pid", "mnt", "ipc", "uts"] {
            assert_ne!(ns(&pid.to_string(), kind)?, ns("self", kind)?, "its own {kind} namespace");
        }
        Ok(())
    })
    .await
    .map_err(with_log)?;

    step("a binding converges", async {
        idbind_testkit::e2e::apply_cluster(env.plane, &idbind_testkit::e2e::team_policy(&env.ns))?;
        env.kubectl(&["create", "serviceaccount", "payments"])?;
        env.apply(&json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding",
            "metadata": {"name": "payments"},
            "spec": {"serviceAccountName": "payments",
                     "keyVaults": [{"name": "kv-shop", "resourceGroup": KV_RG, "roles": ["Key Vault Secrets User"]}]}}))?;
        env.kubectl(&["wait", "--for=condition=Ready", "--timeout=120s", "wib/payments"])?;
        let annotated = env.kubectl(&[
            "get",
            "serviceaccount",
            "payments",
            "-o",
            "jsonpath={.metadata.annotations.azure\\.workload\\.identity/client-id}",
        ])?;
        assert!(!annotated.trim().is_empty(), "the ServiceAccount has no client-id annotation");
        assert_eq!(lease_holder(&env, &op_ns)?, POD_NAME, "the container leads");
        let metrics = http.get(format!("{base}/metrics")).send().await?.text().await?;
        assert!(metrics.contains("idbind_reconciles_total"), "{metrics}");
        let log = running.log_text();
        assert!(!log.contains("forbidden"), "the shipped RBAC refused something");
        for line in log.lines().filter(|l| !l.trim().is_empty()) {
            serde_json::from_str::<Value>(line).map_err(|e| format!("not a JSON log line ({e}): {line}"))?;
        }
        Ok(())
    })
    .await
    .map_err(with_log)?;

    step("SIGTERM stops it within the grace period and hands back the Lease", async {
        let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
        running.runc(&["kill", &running.id, "TERM"])?;
        eventually("the container to stop", Duration::from_secs(grace), || {
            Ok((running.state()?["status"] == "stopped").then_some(()))
        })
        .await?;
        assert_eq!(lease_holder(&env, &op_ns)?, "", "the Lease was not released");
        assert!(running.log_text().contains("released leadership"));
        Ok(())
    })
    .await
    .map_err(with_log)?;
    drop(running);
    fs::remove_dir_all(&dir)?;
    Ok(())
}
