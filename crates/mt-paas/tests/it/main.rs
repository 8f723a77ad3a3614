//! mt-paas integration tests: one binary, against real SQLite files and the local Postgres.

#![allow(unreachable_pub, clippy::unwrap_used, clippy::type_complexity)]

mod config;
mod connections;
#[cfg(feature = "docker")]
mod docker;
mod guard;
mod helpers;
mod identification;
mod isolation;
mod layout;
mod provisioning;
mod registry;
mod telemetry;

pub(crate) use helpers::{
    notes_routes as isolation_routes, read_notes as isolation_read, write_note as isolation_write,
};
