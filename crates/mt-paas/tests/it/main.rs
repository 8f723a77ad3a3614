//! mt-paas integration tests: one binary, against real SQLite files and the local Postgres.

#![allow(unreachable_pub, clippy::unwrap_used, clippy::type_complexity)]

mod config;
mod helpers;
mod identification;
mod registry;
