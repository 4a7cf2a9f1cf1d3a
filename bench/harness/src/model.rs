//! What the simulator is told (ARM's documented limits, scaled for the 10,000 run, and a latency per
//! operation) and the convergence lower bound those limits imply for the bench workload.

use serde_json::{Value, json};

/// The subscription identities live in (the operator's own).
pub const SUB: &str = "00000000-0000-0000-0000-0000000000b1";
/// Role assignments per subscription that real ARM allows (docs/azure.md#role-assignment-rules: 4,000; the
/// simulator enforces it). Bench vaults are spread over subscriptions so that no subscription holds more than
/// `RA_PER_VAULT_SUB`.
pub const RA_PER_VAULT_SUB: usize = 3500;
pub const APP: &str = "b0000000-0000-0000-0000-0000000000a1";
/// The operator app's object id, which its role assignments name.
pub const APP_OBJECT_ID: &str = "b0000000-0000-4000-8000-0000000000a2";
pub const SECRET: &str = "bench-secret";
pub const ID_RG: &str = "rg-bench-identities";
pub const KV_RG: &str = "rg-bench-vaults";
pub const LOCATION: &str = "westeurope";

/// The subscription of vault `v` (v = 0 shares the operator's subscription).
pub fn vault_sub(v: usize) -> String {
    if v == 0 { SUB.to_string() } else { format!("00000000-0000-0000-0000-0000000001{v:02}") }
}

pub fn vault_name(v: usize) -> String {
    format!("kv-bench-{v}")
}

pub fn vault_count(n: usize) -> usize {
    n.div_ceil(RA_PER_VAULT_SUB).max(1)
}

/// Per-operation latency in milliseconds at real speed. No published figure exists for ARM's per-operation
/// response times: every value is an ASSUMPTION (order of magnitude of what `az ... --debug` shows for these
/// calls in a public region), not a measurement. Writes that create Entra objects (an identity creates a
/// service principal) are the slowest.
pub const LATENCY_MS: &[(&str, u64, &str)] = &[
    ("UserAssignedIdentities_CreateOrUpdate", 1200, "assumption: creates an Entra service principal"),
    ("UserAssignedIdentities_Get", 120, "assumption"),
    ("FederatedIdentityCredentials_CreateOrUpdate", 800, "assumption"),
    ("FederatedIdentityCredentials_List", 150, "assumption"),
    ("RoleAssignments_Create", 700, "assumption"),
    ("RoleAssignments_Delete", 500, "assumption"),
    ("RoleAssignments_ListForScope", 200, "assumption"),
    ("RoleDefinitions_List", 150, "assumption"),
    ("RoleDefinitions_Get", 120, "assumption"),
    ("Vaults_Get", 120, "assumption"),
    ("Token", 150, "assumption (Entra token endpoint)"),
];
pub const DEFAULT_LATENCY_MS: u64 = 150;

pub fn latency_ms(op: &str, scale: f64) -> f64 {
    let ms = LATENCY_MS.iter().find(|(o, _, _)| *o == op).map(|(_, ms, _)| *ms).unwrap_or(DEFAULT_LATENCY_MS);
    (ms as f64 / scale).max(1.0).round()
}

