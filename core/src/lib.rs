//! gantryd: the Gantry daemon. It owns the job queue and all state, serves
//! the client API to terminals, asks the scheduler for plans and drives the
//! gates. Everything it does is first written down in the store (see
//! `ARCHITECTURE.md`: durable intent before every side effect).

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod files;
pub mod job;
pub mod links;
pub mod metrics;
pub mod server;
pub mod store;

pub use config::Config;
pub use error::{CoreError, Result};
