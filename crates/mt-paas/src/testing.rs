//! Helpers for testing a service built on mt-paas (feature `testing`).