/// ARM's documented limits (docs/azure.md#arm-throttling token buckets; docs/azure.md#managed-identity-limits
/// rates), multiplied by `scale` (1 for the real-limit runs). These are also the simulator's defaults; the
/// bench writes them out in full so the report shows exactly what ran.
pub struct Limits {
    pub reads: (f64, f64),
    pub writes: (f64, f64),
    pub deletes: (f64, f64),
    /// Managed-identity rates (per tenant, per subscription, per resource) for create/update, get, list,
    /// delete. The simulator's bucket for a rate r holds max(r, 1).
    pub msi: [(&'static str, [f64; 3]); 4],
}

impl Limits {
    pub fn arm(scale: f64) -> Self {
        let s = scale;
        Limits {
            reads: (250.0 * s, 25.0 * s),
            writes: (200.0 * s, 10.0 * s),
            deletes: (200.0 * s, 10.0 * s),
            msi: [
                ("createOrUpdate", [10.0 * s, 2.0 * s, 0.25 * s]),
                ("get", [30.0 * s, 10.0 * s, 0.5 * s]),
                ("list", [15.0 * s, 5.0 * s, 0.25 * s]),
                ("delete", [10.0 * s, 2.0 * s, 0.25 * s]),
            ],
        }
    }

    fn msi_rate(&self, op: &str) -> [f64; 3] {
        self.msi.iter().find(|(o, _)| *o == op).map(|(_, r)| *r).unwrap_or([0.0; 3])
    }

    pub fn to_json(&self) -> Value {
        let b = |(c, r): (f64, f64)| json!({"capacity": c, "refillPerSec": r});
        let m = |op: &str| {
            let [t, s, r] = self.msi_rate(op);
            json!({"perTenant": t, "perSubscription": s, "perResource": r})
        };
        json!({
            "enabled": true,
            "reads": b(self.reads), "writes": b(self.writes), "deletes": b(self.deletes),
            "globalFactor": 15.0,
            "tenantReads": b(self.reads), "tenantWrites": b(self.writes), "tenantDeletes": b(self.deletes),
            "msi": {"enabled": true, "createOrUpdate": m("createOrUpdate"), "get": m("get"), "list": m("list"), "delete": m("delete")}
        })
    }
}

/// The simulator's whole configuration for one run.
pub fn sim_config(n: usize, scale: f64, trust_ca: &str) -> Value {
    let limits = Limits::arm(scale);
    let mut per_op = serde_json::Map::new();
    for (op, _, _) in LATENCY_MS {
        per_op.insert((*op).to_string(), json!(latency_ms(op, scale) as u64));
    }
    let mut subs: Vec<Value> = Vec::new();
    let vaults = vault_count(n);
    let mut id_rgs = vec![json!({"name": ID_RG, "location": LOCATION})];
    for v in 0..vaults {
        let vault = json!({"name": KV_RG, "location": LOCATION, "vaults": [{"name": vault_name(v), "location": LOCATION, "enableRbacAuthorization": true}]});
        if v == 0 {
            id_rgs.push(vault);
        } else {
            subs.push(json!({"id": vault_sub(v), "resourceGroups": [vault]}));
        }
    }
    subs.insert(0, json!({"id": SUB, "resourceGroups": id_rgs}));
    let (role_definitions, role_assignments) = operator_roles(vaults);
    json!({
        "throttle": limits.to_json(),
        "latency": {"defaultMs": (DEFAULT_LATENCY_MS as f64 / scale).max(1.0).round() as u64, "perOperationMs": per_op},
        "seed": {"subscriptions": subs,
                 "apps": [{"clientId": APP, "clientSecret": SECRET, "objectId": APP_OBJECT_ID}],
                 "roleDefinitions": role_definitions, "roleAssignments": role_assignments},
        "entra": {"extraCaFiles": [trust_ca]},
    })
}

/// The Azure roles README "Install on AKS" step 3 has an administrator give the operator, for the bench's
/// world: the custom `idbind Reader` on each subscription, Managed Identity Contributor on the identities'
/// group, Role Based Access Control Administrator on each vault group with the delegation condition for the
/// two roles the bench assigns (Key Vault Secrets User, Key Vault Certificate User) to service principals.
/// The simulator authorizes every request from these; the check costs about 2 µs a request at 10,000
/// assignments (no time the bench can see).
fn operator_roles(vaults: usize) -> (Value, Value) {
    let subs: Vec<String> = (0..vaults).map(|v| format!("/subscriptions/{}", vault_sub(v))).collect();
    let reader = json!([{
        "name": "1db1d5ea-0000-4000-8000-0000000000b1", "roleName": "idbind Reader",
        "permissions": [{"actions": ["Microsoft.Authorization/roleAssignments/read",
                                     "Microsoft.Authorization/roleDefinitions/read",
                                     "Microsoft.Resources/subscriptions/providers/read"]}],
        "assignableScopes": subs,
    }]);
    let roles = "4633458b-17de-408a-b874-0445c86b69e6, db79e9a7-68ee-4b58-9aeb-b90e7c24fcba";
    let clause = |action: &str, source: &str| {
        format!(
            "((!(ActionMatches{{'Microsoft.Authorization/roleAssignments/{action}'}})) OR \
             (@{source}[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals \
             {{{roles}}} AND @{source}[Microsoft.Authorization/roleAssignments:PrincipalType] \
             ForAnyOfAnyValues:StringEqualsIgnoreCase {{'ServicePrincipal'}}))"
        )
    };
    let condition = format!("{} AND {}", clause("write", "Request"), clause("delete", "Resource"));
    let mut assignments: Vec<Value> = subs
        .iter()
        .map(|s| json!({"principalId": APP_OBJECT_ID, "role": "idbind Reader", "scope": s}))
        .collect();
    assignments.push(json!({"principalId": APP_OBJECT_ID, "role": "Managed Identity Contributor",
                            "scope": format!("/subscriptions/{SUB}/resourceGroups/{ID_RG}")}));
    for s in &subs {
        assignments.push(
            json!({"principalId": APP_OBJECT_ID, "role": "Role Based Access Control Administrator",
                                "scope": format!("{s}/resourceGroups/{KV_RG}"),
                                "condition": condition, "conditionVersion": "2.0"}),
        );
    }
    (reader, Value::Array(assignments))
}

/// One constraint of the lower bound.
pub struct Constraint {
    pub name: String,
    pub seconds: f64,
    pub derivation: String,
}

/// The lower bound on the time to converge `n` fresh bindings (one identity, one FIC, one role assignment
/// each) from the moment they are all applied, for a client that never gets a 429: every request must fit
/// through every bucket that applies to it, and the last binding still needs its own writes after its
/// identity exists.
pub fn lower_bound(n: usize, scale: f64) -> (f64, Vec<Constraint>) {
    let l = Limits::arm(scale);
    let nf = n as f64;
    let l_id = latency_ms("UserAssignedIdentities_CreateOrUpdate", scale) / 1000.0;
    let l_fic = latency_ms("FederatedIdentityCredentials_CreateOrUpdate", scale) / 1000.0;
    let l_ra = latency_ms("RoleAssignments_Create", scale) / 1000.0;
    let l_get = latency_ms("UserAssignedIdentities_Get", scale) / 1000.0;
    let tail = l_id + l_fic.max(l_ra);
    let cap = |rate: f64| rate.max(1.0);
    let through = |count: f64, capacity: f64, rate: f64| ((count - capacity) / rate).max(0.0);
    let mut out = Vec::new();

    let [t_c, s_c, _] = l.msi_rate("createOrUpdate");
    let t = through(nf, cap(s_c), s_c) + tail;
    out.push(Constraint {
        name: "identity creates, per subscription".into(),
        seconds: t,
        derivation: format!(
            "{n} creates through the managed-identity bucket of {:.0} refilled at {s_c}/s: the last starts \
             at ({n} − {:.0}) / {s_c} = {:.1} s, then its PUT ({l_id:.2} s) and the FIC/role-assignment \
             PUTs after it (max {:.2} s, in parallel at best) → {t:.1} s",
            cap(s_c),
            cap(s_c),
            through(nf, cap(s_c), s_c),
            l_fic.max(l_ra)
        ),
    });
    let t = through(nf, cap(t_c), t_c) + tail;
    out.push(Constraint {
        name: "identity creates, per tenant".into(),
        seconds: t,
        derivation: format!("({n} − {:.0}) / {t_c} + {tail:.2} = {t:.1} s", cap(t_c)),
    });

    // ARM writes per subscription: the identity subscription takes every identity and FIC write plus the role
    // assignments on vault 0; each other vault subscription its share of them.
    let vaults = vault_count(n);
    let per_vault = |v: usize| (n / vaults + usize::from(v < n % vaults)) as f64;
    let (wc, wr) = l.writes;
    let w0 = 2.0 * nf + per_vault(0);
    let t = through(w0, wc, wr) + l_fic.max(l_ra);
    out.push(Constraint {
        name: "ARM writes, identity subscription".into(),
        seconds: t,
        derivation: format!(
            "{w0:.0} writes ({n} identities + {n} FICs + {:.0} role assignments) through the write bucket \
             of {wc:.0} refilled at {wr}/s: ({w0:.0} − {wc:.0}) / {wr} + {:.2} = {t:.1} s",
            per_vault(0),
            l_fic.max(l_ra)
        ),
    });
    if vaults > 1 {
        let w = per_vault(1);
        let t = through(w, wc, wr) + l_ra;
        out.push(Constraint {
            name: "ARM writes, each vault subscription".into(),
            seconds: t,
            derivation: format!("{w:.0} role assignments: ({w:.0} − {wc:.0}) / {wr} + {l_ra:.2} = {t:.1} s"),
        });
    }
    // One GET of the identity per binding is part of the contract: idbind must see whether an identity of
    // that name exists and whether it owns it before writing (IdentityConflict).
    let [_, g_s, _] = l.msi_rate("get");
    let t = through(nf, cap(g_s), g_s) + l_get + tail;
    out.push(Constraint {
        name: "identity GETs (ownership check before the first write)".into(),
        seconds: t,
        derivation: format!(
            "{n} GETs through the managed-identity get bucket of {:.0} at {g_s}/s: ({n} − {:.0}) / {g_s} + \
             {l_get:.2} + {tail:.2} = {t:.1} s",
            cap(g_s),
            cap(g_s)
        ),
    });
    let (rc, rr) = l.reads;
    let t = through(nf, rc, rr) + l_get + tail;
    out.push(Constraint {
        name: "ARM reads (that one GET each)".into(),
        seconds: t,
        derivation: format!("({n} − {rc:.0}) / {rr} + {:.2} = {t:.1} s", l_get + tail),
    });
    let bound = out.iter().map(|c| c.seconds).fold(0.0, f64::max);
    (bound, out)
}

/// Bindings that can be Ready at `t` seconds under the binding constraint (identity creates per
/// subscription): the curve the chart draws against the measured one.
pub fn bound_ready_at(n: usize, scale: f64, t: f64) -> f64 {
    let l = Limits::arm(scale);
    let [_, s_c, _] = l.msi_rate("createOrUpdate");
    let tail = (latency_ms("UserAssignedIdentities_CreateOrUpdate", scale)
        + latency_ms("FederatedIdentityCredentials_CreateOrUpdate", scale)
            .max(latency_ms("RoleAssignments_Create", scale)))
        / 1000.0;
    if t < tail {
        return 0.0;
    }
    (s_c.max(1.0) + s_c * (t - tail)).floor().min(n as f64)
}

/// The simulator's managed-identity limits as strict as Azure is believed to be
/// (docs/azure.md#managed-identity-limits, the simulator's `MsiLimits::strict`): every 429 says to retry
/// after 20 s.
pub fn strict(config: &mut Value) {
    config["throttle"]["msi"]["retryAfter"] =
        json!({"perTenantSecs": 20, "perSubscriptionSecs": 20, "perResourceSecs": 20});
}

/// The app (client id, object id) of member `k` of a fleet: each cluster's operator signs in as its own, as
/// separate clusters would.
pub fn fleet_app(k: usize) -> (String, String) {
    (
        format!("b0000000-0000-0000-0000-0000000001{k:02x}"),
        format!("b0000000-0000-4000-8000-0000000002{k:02x}"),
    )
}

/// The simulator for a fleet of `k` operators sharing one subscription: the size run's world, with every
/// member's app holding the operator's roles.
pub fn fleet_config(n: usize, k: usize, trust_ca: &str) -> Value {
    let mut config = sim_config(n, 1.0, trust_ca);
    let seed = &mut config["seed"];
    let mine: Vec<Value> = seed["roleAssignments"].as_array().cloned().unwrap_or_default();
    let mut apps = Vec::new();
    let mut assignments = Vec::new();
    for member in 0..k {
        let (client_id, object_id) = fleet_app(member);
        apps.push(json!({"clientId": client_id, "clientSecret": SECRET, "objectId": object_id}));
        for a in &mine {
            let mut a = a.clone();
            a["principalId"] = json!(object_id);
            assignments.push(a);
        }
    }
    seed["apps"] = Value::Array(apps);
    seed["roleAssignments"] = Value::Array(assignments);
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_at_real_limits_is_the_identity_create_rate() {
        let (b, parts) = lower_bound(1000, 1.0);
        // (1000 − 2) / 2 = 499 s, plus 1.2 s for the last identity PUT and 0.8 s for its FIC.
        assert!((b - 501.0).abs() < 0.01, "{b}");
        assert_eq!(parts[0].seconds, b);
        assert_eq!(bound_ready_at(1000, 1.0, 0.0), 0.0);
        assert_eq!(bound_ready_at(1000, 1.0, 2.0), 2.0);
        assert_eq!(bound_ready_at(1000, 1.0, 1e6), 1000.0);
    }

    #[test]
    fn ten_thousand_spreads_vaults_under_the_role_assignment_limit() {
        assert_eq!(vault_count(10_000), 3);
        assert_eq!(vault_count(1_000), 1);
    }
}
