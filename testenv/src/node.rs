//! A real node beside the control plane, for `make node` and `make test-node`: Debian's containerd (1.6) with
//! runc and the CNI bridge plugin, and a kubelet, kube-scheduler and kube-proxy built from the same Go module
//! as the control plane (`make node-bin`, into `.cache/node/bin`). Pods get addresses on a bridge of their
//! own ([`BRIDGE`], [`POD_SUBNET`]); the API server listens on the bridge's address ([`GATEWAY`]) and
//! kube-proxy routes the `kubernetes` Service there, so in-cluster clients work as on AKS.
//!
//! It needs root and changes the machine. Everything it may change is read into a [`MachineState`] before it
//! starts (kept in the state folder); [`down`] stops every process and undoes exactly the difference, and
//! returns what still differs, which the node test asserts is nothing. What it changes:
//! - processes: containerd and its shims, the kubelet, kube-scheduler, kube-proxy, the pods' processes;
//! - the bridge `idbind0` and the pods' veth pairs and network namespaces;
//! - mounts: the pods' volumes, root filesystems and namespaces, all under the state folder;
//! - iptables: kube-proxy's `KUBE-*` chains and the kubelet's canary chains (filter, nat, mangle);
//! - sysctls the kubelet sets (`vm.overcommit_memory`, `vm.panic_on_oom`, `kernel.panic`,
//!   `kernel.panic_on_oops`, `kernel.keys.root_max*`) and the bridge plugin's `net.ipv4.ip_forward`;
//! - cgroups `kubepods` in each cgroup hierarchy;
//! - folders the kubelet writes outside its root: `/var/lib/kubelet` (device plugins), `/var/log/containers`,
//!   `/var/log/pods`; and the CNI cache `/var/lib/cni`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::{Child, Command},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::{ControlPlane, Lifetime, Listen, logged_command, stop_pid_files, workspace_root};

/// The node's name (and the kubelet's identity, `system:node:idbind-node`).
pub const NODE_NAME: &str = "idbind-node";
/// The bridge the pods are attached to.
pub const BRIDGE: &str = "idbind0";
/// The bridge's address: the pods' gateway, where the API server, the kubelet and the tests' simulator
/// listen.
pub const GATEWAY: &str = "10.217.0.1";
/// The pods' addresses.
pub const POD_SUBNET: &str = "10.217.0.0/24";
/// The `kubernetes` Service's ClusterIP (the first of `--service-cluster-ip-range`).
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";
/// The pod sandbox image containerd is configured with (`make node-images` builds it from the kubernetes
/// module's own pause.c).
pub const SANDBOX_IMAGE: &str = "idbind.local/pause:3.10";

/// Sysctls the kubelet, the bridge plugin or kube-proxy may set; [`down`] puts back what they were.
const SYSCTLS: &[&str] = &[
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/forwarding",
    "net/ipv4/conf/all/route_localnet",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
];

/// Folders the node's processes create outside the state folder; [`down`] removes those that were absent.
const OUTSIDE_PATHS: &[&str] =
    &["/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/var/lib/cni", "/run/netns", "/etc/cni"];

/// The iptables front ends whose rules are compared: the nftables one and, where installed, the legacy one.
const IPTABLES_SAVE: &[&str] =
    &["iptables-save", "ip6tables-save", "iptables-legacy-save", "ip6tables-legacy-save"];

/// Where the kubelet, kube-scheduler and kube-proxy are: `$IDBIND_NODE_BIN`, else the workspace cache.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("IDBIND_NODE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".cache/node/bin"))
}

