//! The pure core: everything a reconcile decides, as functions of values. No async, no client, no clock (time
//! is passed in), so every rule is tested table-driven without a server.

pub mod claim;
pub mod conditions;
pub mod desired;
pub mod grants;
pub mod naming;
pub mod plan;
pub mod policy;
pub mod proof;
pub mod reason;
pub mod removal;
pub mod report;
pub mod resource_id;
pub mod rewrite;
pub mod roles;
pub mod settings;
pub mod validate;
pub mod wiring;
