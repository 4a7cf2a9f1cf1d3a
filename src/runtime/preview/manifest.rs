//! The manifests `idbind plan` reads: every document of every file (a kustomize or Helm rendering, a `kubectl
//! get -o yaml` List), the bindings picked out, everything else counted by kind so that the user sees what
//! was left aside. Pure: text in, documents out.

use serde_json::Value;

use super::report::Problem;
use crate::api::binding::WorkloadIdentityBinding;

/// The API group of idbind's resources.
const GROUP: &str = "idbind.dev";
/// The one apiVersion and kind a binding can have today.
const API_VERSION: &str = "idbind.dev/v1alpha1";
const KIND: &str = "WorkloadIdentityBinding";
/// The other kind of the group, which is no binding and is left aside like a ServiceAccount.
const POLICY_KIND: &str = "WorkloadIdentityPolicy";

/// Why a file cannot be read as manifests at all.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{source_name}: document {document}: {error}")]
    Yaml { source_name: String, document: usize, error: serde_yaml::Error },
    #[error("{source_name}: document {document} is not JSON-compatible YAML: {error}")]
    NotJson { source_name: String, document: usize, error: serde_json::Error },
}

/// One document that claims to be a binding (by its kind, or by its API group), as written.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub value: Value,
}

/// What the files hold: the bindings, in order, and how many documents of each other kind were left aside, in
/// order of first appearance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Manifests {
    pub bindings: Vec<Document>,
    pub ignored: Vec<(String, usize)>,
}