/// The node's state folder (there is one node per machine: the bridge, port 10250 and the sysctls are
/// machine-wide): `$IDBIND_NODE_STATE`, else `.cache/node-state`.
pub fn state_dir() -> PathBuf {
    std::env::var_os("IDBIND_NODE_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".cache/node-state"))
}

/// The folder of the images `make node-images` builds (OCI archives containerd imports).
pub fn images_dir() -> PathBuf {
    workspace_root().join("target/node-images")
}

/// What the node may change on this machine, read before it starts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineState {
    /// Sysctl (path under /proc/sys) → value.
    pub sysctls: BTreeMap<String, String>,
    /// Every iptables rule and chain, per front end (`-A ...` lines and `:CHAIN POLICY`, counters dropped).
    pub iptables: BTreeMap<String, BTreeSet<String>>,
    /// Network interfaces by name.
    pub links: BTreeSet<String>,
    /// Mount points.
    pub mounts: BTreeSet<String>,
    /// `kubepods` cgroups (and anything below them).
    pub cgroups: BTreeSet<String>,
    /// Folders of [`OUTSIDE_PATHS`] that exist.
    pub paths: BTreeSet<String>,
    /// Processes whose command line names the state folder or the node's binaries (shims included).
    pub processes: BTreeSet<String>,
}

impl MachineState {
    /// Reads the machine now.
    pub fn read() -> Result<Self> {
        let mut state = MachineState::default();
        for name in SYSCTLS {
            if let Ok(v) = fs::read_to_string(Path::new("/proc/sys").join(name)) {
                state.sysctls.insert((*name).to_string(), v.trim().to_string());
            }
        }
        for save in IPTABLES_SAVE {
            let Ok(out) = Command::new(save).output() else { continue };
            if !out.status.success() {
                continue;
            }
            let rules = String::from_utf8_lossy(&out.stdout).lines().filter_map(normalized_rule).collect();
            state.iptables.insert((*save).to_string(), rules);
        }
        for entry in fs::read_dir("/sys/class/net")?.flatten() {
            state.links.insert(entry.file_name().to_string_lossy().into_owned());
        }
        for line in fs::read_to_string("/proc/self/mountinfo")?.lines() {
            if let Some(point) = line.split(' ').nth(4) {
                state.mounts.insert(point.to_string());
            }
        }
        for hierarchy in fs::read_dir("/sys/fs/cgroup")?.flatten() {
            let kubepods = hierarchy.path().join("kubepods");
            if kubepods.is_dir() {
                state.cgroups.insert(kubepods.display().to_string());
            }
        }
        for p in OUTSIDE_PATHS {
            if Path::new(p).exists() {
                state.paths.insert((*p).to_string());
            }
        }
        state.processes = node_processes().into_iter().map(|(pid, cmd)| format!("{pid} {cmd}")).collect();
        Ok(state)
    }

    /// What differs from `before`, one line per difference (empty when the machine is as it was).
    pub fn differences_from(&self, before: &MachineState) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in &self.sysctls {
            if before.sysctls.get(k) != Some(v) {
                out.push(format!("sysctl {k} = {v} (was {:?})", before.sysctls.get(k)));
            }
        }
        for (save, rules) in &self.iptables {
            let empty = BTreeSet::new();
            let was = before.iptables.get(save).unwrap_or(&empty);
            out.extend(rules.difference(was).map(|r| format!("{save}: added {r}")));
            out.extend(was.difference(rules).map(|r| format!("{save}: removed {r}")));
        }
        let added = |now: &BTreeSet<String>, was: &BTreeSet<String>, what: &str| {
            now.difference(was).map(|x| format!("{what} {x}")).collect::<Vec<_>>()
        };
        out.extend(added(&self.links, &before.links, "interface"));
        out.extend(added(&self.mounts, &before.mounts, "mount"));
        out.extend(added(&self.cgroups, &before.cgroups, "cgroup"));
        out.extend(added(&self.paths, &before.paths, "folder"));
        out.extend(added(&self.processes, &before.processes, "process"));
        out
    }
}

