//! Persistence of the state to one JSON file, written atomically (temp file, fsync, rename, fsync of the
//! directory).
//!
//! Choice: group commit. Every write request bumps the state's generation and then waits until a snapshot at
//! least that new is on disk before it is answered, so every acknowledged write is durable, and a clean
//! shutdown flushes the last generation. Writes that arrive while a snapshot is being written are coalesced
//! into the next snapshot, so under load the file is rewritten once per batch, not once per request. Without
//! a state file nothing of this runs and writes never wait.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use crate::error::SimError;
use crate::state::State;

/// What the state file holds: the world and the key that signs access tokens (so tokens issued before a
/// restart stay valid after it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PersistedFile {
    pub version: u32,
    pub signing_key: SigningKeyFile,
    pub state: State,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeyFile {
    pub kid: String,
    pub pkcs8_pem: String,
}

pub const FILE_VERSION: u32 = 1;

pub fn load(path: &Path) -> Result<Option<PersistedFile>, SimError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let file: PersistedFile = serde_json::from_slice(&bytes)
                .map_err(|e| SimError::Parse { what: path.display().to_string(), message: e.to_string() })?;
            if file.version != FILE_VERSION {
                return Err(SimError::Persist(format!(
                    "{} has version {}, this simulator reads {FILE_VERSION}",
                    path.display(),
                    file.version
                )));
            }
            Ok(Some(file))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SimError::Read { path: path.to_owned(), source }),
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the new content.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), SimError> {
    use std::io::Write;
    let werr = |source| SimError::Write { path: path.to_owned(), source };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(werr)?;
    let file_name =
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| String::from("state"));
    let tmp = dir.join(format!(".{file_name}.tmp-{}", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename is durable only once the directory entry is.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(werr)
}

#[derive(Debug, Clone, Default)]
struct Durable {
    generation: u64,
    error: Option<String>,
}

/// Produces `(generation, serialized file)` of the current state.
pub type Snapshot = Arc<dyn Fn() -> Result<(u64, Vec<u8>), SimError> + Send + Sync>;

pub struct Persister {
    path: PathBuf,
    wake: Arc<Notify>,
    durable: watch::Receiver<Durable>,
    task: tokio::task::JoinHandle<()>,
}

impl Persister {
    pub fn spawn(path: PathBuf, initial_generation: u64, snapshot: Snapshot) -> Self {
        let wake = Arc::new(Notify::new());
        let (tx, rx) = watch::channel(Durable { generation: initial_generation, error: None });
        let task_path = path.clone();
        let task_wake = wake.clone();
        let task = tokio::spawn(async move {
            let mut written = initial_generation;
            loop {
                task_wake.notified().await;
                // Coalesce: keep writing while writes keep arriving.
                loop {
                    let (generation, bytes) = match snapshot() {
                        Ok(s) => s,
                        Err(e) => {
                            tx.send_modify(|d| d.error = Some(e.to_string()));
                            break;
                        }
                    };
                    if generation <= written {
                        break;
                    }
                    let p = task_path.clone();
                    let outcome = tokio::task::spawn_blocking(move || write_atomically(&p, &bytes)).await;
                    match outcome {
                        Ok(Ok(())) => {
                            written = generation;
                            tx.send_modify(|d| {
                                d.generation = generation;
                                d.error = None;
                            });
                        }
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "persisting the simulator state failed");
                            tx.send_modify(|d| d.error = Some(e.to_string()));
                            break;
                        }
                        Err(e) => {
                            tx.send_modify(|d| d.error = Some(format!("persist task failed: {e}")));
                            break;
                        }
                    }
                }
            }
        });
        Self { path, wake, durable: rx, task }
    }

    /// Waits until the state of `generation` (or a newer one) is on disk.
    pub async fn wait_durable(&self, generation: u64) -> Result<(), SimError> {
        self.wake.notify_one();
        let mut rx = self.durable.clone();
        let seen = rx
            .wait_for(|d| d.generation >= generation || d.error.is_some())
            .await
            .map_err(|_| SimError::Persist(String::from("the persist task has stopped")))?
            .clone();
        if seen.generation >= generation {
            Ok(())
        } else {
            Err(SimError::Persist(format!("{}: {}", self.path.display(), seen.error.unwrap_or_default())))
        }
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}
