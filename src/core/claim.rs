//! Which binding holds something only one binding may hold: a ServiceAccount (it carries one client id) or a
//! brought identity (whoever federates it gets every role it holds, so two namespaces sharing one would each
//! read the other's vaults). Of several bindings claiming one, the oldest holds it. Pure, so the rule is
//! tested as a table.

/// A binding's claim on a ServiceAccount or an identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim<'a> {
    /// The binding, named so that no two bindings compared share a name.
    pub binding: &'a str,
    /// What it claims, in a form where equal means the same thing (an identity's id in lower case).
    pub target: &'a str,
    /// Creation time (seconds since the epoch, set by the API server): the first claimant keeps it.
    pub created: i64,
    /// Being deleted: it no longer holds anything.
    pub deleting: bool,
}

/// The binding ahead of another in a claim, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub binding: String,
    /// Created in the same second as the other (the API server's resolution): the name broke the tie.
    pub tie_by_name: bool,
}

impl Holder {
    /// Why it goes first, as a condition message says it.
    pub fn precedence(&self) -> &'static str {
        if self.tie_by_name { "created in the same second, first by name" } else { "created first" }
    }
}

/// The binding, among `others`, that holds `me`'s target ahead of `me` (the older one; the name breaks ties),
/// if any.
pub fn held_by<'a>(me: &Claim<'_>, others: impl IntoIterator<Item = Claim<'a>>) -> Option<Holder> {
    others
        .into_iter()
        .filter(|o| o.binding != me.binding && o.target == me.target && !o.deleting)
        .filter(|o| (o.created, o.binding) < (me.created, me.binding))
        .min_by_key(|o| (o.created, o.binding))
        .map(|o| Holder { binding: o.binding.to_string(), tie_by_name: o.created == me.created })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_claimant_keeps_it() {
        let claim = |binding, target, created, deleting| Claim { binding, target, created, deleting };
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
            let holder = held_by(&me, others.iter().cloned()).map(|h| h.binding);
            assert_eq!(holder.as_deref(), *want, "{others:?}");
        }
    }

    #[test]
    fn a_tie_broken_by_name_says_so() {
        let claim = |binding, created| Claim { binding, target: "sa", created, deleting: false };
        let older = held_by(&claim("b", 100), [claim("a", 50)]);
        assert_eq!(older.map(|h| h.precedence()), Some("created first"));
        let tie = held_by(&claim("b", 100), [claim("a", 100)]);
        assert_eq!(tie.map(|h| h.precedence()), Some("created in the same second, first by name"));
    }
}