/// One line of `iptables-save` as [`MachineState`] compares it: rules (`-A ...`) and chain declarations
/// without their counters. Table headers and the built-in chains with policy ACCEPT are left out: an nftables
/// table that kube-proxy made and that is empty again filters nothing, and iptables cannot delete it.
fn normalized_rule(line: &str) -> Option<String> {
    if line.starts_with('#') || line.starts_with('*') || line.is_empty() || line == "COMMIT" {
        return None;
    }
    let Some(chain) = line.strip_prefix(':') else {
        return Some(line.to_string());
    };
    // ":CHAIN POLICY [packets:bytes]": the counters move on their own.
    let declared = chain.rsplit_once(' ').map_or(chain, |(c, _)| c);
    let builtin = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]
        .iter()
        .any(|b| declared == format!("{b} ACCEPT"));
    (!builtin).then(|| format!(":{declared}"))
}

/// Processes (pid, command line) that belong to a node: their command line names the state folder or the
/// node's binaries, or they live in a `kubepods` cgroup.
fn node_processes() -> Vec<(i32, String)> {
    let state = state_dir().display().to_string();
    let bins = bin_dir().display().to_string();
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else { continue };
        if pid == me || !crate::running(pid) {
            continue;
        }
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmdline).replace('\0', " ").trim().to_string();
        let cgroup = fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
        if cmd.contains(&state) || cmd.contains(&bins) || cgroup.contains("/kubepods") {
            found.push((pid, cmd));
        }
    }
    found
}

/// Fails with a clear message unless this process is root.
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "a real node needs root: containerd, the kubelet and kube-proxy create network namespaces, \
             mounts, cgroups and iptables rules (run `make node` / `make test-node` as root, e.g. in CI)"
        );
    }
    Ok(())
}

/// A running node: containerd, the kubelet, kube-scheduler and kube-proxy.
pub struct Node {
    dir: PathBuf,
    children: Vec<(String, Child)>,
    /// How long from starting containerd until the API server showed the node Ready.
    pub started_in: Duration,
}

impl Node {
    /// Makes the machine ready for a node and remembers how it was: undoes a previous node's leftovers
    /// ([`down`]), reads the [`MachineState`] into the state folder, and creates the bridge the API server
    /// then listens on ([`Listen::NodeBridge`]). Call before [`ControlPlane::start_with`].
    pub fn prepare() -> Result<()> {
        require_root()?;
        for tool in ["containerd", "ctr", "containerd-shim-runc-v2", "runc", "ip", "iptables", "conntrack"] {
            which(tool).with_context(|| {
                format!("{tool} is missing: apt-get install containerd runc containernetworking-plugins conntrack iproute2 iptables")
            })?;
        }
        for plugin in ["bridge", "host-local", "loopback"] {
            if !cni_bin_dir().join(plugin).is_file() {
                bail!("the CNI plugin {plugin} is missing: apt-get install containernetworking-plugins");
            }
        }
        for b in ["kubelet", "kube-scheduler", "kube-proxy"] {
            if !bin_dir().join(b).is_file() {
                bail!("{} is missing: run `make node-bin` first", bin_dir().join(b).display());
            }
        }
        let leftovers = down()?;
        if !leftovers.is_empty() {
            bail!("a previous node could not be undone:\n  {}", leftovers.join("\n  "));
        }
        let dir = state_dir();
        fs::create_dir_all(dir.join("logs"))?;
        let before = MachineState::read()?;
        fs::write(dir.join("machine-before.json"), serde_json::to_vec_pretty(&before)?)?;
        run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
        run("ip", &["addr", "add", &format!("{GATEWAY}/24"), "dev", BRIDGE])?;
        run("ip", &["link", "set", BRIDGE, "up"])?;
        Ok(())
    }

