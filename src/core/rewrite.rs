//! Whether idbind writes again what someone else changed: the ServiceAccount's annotations, a
//! SecretProviderClass's `clientID` and `tenantId`, the export ConfigMap's data. Pure: the adapters say what
//! an object carries and who wrote it (`managedFields`), the binding's status says what idbind last wrote
//! there ([`WrittenStatus`], which tenants cannot write), and [`decide`] says what to do.
//!
//! The rule, for one object and the client id idbind keeps on it:
//!
//! - idbind's first write (an object it never wrote, one made anew with another UID, a new client id) is
//!   always made: nobody else's change is undone;
//! - when the object differs although idbind wrote this very client id to this very object, someone else
//!   changed it: idbind undoes that once (a hand edit is repaired);
//! - when it differs again, for the same client id and the same generation of the binding, another writer is
//!   at work (a controller, a GitOps tool): idbind leaves the object alone and the binding stalls, rather
//!   than the two writing in turn for ever;
//! - the contest is over once the object carries idbind's values again (whoever put them back), when the
//!   object is made anew, when the client id changes, or when the binding's spec changes (a new generation):
//!   each is a deliberate act of someone, never of the other writer's loop.
//!
//! A write that changes no value (idbind taking over fields someone set to the same value) is no fight.

use crate::api::binding::{WrittenKind, WrittenStatus};

/// The object idbind means to write, and what it writes there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    pub kind: WrittenKind,
    pub name: &'a str,
    /// The object's `metadata.uid`, as read just now.
    pub uid: &'a str,
    /// The client id idbind keeps on it.
    pub client_id: &'a str,
    /// The binding's `metadata.generation`.
    pub generation: i64,
}

/// What the object needs, as read just now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// It carries idbind's values, written by idbind.
    Nothing,
    /// It carries idbind's values, but someone else wrote them: idbind's write changes no value.
    Ownership,
    /// A value idbind keeps there is wrong or gone; `by`: the field managers that own a wrong one (none when
    /// it was removed).
    Values { by: Vec<String> },
}

/// What to do about the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to write; the record to keep.
    InPlace(WrittenStatus),
    /// Write it; the record once written. `repair`: the write undoes someone else's change.
    Write { record: WrittenStatus, repair: bool },
    /// Someone else changed it again after idbind undid a change: it is left alone. The record notes the
    /// writers; `undone` are those of the change idbind undid, `by` those of this one.
    Contested { record: WrittenStatus, undone: String, by: String },
}

impl Decision {
    /// The record the binding's status keeps of the object.
    pub fn record(&self) -> &WrittenStatus {
        match self {
            Decision::InPlace(record)
            | Decision::Write { record, .. }
            | Decision::Contested { record, .. } => record,
        }
    }
}

/// The writers of a change, for a message: their field managers, or "someone else" when the change was a
/// removal (whoever removes a field keeps no record of it).
pub fn writers(by: &[String]) -> String {
    if by.is_empty() { "someone else".to_string() } else { by.join(", ") }
}

/// What to do about `target`, given what idbind recorded of its last write there (`previous`, any record of
/// that kind and name) and what it `need`s.
pub fn decide(previous: Option<&WrittenStatus>, target: &Target<'_>, need: &Need) -> Decision {
    let fresh = WrittenStatus {
        kind: target.kind,
        name: target.name.to_string(),
        uid: target.uid.to_string(),
        client_id: target.client_id.to_string(),
        generation: target.generation,
        undone: None,
        contested: None,
    };
    // idbind wrote this very client id to this very object: a difference now is someone else's doing.
    let same = previous.filter(|p| {
        p.kind == target.kind
            && p.name == target.name
            && p.uid == target.uid
            && p.client_id == target.client_id
    });
    match need {
        Need::Nothing | Need::Ownership => {
            // idbind's values are there: a contest someone else settled is over, an undone change forgotten
            // only then (idbind's own repair never settles it, or the two would write in turn).
            let record = match same {
                Some(p) if p.contested.is_some() => {
                    WrittenStatus { undone: None, contested: None, ..p.clone() }
                }
                Some(p) => p.clone(),
                None => fresh,
            };
            if *need == Need::Ownership {
                Decision::Write { record, repair: false }
            } else {
                Decision::InPlace(record)
            }
        }
        Need::Values { by } => match same {
            None => Decision::Write { record: fresh, repair: false },
            Some(p) => match &p.undone {
                Some(undone) if p.generation == target.generation => {
                    let by = writers(by);
                    let record = WrittenStatus { contested: Some(by.clone()), ..p.clone() };
                    Decision::Contested { record, undone: undone.clone(), by }
                }
                _ => Decision::Write {
                    record: WrittenStatus { undone: Some(writers(by)), ..fresh },
                    repair: true,
                },
            },
        },
    }
}

