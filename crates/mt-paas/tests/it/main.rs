//! mt-paas integration tests: one binary, against real SQLite files and the local Postgres.

#![allow(unreachable_pub)]

mod config;
mod helpers;
mod identification;
mod registry;