    /// Starts containerd (importing the images of `images`: OCI or docker archives), the kubelet,
    /// kube-scheduler and kube-proxy against `plane` (started with [`Listen::NodeBridge`] after
    /// [`Node::prepare`]) and waits until the node is Ready.
    pub fn start(plane: &ControlPlane, lifetime: Lifetime, images: &[PathBuf]) -> Result<Node> {
        let dir = state_dir();
        if !dir.join("machine-before.json").is_file() {
            bail!("Node::prepare must run first");
        }
        let started = Instant::now();
        let mut node = Node { dir: dir.clone(), children: Vec::new(), started_in: Duration::ZERO };
        let pki = plane.dir().join("pki");

        // containerd, in a root, state folder and socket of its own (a containerd of the machine stays
        // untouched), with the CNI configuration below.
        let ctrd = dir.join("containerd");
        fs::create_dir_all(&ctrd)?;
        let cni_conf = dir.join("cni/net.d");
        fs::create_dir_all(&cni_conf)?;
        fs::write(cni_conf.join("10-idbind.conflist"), cni_config(&dir))?;
        fs::write(ctrd.join("config.toml"), containerd_config(&dir))?;
        node.spawn(
            lifetime,
            "containerd",
            &which("containerd")?,
            &[format!("--config={}", ctrd.join("config.toml").display())],
        )?;
        node.wait_for(Duration::from_secs(30), "containerd's socket", || {
            ctr(&["version"]).map(|_| ()).is_ok()
        })?;
        for image in images {
            ctr(&["images", "import", "--no-unpack", &image.display().to_string()])
                .with_context(|| format!("importing {}", image.display()))?;
        }

        // The kubelet: its own credential (Node authorizer), a serving certificate of the cluster's CA, the
        // API server's client certificate trusted for logs and exec.
        let kubelet_dir = dir.join("kubelet");
        fs::create_dir_all(&kubelet_dir)?;
        let node_token = fs::read_to_string(pki.join("node.token")).context("the plane has no node token")?;
        let kubelet_user = format!("system:node:{NODE_NAME}");
        crate::write_kubeconfig(
            &dir.join("kubelet.kubeconfig"),
            plane.server(),
            &pki.join("ca.crt"),
            &kubelet_user,
            node_token.trim(),
        )?;
        fs::write(dir.join("kubelet.yaml"), kubelet_config(&dir, &pki))?;
        node.spawn(
            lifetime,
            "kubelet",
            &bin_dir().join("kubelet"),
            &[
                format!("--config={}", dir.join("kubelet.yaml").display()),
                format!("--kubeconfig={}", dir.join("kubelet.kubeconfig").display()),
                format!("--root-dir={}", kubelet_dir.display()),
                format!("--hostname-override={NODE_NAME}"),
                format!("--node-ip={GATEWAY}"),
                "--v=1".into(),
            ],
        )?;
        let admin = plane.kubeconfig().display().to_string();
        node.spawn(
            lifetime,
            "kube-scheduler",
            &bin_dir().join("kube-scheduler"),
            &[
                format!("--kubeconfig={admin}"),
                format!("--authentication-kubeconfig={admin}"),
                format!("--authorization-kubeconfig={admin}"),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
                "--v=1".into(),
            ],
        )?;
        // kube-proxy routes Services (the kubernetes Service above all) with iptables; it leaves the
        // conntrack sysctls and route_localnet alone, so there is less to undo.
        node.spawn(
            lifetime,
            "kube-proxy",
            &bin_dir().join("kube-proxy"),
            &[
                format!("--kubeconfig={admin}"),
                format!("--hostname-override={NODE_NAME}"),
                "--proxy-mode=iptables".into(),
                format!("--cluster-cidr={POD_SUBNET}"),
                "--iptables-localhost-nodeports=false".into(),
                "--conntrack-max-per-core=0".into(),
                "--conntrack-min=0".into(),
                "--conntrack-tcp-timeout-established=0".into(),
                "--conntrack-tcp-timeout-close-wait=0".into(),
                "--metrics-bind-address=127.0.0.1:10249".into(),
                "--healthz-bind-address=127.0.0.1:10256".into(),
                "--v=1".into(),
            ],
        )?;
        node.wait_for(Duration::from_secs(120), "the node to be Ready and untainted", || {
            plane
                .kubectl_ok(&[
                    "get",
                    "node",
                    NODE_NAME,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type=='Ready')].status} {.spec.taints}",
                ])
                .map(|out| out.trim() == "True")
                .unwrap_or(false)
        })?;
        node.started_in = started.elapsed();
        Ok(node)
    }

    /// Leaves the processes running (for `make node`); [`down`] ends them.
    pub fn detach(mut self) {
        self.children.clear();
    }

    fn spawn(&mut self, lifetime: Lifetime, name: &str, program: &Path, args: &[String]) -> Result<()> {
        let mut cmd = logged_command(&self.dir.join("logs"), program, name, lifetime, args, false)?;
        let child = match lifetime {
            Lifetime::TiedToCaller => crate::spawn_from_keeper(cmd),
            Lifetime::Detached => cmd.spawn(),
        }
        .with_context(|| format!("starting {name}"))?;
        fs::write(self.dir.join(format!("{name}.pid")), child.id().to_string())?;
        self.children.push((name.to_string(), child));
        Ok(())
    }

    fn wait_for(&mut self, timeout: Duration, what: &str, ready: impl Fn() -> bool) -> Result<()> {
        let start = Instant::now();
        loop {
            if ready() {
                return Ok(());
            }
            for (name, child) in &mut self.children {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "{name} exited ({status}) while waiting for {what}; logs in {}",
                        self.dir.join("logs").display()
                    );
                }
            }
            if start.elapsed() > timeout {
                bail!(
                    "timed out after {timeout:?} waiting for {what}; logs in {}",
                    self.dir.join("logs").display()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Stops a node (this process's or a detached one) and undoes what it changed on the machine, using the
/// [`MachineState`] read before it started; returns what still differs (empty: the machine is as it was).
/// Without a state folder there is nothing to undo.
pub fn down() -> Result<Vec<String>> {
    let dir = state_dir();
    let Ok(before) = fs::read(dir.join("machine-before.json")) else {
        return Ok(Vec::new());
    };
    let before: MachineState = serde_json::from_slice(&before)?;
    // Nothing here needs a graceful end (the machine is put back below): the kubelet first, so it restarts
    // nothing; then every container (SIGKILL through containerd), then containerd, the scheduler and
    // kube-proxy.
    stop_pid_files(&[dir.join("kubelet.pid")], libc::SIGKILL);
    let _ = ctr(&["tasks", "ls", "-q"]).map(|tasks| {
        for task in tasks.lines().filter(|t| !t.is_empty()) {
            let _ = ctr(&["tasks", "kill", "--signal", "SIGKILL", task]);
        }
    });
    let others: Vec<PathBuf> =
        ["kube-proxy", "kube-scheduler", "containerd"].iter().map(|n| dir.join(format!("{n}.pid"))).collect();
    stop_pid_files(&others, libc::SIGKILL);
    // Whatever is left (a shim whose containerd died first, a pod process): killed and waited for.
    wait_until(Duration::from_secs(10), || {
        let left = node_processes();
        for (pid, _) in &left {
            // SAFETY: kill(2) on a process found above; a pid that has gone since returns ESRCH.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        left.is_empty()
    });

    // kube-proxy's own cleanup, then any KUBE-/CNI- chain that was not there before.
    if bin_dir().join("kube-proxy").is_file() {
        let _ = Command::new(bin_dir().join("kube-proxy")).arg("--cleanup").output();
    }
    let now = MachineState::read()?;
    remove_added_iptables(&before, &now);

    // Mounts below the state folder and network namespaces the node made, deepest first.
    let mut added: Vec<&String> = now.mounts.difference(&before.mounts).collect();
    added.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for mount in added {
        let _ = Command::new("umount").args(["-l", mount]).output();
    }
    for link in now.links.difference(&before.links) {
        let _ = Command::new("ip").args(["link", "delete", link]).output();
    }
    for cgroup in now.cgroups.difference(&before.cgroups) {
        remove_cgroup_tree(Path::new(cgroup));
    }
    for (name, value) in &before.sysctls {
        if now.sysctls.get(name) != Some(value) {
            let _ = fs::write(Path::new("/proc/sys").join(name), value);
        }
    }
    for path in now.paths.difference(&before.paths) {
        let _ = fs::remove_dir_all(path);
    }
    let after = MachineState::read()?;
    let left = after.differences_from(&before);
    if left.is_empty() {
        // Everything but the logs, which stay for reading (as the control plane's do).
        for entry in fs::read_dir(&dir)?.flatten() {
            if entry.file_name() != "logs" {
                let path = entry.path();
                let removed = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
                removed.with_context(|| format!("removing {}", path.display()))?;
            }
        }
    }
    Ok(left)
}

/// Deletes the rules and chains that the iptables front ends show now and did not before (kube-proxy's
/// `--cleanup` leaves the kubelet's canaries, for one).
fn remove_added_iptables(before: &MachineState, now: &MachineState) {
    for (save, rules) in &now.iptables {
        let empty = BTreeSet::new();
        let was = before.iptables.get(save).unwrap_or(&empty);
        let tool = save.trim_end_matches("-save");
        let mut table = "filter".to_string();
        let mut chains = Vec::new();
        // Rules first (they may jump to the chains), in the order iptables-save lists them per table.
        for line in rules_in_order(save) {
            if let Some(t) = line.strip_prefix('*') {
                table = t.to_string();
            } else if let Some(rule) = line.strip_prefix("-A ") {
                if !was.contains(&line) && rules.contains(&line) {
                    let args: Vec<String> = shell_words(rule);
                    let mut cmd = Command::new(tool);
                    cmd.args(["-t", &table, "-D"]).args(&args);
                    let _ = cmd.output();
                }
            } else if let Some(decl) = line.strip_prefix(':').and_then(|_| normalized_rule(&line)) {
                let name = decl.trim_start_matches(':').split(' ').next().unwrap_or_default().to_string();
                if !was.contains(&decl) && decl.ends_with(" -") {
                    chains.push((table.clone(), name));
                }
            }
        }
        for (table, chain) in &chains {
            let _ = Command::new(tool).args(["-t", table, "-F", chain]).output();
        }
        for (table, chain) in &chains {
            let _ = Command::new(tool).args(["-t", table, "-X", chain]).output();
        }
    }
}

/// `iptables-save`'s lines as printed (tables and their order kept).
fn rules_in_order(save: &str) -> Vec<String> {
    Command::new(save)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Splits a rule as iptables-save prints it (double quotes around arguments with spaces) into arguments.
fn shell_words(rule: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut chars = rule.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' => word.extend(chars.next()),
            ' ' if !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Removes a cgroup and its children, deepest first (a cgroup with processes refuses: they were killed).
fn remove_cgroup_tree(cgroup: &Path) {
    if let Ok(entries) = fs::read_dir(cgroup) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    let _ = fs::remove_dir(cgroup);
}

fn wait_until(timeout: Duration, done: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > timeout {
            return false;
        }
        thread::sleep(Duration::from_millis(100));
    }
    true
}

/// Runs `ctr` against the node's containerd, in the namespace the kubelet uses; returns stdout.
pub fn ctr(args: &[&str]) -> Result<String> {
    let socket = state_dir().join("containerd/containerd.sock");
    let out = Command::new("ctr")
        .arg(format!("--address={}", socket.display()))
        .args(["--namespace", "k8s.io"])
        .args(args)
        .output()
        .context("running ctr")?;
    if !out.status.success() {
        bail!("ctr {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program).args(args).output().with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn which(program: &str) -> Result<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .with_context(|| format!("{program} is not installed"))
}

/// Debian installs the CNI plugins here (upstream's /opt/cni/bin is not used).
fn cni_bin_dir() -> PathBuf {
    PathBuf::from("/usr/lib/cni")
}

/// containerd's configuration: everything under the state folder (network namespaces too), the sandbox image
/// `make node-images` builds, and `restrict_oom_score_adj`, without which a pod sandbox cannot start here
/// (the sandbox lacks CAP_SYS_RESOURCE to lower its OOM score).
fn containerd_config(dir: &Path) -> String {
    let ctrd = dir.join("containerd");
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = "{sock}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{SANDBOX_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
    max_conf_num = 1
"#,
        root = ctrd.join("root").display(),
        state = ctrd.join("state").display(),
        sock = ctrd.join("containerd.sock").display(),
        opt = ctrd.join("opt").display(),
        cni_bin = cni_bin_dir().display(),
        cni_conf = dir.join("cni/net.d").display(),
    )
}

/// One bridge network: the pods' gateway is the bridge's address, where the API server listens; no
/// masquerading (nothing leaves the machine), so the bridge plugin adds no iptables rule.
fn cni_config(dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "idbind",
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": POD_SUBNET, "gateway": GATEWAY}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": dir.join("cni/ipam").display().to_string(),
            },
        }],
    })
    .to_string()
}

/// The kubelet's configuration. `failCgroupV1: false` because 1.37 refuses cgroup v1 otherwise (machines here
/// have v1 hierarchies); eviction only on memory, so a full CI disk does not evict the operator mid-test.
fn kubelet_config(dir: &Path, pki: &Path) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {GATEWAY}
port: 10250
readOnlyPort: 0
healthzPort: 0
tlsCertFile: {pki}/kubelet-serving.crt
tlsPrivateKeyFile: {pki}/kubelet-serving.key
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {pki}/ca.crt
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://{sock}
podLogsDir: {logs}
serializeImagePulls: false
maxPods: 50
evictionHard:
  memory.available: 100Mi
  nodefs.available: "1%"
  imagefs.available: "1%"
  nodefs.inodesFree: "1%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
"#,
        pki = pki.display(),
        sock = dir.join("containerd/containerd.sock").display(),
        logs = dir.join("pod-logs").display(),
    )
}

