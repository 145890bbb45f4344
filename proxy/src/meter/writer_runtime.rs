//! The usage writer's own thread, at a lower CPU priority than the data plane.
//!
//! Why: the writer's commits are background work, yet on a core the data plane shares
//! they competed with requests as equals. At 3,000 req/s on one core, the answers
//! that waited behind a commit made the p99 (benchmarks/README, "The p99 at 3,000
//! req/s: the usage writer's commits"). With the writer at a higher nice value the
//! scheduler hands the core to the data plane whenever it is runnable and gives the
//! writer what is left; usage still reaches the store, a little later.
//!
//! The writer also gets a store connection of its own (`WRITER_CONNECTIONS`), opened from
//! this thread. The SQLite driver runs each connection on a thread it spawns when it
//! connects, and a thread inherits the nice value of the thread that spawns it: the
//! writer's SQLite thread is lowered with it, while the shared pool's, which serve
//! key and balance reads that requests wait for, keep the data plane's priority.
//!
//! One wait remains: an account's first request on this node reads its balance under
//! the lock a commit holds (see `credit`), so it may wait for a commit in progress,
//! which runs slower at the writer's priority while the core is busy. Once per account
//! and process; balances stay cached after that.

use std::future::Future;

use tokenroute_store::{Store, StoreError};
use tokio::runtime::{Builder, Runtime};
use tokio::task::JoinHandle;

/// The writer runs one transaction at a time, and nothing else uses its pool.
const WRITER_CONNECTIONS: u32 = 1;

/// Name of the writer's thread (what `top -H` and `/proc/*/task/*/comm` show).
const THREAD_NAME: &str = "tokenroute-usage";

/// Why the writer's thread could not start.
#[derive(Debug, thiserror::Error)]
pub enum WriterStartError {
    #[error("cannot start the usage writer's thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("the usage writer cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("the usage writer's thread stopped while connecting: {0}")]
    Connecting(#[from] tokio::task::JoinError),
}

/// A one-thread runtime at a lower priority. Tasks are spawned on it, never
/// `block_on`-ed: `block_on` would run them on the caller's thread and priority.
pub struct WriterRuntime {
    runtime: Option<Runtime>,
}

impl WriterRuntime {
    /// Starts the thread `below` nice steps under the calling thread's priority (the
    /// process's: the data plane's threads keep it).
    pub fn start(below: i32) -> Result<WriterRuntime, WriterStartError> {
        // Computed once: a thread the runtime starts later may be spawned from one
        // already lowered, and would otherwise go lower still.
        let nice = nice_below_this_thread(below);
        let runtime = Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .thread_name(THREAD_NAME)
            .enable_all()
            .on_thread_start(move || {
                if let Some(nice) = nice {
                    set_nice(nice);
                }
            })
            .build()?;
        Ok(WriterRuntime {
            runtime: Some(runtime),
        })
    }

    /// Opens the writer's own connection to `url`, from the writer's thread. Must not be
    /// called from inside a runtime (it waits for the connection).
    pub fn open_store(&self, url: &str) -> Result<Store, WriterStartError> {
        let runtime = self.runtime();
        let url = url.to_string();
        let connect = runtime.spawn(async move { Store::connect(&url, WRITER_CONNECTIONS).await });
        Ok(runtime.block_on(connect)??)
    }

    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime().spawn(task)
    }

    fn runtime(&self) -> &Runtime {
        self.runtime
            .as_ref()
            .unwrap_or_else(|| unreachable!("the runtime is taken only on drop"))
    }
}

impl Drop for WriterRuntime {
    /// Without waiting: dropped from async code at shutdown, after the writer's task
    /// has ended (see `BackgroundTasks::shutdown`).
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The nice value `by` steps above the calling thread's (to 19 at most), or `None`
/// when that is the calling thread's own or cannot be read.
fn nice_below_this_thread(by: i32) -> Option<i32> {
    let current = rustix::process::getpriority_process(Some(rustix::thread::gettid()));
    match current {
        Ok(nice) if by > 0 && nice < 19 => Some((nice + by).min(19)),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read this thread's priority; the usage writer keeps it");
            None
        }
    }
}

/// Sets the calling thread's nice value. Raising it needs no privilege; when the
/// system refuses anyway, the writer runs at the data plane's priority.
fn set_nice(nice: i32) {
    let thread = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(thread), nice) {
        tracing::warn!(nice, error = %e, "cannot lower the usage writer's priority");
    }
}
