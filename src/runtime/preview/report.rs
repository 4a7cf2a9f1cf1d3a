//! What `idbind plan` says of each binding, and how: a table for people, a JSON document for scripts, and an
//! exit code for CI in the manner of `terraform plan -detailed-exitcode`. Pure: verdicts in, text out.

use serde::Serialize;

use crate::core::reason::Reason;
use crate::{core::validate::Invalid, reconcile::DryRun};

/// The exit codes: nothing to do, something refused or failed, changes to make.
pub const EXIT_NO_CHANGES: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_CHANGES: u8 = 2;

/// One binding's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Azure already matches the spec.
    NoChanges,
    /// Applying the binding makes the operator write to Azure.
    Changes,
    /// The operator would refuse the spec (validation, its ceiling, a `WorkloadIdentityPolicy`).
    Refused,
    /// Azure's state (or reading it) stops the binding.
    Blocked,
    /// The API server (or, without it, the manifest's own reading) refuses the object.
    Rejected,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::NoChanges => "no-changes",
            Verdict::Changes => "changes",
            Verdict::Refused => "refused",
            Verdict::Blocked => "blocked",
            Verdict::Rejected => "rejected",
        }
    }
}

/// Why a binding was refused, blocked or rejected: the field at fault when one is, a PascalCase reason and a
/// message for a person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub field: Option<String>,
    pub reason: String,
    pub message: String,
}

impl Problem {
    pub fn invalid_manifest(field: Option<&str>, message: String) -> Problem {
        Problem { field: field.map(str::to_string), reason: Reason::InvalidManifest.into(), message }
    }

    fn from_invalid(invalid: Invalid) -> Problem {
        Problem { field: Some(invalid.field), reason: invalid.reason.into(), message: invalid.message }
    }
}

/// One binding's plan, as the JSON document lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BindingPlan {
    pub namespace: String,
    pub name: String,
    pub result: Verdict,
    /// Each write as the operator logs it (`core::plan::Action`'s Display), in order.
    pub writes: Vec<String>,
    pub problems: Vec<Problem>,
}

impl BindingPlan {
    /// A binding that ended with `problems` and no writes.
    pub fn failed(namespace: &str, name: &str, result: Verdict, problems: Vec<Problem>) -> BindingPlan {
        BindingPlan { namespace: namespace.into(), name: name.into(), result, writes: Vec::new(), problems }
    }

    /// What a dry run of the reconcile found.
    pub fn from_dry_run(namespace: &str, name: &str, dry_run: DryRun) -> BindingPlan {
        match dry_run {
            DryRun::Invalid(problems) => BindingPlan::refused(namespace, name, problems),
            DryRun::Blocked(reason, message) => {
                let problem = Problem { field: None, reason, message };
                BindingPlan::failed(namespace, name, Verdict::Blocked, vec![problem])
            }
            DryRun::Writes(writes) => BindingPlan {
                namespace: namespace.into(),
                name: name.into(),
                result: if writes.is_empty() { Verdict::NoChanges } else { Verdict::Changes },
                writes: writes.iter().map(ToString::to_string).collect(),
                problems: Vec::new(),
            },
        }
    }

    /// The gate's refusal.
    pub fn refused(namespace: &str, name: &str, problems: Vec<Invalid>) -> BindingPlan {
        let problems = problems.into_iter().map(Problem::from_invalid).collect();
        BindingPlan::failed(namespace, name, Verdict::Refused, problems)
    }
}

/// What was consulted, so that a CI log says how much a green plan proves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Checks {
    /// Where the settings came from besides flags and environment: `ConfigMap <namespace>/<name>`, or none.
    pub config_map: Option<String>,
    /// Whether the API server checked each binding (server-side dry run: the schema and its CEL rules).
    pub schema: bool,
    /// Whether the `WorkloadIdentityPolicy` objects were listed and consulted.
    pub policies: bool,
}

/// A document left aside, by kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ignored {
    pub kind: String,
    pub count: usize,
}

/// The whole plan: the `-o json` document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlanDocument {
    pub bindings: Vec<BindingPlan>,
    pub ignored: Vec<Ignored>,
    pub checks: Checks,
}

/// 1 when any binding is refused, blocked or rejected; else 2 when any has changes; else 0.
pub fn exit_code(bindings: &[BindingPlan]) -> u8 {
    let any = |verdicts: &[Verdict]| bindings.iter().any(|b| verdicts.contains(&b.result));
    if any(&[Verdict::Refused, Verdict::Blocked, Verdict::Rejected]) {
        EXIT_FAILED
    } else if any(&[Verdict::Changes]) {
        EXIT_CHANGES
    } else {
        EXIT_NO_CHANGES
    }
}

/// The JSON document, pretty-printed, with a final newline.
pub fn json(report: &PlanDocument) -> Result<String, serde_json::Error> {
    Ok(serde_json::to_string_pretty(report)? + "\n")
}

/// The table: one row per binding (namespace/name, result), its details on as many lines as it has writes or
/// problems, aligned under a DETAILS heading.
pub fn table(bindings: &[BindingPlan]) -> String {
    let key = |b: &BindingPlan| format!("{}/{}", b.namespace, b.name);
    let key_width = bindings.iter().map(|b| key(b).len()).chain(["BINDING".len()]).max().unwrap_or_default();
    let result_width = "no-changes".len();
    let mut out = format!("{:key_width$}  {:result_width$}  DETAILS\n", "BINDING", "RESULT");
    for b in bindings {
        for (i, detail) in details(b).iter().enumerate() {
            let (binding, result) = if i == 0 { (key(b), b.result.as_str()) } else { (String::new(), "") };
            out.push_str(format!("{binding:key_width$}  {result:result_width$}  {detail}").trim_end());
            out.push('\n');
        }
    }
    out
}

