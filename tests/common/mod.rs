//! Shared helpers of the integration tests; each test file uses a subset.
// Compiled into every test crate that uses `common`; each uses a subset of it.
#![allow(dead_code)]

pub mod core_work;
pub mod daemon;
pub mod monitor;
pub mod netns;
pub mod powercut;
pub mod redis;
pub mod rig;
