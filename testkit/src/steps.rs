//! Steps of a test that tells one story (create, converge, edit, delete the same binding): each step runs in
//! [`step`], so that whatever fails in it, an error or an assertion, fails the test with the step's name.

use std::{future::Future, panic::AssertUnwindSafe};

use futures::FutureExt;

use crate::e2e::TestError;

/// Runs `body`, one step of a test; its error, or the message of an assertion that failed in it, comes back
/// as an error that names the step. (The panic hook has printed the assertion's location already.)
pub async fn step<T>(name: &str, body: impl Future<Output = Result<T, TestError>>) -> Result<T, TestError> {
    match AssertUnwindSafe(body).catch_unwind().await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("step '{name}' failed: {e}").into()),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(a panic without a message)");
            Err(format!("step '{name}' failed: {message}").into())
        }
    }
}