/// The lines a binding's row shows.
fn details(b: &BindingPlan) -> Vec<String> {
    let problems = b.problems.iter().map(|p| match &p.field {
        Some(field) => format!("{}: {field}: {}", p.reason, p.message),
        None => format!("{}: {}", p.reason, p.message),
    });
    let lines: Vec<String> = b.writes.iter().cloned().chain(problems).collect();
    match (b.result, lines.is_empty()) {
        (Verdict::NoChanges, true) => vec!["Azure matches the spec".into()],
        (_, true) => vec![String::new()],
        (_, false) => lines,
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;

    fn plan(name: &str, result: Verdict, writes: &[&str], problems: Vec<Problem>) -> BindingPlan {
        BindingPlan {
            namespace: "shop".into(),
            name: name.into(),
            result,
            writes: writes.iter().map(ToString::to_string).collect(),
            problems,
        }
    }

    fn problem(field: Option<&str>, reason: Reason, message: &str) -> Problem {
        Problem { field: field.map(str::to_string), reason: reason.into(), message: message.into() }
    }

    #[test]
    fn the_exit_code_is_terraform_s_detailed_one() {
        use Verdict::*;
        let cases: [(&[Verdict], u8); 9] = [
            (&[NoChanges], 0),
            (&[NoChanges, NoChanges], 0),
            (&[Changes], 2),
            (&[NoChanges, Changes], 2),
            (&[Refused], 1),
            (&[Blocked], 1),
            (&[Rejected], 1),
            (&[Changes, Refused], 1),
            (&[NoChanges, Changes, Blocked, NoChanges], 1),
        ];
        for (verdicts, code) in cases {
            let bindings: Vec<BindingPlan> = verdicts.iter().map(|v| plan("b", *v, &[], vec![])).collect();
            assert_eq!(exit_code(&bindings), code, "{verdicts:?}");
        }
    }

    #[test]
    fn a_dry_run_becomes_a_verdict() {
        let invalid = Invalid {
            field: "spec.keyVaults[0].roles[0]".into(),
            reason: Reason::PolicyViolation,
            message: "Owner is not allowed".into(),
        };
        let cases = [
            (DryRun::Writes(vec![]), Verdict::NoChanges, vec![]),
            (
                DryRun::Invalid(vec![invalid]),
                Verdict::Refused,
                vec![problem(
                    Some("spec.keyVaults[0].roles[0]"),
                    Reason::PolicyViolation,
                    "Owner is not allowed",
                )],
            ),
            (
                DryRun::Blocked("IdentityConflict".into(), "not ours".into()),
                Verdict::Blocked,
                vec![problem(None, Reason::IdentityConflict, "not ours")],
            ),
        ];
        for (dry_run, verdict, problems) in cases {
            let got = BindingPlan::from_dry_run("shop", "a", dry_run);
            assert_eq!(got, plan("a", verdict, &[], problems));
        }
    }

    #[test]
    fn the_table_puts_each_write_and_problem_on_its_own_line_under_details() {
        let bindings = [
            plan("payments", Verdict::Changes, &["put identity /x", "put federated credential y"], vec![]),
            plan("live", Verdict::NoChanges, &[], vec![]),
            plan(
                "reporting",
                Verdict::Refused,
                &[],
                vec![problem(
                    Some("spec.keyVaults[0].roles[0]"),
                    Reason::PolicyViolation,
                    "no policy allows Owner",
                )],
            ),
            plan("taken", Verdict::Blocked, &[], vec![problem(None, Reason::IdentityConflict, "not ours")]),
        ];
        let expected = "\
BINDING         RESULT      DETAILS
shop/payments   changes     put identity /x
                            put federated credential y
shop/live       no-changes  Azure matches the spec
shop/reporting  refused     PolicyViolation: spec.keyVaults[0].roles[0]: no policy allows Owner
shop/taken      blocked     IdentityConflict: not ours
";
        assert_eq!(table(&bindings), expected);
    }

    #[test]
    fn the_json_document_has_one_entry_per_binding_with_writes_as_text_and_problems_by_field() {
        let report = PlanDocument {
            bindings: vec![
                plan("payments", Verdict::Changes, &["put identity /x"], vec![]),
                plan(
                    "bad",
                    Verdict::Rejected,
                    &[],
                    vec![problem(
                        Some("spec.keyVaults"),
                        Reason::SchemaRejected,
                        "keyVaults must not list the same vault twice",
                    )],
                ),
            ],
            ignored: vec![Ignored { kind: "ServiceAccount".into(), count: 1 }],
            checks: Checks {
                config_map: Some("idbind-system/idbind-config".into()),
                schema: true,
                policies: true,
            },
        };
        let document: serde_json::Value = serde_json::from_str(&json(&report).unwrap()).unwrap();
        assert_eq!(
            document,
            json!({
                "bindings": [
                    {"namespace": "shop", "name": "payments", "result": "changes",
                     "writes": ["put identity /x"], "problems": []},
                    {"namespace": "shop", "name": "bad", "result": "rejected", "writes": [],
                     "problems": [{"field": "spec.keyVaults", "reason": "SchemaRejected",
                                   "message": "keyVaults must not list the same vault twice"}]},
                ],
                "ignored": [{"kind": "ServiceAccount", "count": 1}],
                "checks": {"configMap": "idbind-system/idbind-config", "schema": true, "policies": true},
            })
        );
    }
}
