//! The operator's ConfigMap as `idbind plan`'s defaults. Its keys are the environment variables of `idbind
//! run`'s flags (the operator's pod reads it with envFrom), so each value becomes the default of the flag
//! with that variable, set on the command before it parses: a flag, then its variable, then the ConfigMap,
//! then the built-in default, in that order, with clap's own precedence doing the work.

use std::collections::BTreeMap;

use clap::{Arg, Command};

/// The operator's ConfigMap, in its namespace.
pub const CONFIG_MAP: &str = "idbind-config";

/// Keys that describe the operator's pod rather than the plan: how the pod signs in to Azure and files inside
/// it. A CI runner signs in its own way (flags or environment), so these are never taken from the ConfigMap.
pub const POD_ONLY_KEYS: &[&str] =
    &["IDBIND_CREDENTIAL", "IDBIND_CA_FILE", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_CLIENT_SECRET"];

/// The ids of `idbind run`'s flags that only the Azure sign-in needs. A plan whose bindings are all refused
/// signs in to nothing, so they default to empty (hidden in --help) rather than being required.
const SIGN_IN_ONLY: &[&str] = &["tenant_id", "client_id"];

/// The flag id of the operator's namespace as `idbind run` knows it (`POD_NAMESPACE`, from the Downward API),
/// which `--operator-namespace` fills for a plan: the operator's own ServiceAccount lives there.
const OPERATOR_NAMESPACE_ID: &str = "lease_namespace";

/// `command` with `subcommand`'s defaults taken from the ConfigMap's `data` (without [`POD_ONLY_KEYS`]), its
/// operator namespace set to `operator_namespace` when known, and the sign-in-only flags optional (in
/// `--help` too, which is printed before any ConfigMap is read).
pub fn with_defaults(
    command: Command,
    subcommand: &str,
    data: &BTreeMap<String, String>,
    operator_namespace: Option<&str>,
) -> Command {
    command.mut_subcommand(subcommand, |plan| {
        let plan = SIGN_IN_ONLY.iter().fold(plan, |plan, id| {
            plan.mut_arg(*id, |arg| arg.required(false).default_value("").hide_default_value(true))
        });
        let plan = match operator_namespace {
            Some(ns) => plan.mut_arg(OPERATOR_NAMESPACE_ID, |arg| arg.default_value(ns.to_string())),
            None => plan,
        };
        let settable: Vec<(String, String)> =
            plan.get_arguments().filter_map(|arg| Some((arg.get_id().to_string(), env_of(arg)?))).collect();
        settable.into_iter().fold(plan, |plan, (id, env)| match data.get(&env) {
            Some(value) if !POD_ONLY_KEYS.contains(&env.as_str()) => {
                plan.mut_arg(id, |arg| arg.required(false).default_value(value.clone()))
            }
            _ => plan,
        })
    })
}

fn env_of(arg: &Arg) -> Option<String> {
    arg.get_env()?.to_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use clap::{Args, FromArgMatches};
    use pretty_assertions::assert_eq;

    use super::*;
    use crate::runtime::preview::PlanArgs;

    fn cli() -> Command {
        Command::new("idbind").subcommand(PlanArgs::augment_args(Command::new("plan")))
    }

    /// `idbind plan <args>` with these ConfigMap data, as the plan's arguments.
    fn parse(data: &[(&str, &str)], args: &[&str]) -> Result<PlanArgs, clap::Error> {
        let data: BTreeMap<String, String> =
            data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let command = with_defaults(cli(), "plan", &data, Some("ops"));
        let matches = command.try_get_matches_from(["idbind", "plan", "-f", "x.yaml"].iter().chain(args))?;
        let (_, plan) = matches.subcommand().ok_or_else(|| clap::Error::new(clap::error::ErrorKind::Io))?;
        PlanArgs::from_arg_matches(plan)
    }

    const REQUIRED: [(&str, &str); 3] = [
        ("IDBIND_CLUSTER_NAME", "aks-prod"),
        ("IDBIND_OIDC_ISSUER", "https://issuer.example/"),
        ("AZURE_SUBSCRIPTION_ID", "sub"),
    ];

    #[test]
    fn the_config_map_fills_what_flags_leave_unset_and_flags_win() {
        let mut data = REQUIRED.to_vec();
        data.extend([("IDBIND_LOCATION", "westeurope"), ("IDBIND_ALLOW_ANY_ROLE", "true")]);
        let from_map = parse(&data, &[]).unwrap();
        assert_eq!(from_map.run.cluster_name, "aks-prod");
        assert_eq!(from_map.run.location.as_deref(), Some("westeurope"));
        assert!(from_map.run.allow_any_role);
        assert_eq!(from_map.run.concurrency, 8, "a key the ConfigMap lacks keeps its built-in default");

        let overridden = parse(&data, &["--location", "northeurope", "--cluster-name", "other"]).unwrap();
        assert_eq!(overridden.run.location.as_deref(), Some("northeurope"));
        assert_eq!(overridden.run.cluster_name, "other");
    }

    #[test]
    fn no_credential_is_required_and_the_pod_s_own_sign_in_is_never_taken() {
        let mut data = REQUIRED.to_vec();
        data.extend([
            ("IDBIND_CREDENTIAL", "workload-identity"),
            ("IDBIND_CA_FILE", "/etc/idbind/ca/ca.pem"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/secrets/token"),
            ("UNKNOWN_KEY", "ignored"),
        ]);
        let args = parse(&data, &[]).unwrap();
        assert_eq!((args.run.tenant_id.as_str(), args.run.client_id.as_str()), ("", ""));
        assert_eq!(args.run.credential, crate::runtime::run::CredentialKind::Auto);
        assert_eq!(args.run.ca_file, None);
        assert_eq!(args.run.federated_token_file, None);
    }

    #[test]
    fn the_operator_namespace_is_where_its_service_account_is() {
        let args = parse(&REQUIRED, &[]).unwrap();
        assert_eq!(args.run.lease_namespace, "ops");
    }

    #[test]
    fn without_a_config_map_the_settings_are_still_required() {
        let e = parse(&[], &[]).err().unwrap();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(e.to_string().contains("--cluster-name"), "{e}");
    }
}
