//! Starting and stopping TokenRoute's planes in one process — what `tokenroute serve`,
//! `proxy` and `control-plane` do, and what the end-to-end tests drive.
//!
//! Two runtimes: Pingora runs the data plane on its own (on a dedicated thread),
//! and an "app" runtime owns everything that must outlive it — the store pool, the
//! usage writer, the balance refresher and the control plane — so that shutdown can
//! stop the proxy first and then drain what it metered.

pub mod launch;
mod metrics;
pub mod simulate;

pub use launch::{
    launch, launch_upgrading, launch_with_listener, LaunchError, Planes, Running, Stop,
};