/// Starts the control plane on the bridge and a node beside it (`make node`); see [`Node::prepare`].
pub fn start_with_plane(
    plane_dir: &Path,
    lifetime: Lifetime,
    images: &[PathBuf],
) -> Result<(ControlPlane, Node)> {
    Node::prepare()?;
    let plane = ControlPlane::start_with(plane_dir, lifetime, Listen::NodeBridge)?;
    let node = Node::start(&plane, lifetime, images)?;
    Ok((plane, node))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iptables_save_rules_split_into_the_arguments_iptables_takes() {
        assert_eq!(
            shell_words(
                r#"KUBE-SERVICES -m comment --comment "kubernetes service portals" -j KUBE-SERVICES"#
            ),
            [
                "KUBE-SERVICES",
                "-m",
                "comment",
                "--comment",
                "kubernetes service portals",
                "-j",
                "KUBE-SERVICES"
            ]
        );
    }

    #[test]
    fn counters_table_headers_and_empty_builtin_chains_are_not_state() {
        assert_eq!(normalized_rule(":KUBE-SERVICES - [0:0]"), Some(":KUBE-SERVICES -".into()));
        assert_eq!(normalized_rule(":FORWARD DROP [12:345]"), Some(":FORWARD DROP".into()));
        assert_eq!(normalized_rule(":FORWARD ACCEPT [12:345]"), None);
        assert_eq!(normalized_rule("*nat"), None);
        assert_eq!(
            normalized_rule("-A PREROUTING -j KUBE-SERVICES"),
            Some("-A PREROUTING -j KUBE-SERVICES".into())
        );
    }

    #[test]
    fn only_what_changed_is_a_difference() {
        let mut before = MachineState::default();
        before.sysctls.insert("vm/overcommit_memory".into(), "0".into());
        before.links.insert("eth0".into());
        let mut after = before.clone();
        assert!(after.differences_from(&before).is_empty());
        after.sysctls.insert("vm/overcommit_memory".into(), "1".into());
        after.links.insert(BRIDGE.into());
        assert_eq!(after.differences_from(&before).len(), 2, "{:?}", after.differences_from(&before));
    }
}
