//! Request counters by operation and status, for tests and benchmarks to assert API-call budgets (`GET
//! /_sim/counters`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::PoisonError;

use serde::Serialize;

#[derive(Debug, Default)]
pub struct Counters {
    by_op: Mutex<BTreeMap<String, BTreeMap<String, u64>>>,
}

/// `{operation: {status: count}}`; status is the HTTP code or `dropped`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, serde::Deserialize)]
pub struct CounterSnapshot(pub BTreeMap<String, BTreeMap<String, u64>>);

impl CounterSnapshot {
    pub fn get(&self, operation: &str, status: &str) -> u64 {
        self.0.get(operation).and_then(|m| m.get(status)).copied().unwrap_or(0)
    }

    pub fn total(&self, operation: &str) -> u64 {
        self.0.get(operation).map(|m| m.values().sum()).unwrap_or(0)
    }

    /// Requests to the operations that write ([`crate::operations::write_operations`]), whatever their
    /// answer.
    pub fn writes(&self) -> u64 {
        crate::operations::write_operations().iter().map(|op| self.total(op)).sum()
    }
}

impl Counters {
    pub fn record(&self, operation: &str, status: &str) {
        let mut m = self.by_op.lock().unwrap_or_else(PoisonError::into_inner);
        *m.entry(operation.to_owned()).or_default().entry(status.to_owned()).or_default() += 1;
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot(self.by_op.lock().unwrap_or_else(PoisonError::into_inner).clone())
    }

    pub fn reset(&self) {
        self.by_op.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}
