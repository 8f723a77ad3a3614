//! End to end: the reference market started in-process on a random port, and a service built
//! on mt-paas talking to it over HTTP.

#![allow(unreachable_pub, clippy::unwrap_used)]

mod console;
mod helpers;
mod loop_tests;
mod market_api;
mod rs256;
mod signed_commands;
mod sso;
