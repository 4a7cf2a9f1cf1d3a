//! Which binding holds a ServiceAccount: one ServiceAccount carries one client id, so of two bindings naming
//! it, only one may bind it. Pure, so the rule is tested as a table.

/// A binding's claim on a ServiceAccount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim<'a> {
    pub binding: &'a str,
    pub service_account: &'a str,
    /// Creation time (seconds since the epoch): the first claimant keeps the ServiceAccount.
    pub created: i64,
    /// Being deleted: it no longer holds anything.
    pub deleting: bool,
}

/// The binding, among `others` in the same namespace, that holds `me`'s ServiceAccount ahead of `me` (the
/// older one; the name breaks ties), if any.
pub fn held_by<'a>(me: &Claim<'_>, others: impl IntoIterator<Item = Claim<'a>>) -> Option<&'a str> {
    others
        .into_iter()
        .filter(|o| o.binding != me.binding && o.service_account == me.service_account && !o.deleting)
        .filter(|o| (o.created, o.binding) < (me.created, me.binding))
        .min_by_key(|o| (o.created, o.binding))
        .map(|o| o.binding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_binding_of_a_service_account_keeps_it() {
        let claim = |binding, service_account, created, deleting| Claim {
            binding,
            service_account,
            created,
            deleting,
        };
        let me = claim("b", "sa", 100, false);
        let table: &[(&[Claim<'static>], Option<&str>)] = &[
            (&[], None),
            (&[claim("a", "other-sa", 50, false)], None),
            (&[claim("a", "sa", 50, false)], Some("a")),
            (&[claim("c", "sa", 150, false)], None),
            (&[claim("a", "sa", 100, false)], Some("a")),
            (&[claim("c", "sa", 100, false)], None),
            (&[claim("a", "sa", 50, true)], None),
            (&[claim("c", "sa", 60, false), claim("a", "sa", 50, false)], Some("a")),
            (&[claim("b", "sa", 10, false)], None),
        ];
        for (others, want) in table {
            assert_eq!(held_by(&me, others.iter().cloned()), *want, "{others:?}");
        }
    }
}
