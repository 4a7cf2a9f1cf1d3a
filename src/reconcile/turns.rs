//! Turns at the request budget for identity creates and deletes. A backlog of identities to create or delete
//! (2 per second per subscription) would otherwise keep every worker waiting inside a reconcile, and an edit
//! of any other binding would wait behind the whole backlog; with turns, workers stay free and turns stay in
//! order.

use std::time::Duration;

use super::Context;
use crate::{
    azure::budget::{MsiOp, OpKind, Request},
    core::resource_id::ResourceId,
};

/// Longest a reconcile waits in place for its turn at the budget; a later turn is a requeue. Short: at a
/// raised limit many turns fall within any longer window, and the reconciles waiting in place for them would
/// again take every worker.
pub const WAIT_LIMIT: Duration = Duration::from_millis(250);

/// Waits for `binding`'s turn to create/update (or delete) `identity` when it is near, or says how long until
/// it is (the caller requeues itself then).
pub async fn take(ctx: &Context, binding: &str, op: MsiOp, identity: &ResourceId) -> Result<(), Duration> {
    let Some(budget) = &ctx.budget else {
        return Ok(());
    };
    let (holder, request) = turn_of(binding, op, identity);
    let wait = budget.turn(&holder, &request).await;
    if wait > WAIT_LIMIT {
        return Err(wait);
    }
    budget.end_turn(&holder).await;
    tokio::time::sleep(wait).await;
    Ok(())
}

/// Azure refused `binding`'s create (or delete) of `identity` with 429 although its turn had come: someone
/// else spends the same limit. Books its next turn, which the budget puts after the 429's hold, and says how
/// long until it is; `None` without a budget (the controller's backoff then decides).
///
/// The binding comes back at that turn instead of failing with an exponential backoff: in a fleet every
/// binding may meet a 429 or two, and backing each off for longer and longer left the limit unused at the end
/// while the bindings still waited.
pub async fn after_refusal(
    ctx: &Context,
    binding: &str,
    op: MsiOp,
    identity: &ResourceId,
) -> Option<Duration> {
    let budget = ctx.budget.as_ref()?;
    let (holder, request) = turn_of(binding, op, identity);
    Some(budget.turn(&holder, &request).await)
}

/// The name of `binding`'s turn at `op` on `identity`, and the request it books.
fn turn_of(binding: &str, op: MsiOp, identity: &ResourceId) -> (String, Request) {
    let kind = if op == MsiOp::Delete { OpKind::Delete } else { OpKind::Write };
    let holder = format!("{binding} {op:?} {}", identity.to_string().to_ascii_lowercase());
    (holder, Request { kind, msi: Some((op, identity.to_string())) })
}