/// The record of `kind` named `name` among the binding's, if any.
pub fn find<'a>(written: &'a [WrittenStatus], kind: WrittenKind, name: &str) -> Option<&'a WrittenStatus> {
    written.iter().find(|w| w.kind == kind && w.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SA: WrittenKind = WrittenKind::ServiceAccount;

    fn target(uid: &'static str, client_id: &'static str, generation: i64) -> Target<'static> {
        Target { kind: SA, name: "app", uid, client_id, generation }
    }

    fn record(uid: &str, client_id: &str, generation: i64, undone: Option<&str>) -> WrittenStatus {
        WrittenStatus {
            kind: SA,
            name: "app".into(),
            uid: uid.into(),
            client_id: client_id.into(),
            generation,
            undone: undone.map(str::to_string),
            contested: None,
        }
    }

    fn changed_by(manager: &str) -> Need {
        Need::Values { by: vec![manager.to_string()] }
    }

    /// What a decision does.
    #[derive(Debug, PartialEq)]
    enum Effect {
        Keep,
        Write,
        Repair,
        Leave,
    }

    fn effect(d: &Decision) -> Effect {
        match d {
            Decision::InPlace(_) => Effect::Keep,
            Decision::Write { repair: false, .. } => Effect::Write,
            Decision::Write { repair: true, .. } => Effect::Repair,
            Decision::Contested { .. } => Effect::Leave,
        }
    }

    /// (case, what idbind recorded, the object's UID and client id, what it needs, what idbind does)
    type Row<'a> = (&'a str, Option<&'a WrittenStatus>, (&'a str, &'a str), Need, Effect);

    #[test]
    fn the_first_change_by_someone_else_is_undone_and_a_second_is_left_alone() {
        use Effect::{Keep, Leave, Repair, Write};
        let w = record("u1", "c1", 3, None);
        let u = record("u1", "c1", 3, Some("kubectl-patch"));
        let earlier = record("u1", "c1", 2, Some("kubectl-patch"));
        let removed = || Need::Values { by: vec![] };
        let table: Vec<Row<'_>> = vec![
            ("never written: written", None, ("u1", "c1"), changed_by("x"), Write),
            ("written and untouched", Some(&w), ("u1", "c1"), Need::Nothing, Keep),
            ("a hand edit: undone", Some(&w), ("u1", "c1"), changed_by("kubectl-patch"), Repair),
            ("a removal: undone", Some(&w), ("u1", "c1"), removed(), Repair),
            ("a second change: left alone", Some(&u), ("u1", "c1"), changed_by("argocd"), Leave),
            ("a second removal: left alone", Some(&u), ("u1", "c1"), removed(), Leave),
            ("a new client id: idbind's own change", Some(&u), ("u1", "c2"), changed_by("idbind"), Write),
            ("made anew: another object", Some(&u), ("u2", "c1"), changed_by("argocd"), Write),
            (
                "the spec changed since: undone once more",
                Some(&earlier),
                ("u1", "c1"),
                changed_by("a"),
                Repair,
            ),
            ("same values set by someone else: no fight", Some(&u), ("u1", "c1"), Need::Ownership, Write),
            ("undone and right since: nothing to write", Some(&u), ("u1", "c1"), Need::Nothing, Keep),
        ];
        for (case, previous, (uid, client_id), need, want) in table {
            let target = Target { kind: SA, name: "app", uid, client_id, generation: 3 };
            let decision = decide(previous, &target, &need);
            assert_eq!(effect(&decision), want, "{case}");
            let r = decision.record();
            assert_eq!((r.uid.as_str(), r.client_id.as_str(), r.generation), (uid, client_id, 3), "{case}");
        }
    }

    #[test]
    fn a_fight_costs_one_repair_and_ends_only_when_someone_else_puts_the_values_back() {
        // The other writer changes the object every time idbind has written it.
        let t = target("u1", "c1", 3);
        let mut previous: Option<WrittenStatus> = None;
        let mut writes = 0;
        for _ in 0..10 {
            let decision = decide(previous.as_ref(), &t, &changed_by("other-controller"));
            if matches!(decision, Decision::Write { .. }) {
                writes += 1;
            }
            previous = Some(decision.record().clone());
        }
        assert_eq!(writes, 2, "the first write and one repair");
        let contested = previous.clone().unwrap_or_default();
        assert_eq!(contested.contested.as_deref(), Some("other-controller"));
        assert_eq!(contested.undone.as_deref(), Some("other-controller"));
        // The other writer stopped and someone put idbind's values back: settled, and the next hand edit is
        // undone again.
        let settled = decide(previous.as_ref(), &t, &Need::Ownership);
        assert!(matches!(&settled, Decision::Write { repair: false, .. }), "{settled:?}");
        assert_eq!((settled.record().undone.clone(), settled.record().contested.clone()), (None, None));
        let next = decide(Some(settled.record()), &t, &changed_by("kubectl-edit"));
        assert!(matches!(next, Decision::Write { repair: true, .. }), "{next:?}");
    }

    #[test]
    fn idbind_setting_its_values_back_itself_settles_nothing() {
        // After idbind's repair the object is right (its own write): the undone change is remembered.
        let undone = record("u1", "c1", 3, Some("other"));
        let after_repair = decide(Some(&undone), &target("u1", "c1", 3), &Need::Nothing);
        assert_eq!(after_repair, Decision::InPlace(undone.clone()));
        let again = decide(Some(after_repair.record()), &target("u1", "c1", 3), &changed_by("other"));
        assert!(matches!(again, Decision::Contested { .. }), "{again:?}");
    }

    #[test]
    fn a_record_of_another_kind_or_name_is_not_this_objects() {
        let mut class = record("u1", "c1", 3, Some("other"));
        class.kind = WrittenKind::SecretProviderClass;
        let found = find(std::slice::from_ref(&class), SA, "app");
        assert_eq!(found, None);
        let decision = decide(Some(&class), &target("u1", "c1", 3), &changed_by("other"));
        assert!(matches!(decision, Decision::Write { repair: false, .. }), "{decision:?}");
        assert_eq!(writers(&[]), "someone else");
        assert_eq!(writers(&["a".into(), "b".into()]), "a, b");
    }
}