impl Manifests {
    /// Adds the documents of `text` (YAML or JSON, `---`-separated), named `source_name` in errors.
    pub fn add(&mut self, source_name: &str, text: &str) -> Result<(), ManifestError> {
        for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let document_number = index + 1;
            let yaml = serde::Deserialize::deserialize(document).map_err(|error| ManifestError::Yaml {
                source_name: source_name.to_string(),
                document: document_number,
                error,
            })?;
            let value = yaml_to_json(yaml).map_err(|error| ManifestError::NotJson {
                source_name: source_name.to_string(),
                document: document_number,
                error,
            })?;
            self.take(value);
        }
        Ok(())
    }

    /// Sorts one document: a binding, a List to open, nothing, or a kind to count.
    fn take(&mut self, value: Value) {
        match classify(&value) {
            Class::Empty => {}
            Class::List => {
                if let Value::Object(mut list) = value
                    && let Some(Value::Array(items)) = list.remove("items")
                {
                    items.into_iter().for_each(|item| self.take(item));
                }
            }
            Class::Binding => self.bindings.push(Document {
                namespace: text_at(&value, "namespace"),
                name: text_at(&value, "name"),
                value,
            }),
            Class::Other(kind) => match self.ignored.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, count)) => *count += 1,
                None => self.ignored.push((kind, 1)),
            },
        }
    }

    /// "1 ServiceAccount, 2 Deployment": what was left aside, for a note on stderr.
    pub fn ignored_summary(&self) -> Option<String> {
        let parts: Vec<String> = self.ignored.iter().map(|(kind, n)| format!("{n} {kind}")).collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// YAML as the JSON the API server takes (YAML's non-string keys and tags have no JSON form).
fn yaml_to_json(yaml: serde_yaml::Value) -> Result<Value, serde_json::Error> {
    serde_json::to_value(yaml)
}

#[derive(Debug, PartialEq)]
enum Class {
    Empty,
    List,
    Binding,
    Other(String),
}

/// A document is a binding when its kind says so, whatever its apiVersion, or when it is of idbind's group
/// and no policy, whatever its kind: a misspelt kind or an unknown version is then refused by the API server
/// (or by [`binding`] without one) instead of being silently left aside.
fn classify(value: &Value) -> Class {
    let kind = value.get("kind").and_then(Value::as_str);
    let api_version = value.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let group = api_version.split_once('/').map_or("", |(group, _)| group);
    match kind {
        _ if value.is_null() => Class::Empty,
        Some(KIND) => Class::Binding,
        Some(POLICY_KIND) if group == GROUP => Class::Other(POLICY_KIND.into()),
        _ if group == GROUP => Class::Binding,
        Some(list) if list.ends_with("List") && value.get("items").is_some_and(Value::is_array) => {
            Class::List
        }
        Some(other) => Class::Other(other.into()),
        None => Class::Other("document without a kind".into()),
    }
}

/// `metadata.<field>` when it is a string.
fn text_at(value: &Value, field: &str) -> Option<String> {
    value.get("metadata")?.get(field)?.as_str().map(str::to_string)
}

/// The binding a document holds, checked here as far as it can be without the API server: its apiVersion and
/// kind, and the fields serde can read. The schema's patterns, limits and CEL rules are the server's.
pub fn binding(document: &Document) -> Result<WorkloadIdentityBinding, Problem> {
    let api_version = document.value.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let kind = document.value.get("kind").and_then(Value::as_str).unwrap_or_default();
    if api_version != API_VERSION || kind != KIND {
        return Err(Problem::invalid_manifest(
            None,
            format!("apiVersion {api_version:?}, kind {kind:?}: idbind serves only {API_VERSION} {KIND}"),
        ));
    }
    serde_json::from_value(document.value.clone())
        .map_err(|e| Problem::invalid_manifest(None, format!("not a {KIND}: {e}")))
}

/// The namespace a document's binding goes to: its own, else `--namespace`, else the context's; a manifest
/// that names another namespace than `--namespace` is refused, as kubectl refuses it.
pub fn namespace(
    document: &Document,
    flag: Option<&str>,
    context_default: Option<&str>,
) -> Result<String, Problem> {
    match (document.namespace.as_deref(), flag) {
        (Some(own), Some(flag)) if own != flag => Err(Problem::invalid_manifest(
            Some("metadata.namespace"),
            format!("the manifest says namespace {own}, --namespace says {flag}"),
        )),
        (Some(own), _) => Ok(own.to_string()),
        (None, Some(flag)) => Ok(flag.to_string()),
        (None, None) => context_default.map(str::to_string).ok_or_else(|| {
            Problem::invalid_manifest(
                Some("metadata.namespace"),
                "no namespace: set metadata.namespace or --namespace".into(),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;

    fn read(text: &str) -> Manifests {
        let mut manifests = Manifests::default();
        manifests.add("test.yaml", text).unwrap();
        manifests
    }

    /// Each binding as `namespace/name` (`-` for what its manifest leaves out).
    fn names(m: &Manifests) -> Vec<String> {
        let or_dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
        m.bindings.iter().map(|d| format!("{}/{}", or_dash(&d.namespace), or_dash(&d.name))).collect()
    }

    struct Case {
        what: &'static str,
        text: String,
        bindings: &'static [&'static str],
        ignored: &'static [(&'static str, usize)],
    }

    const BINDING: &str = "apiVersion: idbind.dev/v1alpha1\nkind: WorkloadIdentityBinding\n\
                           metadata: {name: a, namespace: shop}\nspec: {serviceAccountName: a}\n";

    #[test]
    fn documents_are_sorted_into_bindings_and_the_ignored_by_kind() {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "a"}},
            serde_yaml::from_str::<Value>(BINDING).unwrap(),
        ]});
        let cases = [
            Case { what: "one binding", text: BINDING.into(), bindings: &["shop/a"], ignored: &[] },
            Case {
                what: "a ServiceAccount first, then the binding (the case that failed with 'missing field spec')",
                text: format!("apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: a}}\n---\n{BINDING}"),
                bindings: &["shop/a"],
                ignored: &[("ServiceAccount", 1)],
            },
            Case {
                what: "empty documents and a leading separator count for nothing",
                text: format!("---\n---\n{BINDING}---\n"),
                bindings: &["shop/a"],
                ignored: &[],
            },
            Case {
                what: "other kinds counted in order of first appearance; a policy is no binding",
                text: "kind: Deployment\napiVersion: apps/v1\n---\nkind: ServiceAccount\napiVersion: v1\n---\n\
                       kind: Deployment\napiVersion: apps/v1\n---\napiVersion: idbind.dev/v1alpha1\n\
                       kind: WorkloadIdentityPolicy\n---\n{}\n"
                    .into(),
                bindings: &[],
                ignored: &[
                    ("Deployment", 2),
                    ("ServiceAccount", 1),
                    ("WorkloadIdentityPolicy", 1),
                    ("document without a kind", 1),
                ],
            },
            Case {
                what: "a wrong version or a misspelt kind of idbind's group is a binding, for the server to refuse",
                text: "apiVersion: idbind.dev/v1\nkind: WorkloadIdentityBinding\nmetadata: {name: v}\n---\n\
                       apiVersion: idbind.dev/v1alpha1\nkind: WorkloadIdentityBindng\nmetadata: {name: k}\n---\n\
                       apiVersion: v1\nkind: WorkloadIdentityBinding\nmetadata: {name: g}\n"
                    .into(),
                bindings: &["-/v", "-/k", "-/g"],
                ignored: &[],
            },
            Case {
                what: "a List's items are documents of their own",
                text: serde_json::to_string(&list).unwrap(),
                bindings: &["shop/a"],
                ignored: &[("ServiceAccount", 1)],
            },
        ];
        for case in cases {
            let m = read(&case.text);
            assert_eq!(names(&m), case.bindings, "{}", case.what);
            let ignored: Vec<(&str, usize)> = m.ignored.iter().map(|(k, n)| (k.as_str(), *n)).collect();
            assert_eq!(ignored, case.ignored, "{}", case.what);
        }
    }

    #[test]
    fn the_note_on_what_was_ignored_names_each_kind_with_its_count() {
        let m = read("kind: ServiceAccount\napiVersion: v1\n---\nkind: Deployment\napiVersion: apps/v1\n");
        assert_eq!(m.ignored_summary().as_deref(), Some("1 ServiceAccount, 1 Deployment"));
        assert_eq!(read(BINDING).ignored_summary(), None);
    }

    #[test]
    fn broken_yaml_names_the_file_and_the_document() {
        let mut m = Manifests::default();
        let e = m.add("ci.yaml", &format!("{BINDING}---\nkind: [unclosed\n")).unwrap_err();
        assert!(e.to_string().starts_with("ci.yaml: document 2:"), "{e}");
    }

    #[test]
    fn without_the_server_apiversion_kind_and_fields_are_checked_here() {
        let document = |text: &str| read(text).bindings.remove(0);
        let binding_of = |text: &str| binding(&document(text)).map_err(|p| p.message);
        assert_eq!(binding_of(BINDING).unwrap().spec.service_account_name, "a");
        let cases = [
            (
                BINDING.replace("v1alpha1", "v1"),
                "idbind serves only idbind.dev/v1alpha1 WorkloadIdentityBinding",
            ),
            (BINDING.replace("kind: WorkloadIdentityBinding", "kind: Wib"), "idbind serves only"),
            (BINDING.replace("spec: {serviceAccountName: a}", ""), "missing field `spec`"),
        ];
        for (text, expected) in cases {
            let message = binding_of(&text).unwrap_err();
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    fn the_namespace_is_the_manifest_s_then_the_flag_s_then_the_context_s() {
        let with = |ns: Option<&str>| Document {
            namespace: ns.map(str::to_string),
            name: Some("a".into()),
            value: Value::Null,
        };
        let cases = [
            (Some("shop"), None, Some("default"), Ok("shop")),
            (Some("shop"), Some("shop"), None, Ok("shop")),
            (None, Some("flag"), Some("default"), Ok("flag")),
            (None, None, Some("default"), Ok("default")),
            (None, None, None, Err("no namespace")),
            (
                Some("shop"),
                Some("other"),
                None,
                Err("the manifest says namespace shop, --namespace says other"),
            ),
        ];
        for (own, flag, context, expected) in cases {
            let got = namespace(&with(own), flag, context);
            match (got, expected) {
                (Ok(ns), Ok(want)) => assert_eq!(ns, want),
                (Err(p), Err(want)) => assert!(p.message.contains(want), "{}", p.message),
                (got, want) => panic!("{own:?} {flag:?} {context:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}
