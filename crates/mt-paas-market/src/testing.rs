//! The reference market in-process, for a vendor's tests (feature `testing`).
