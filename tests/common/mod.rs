//! Shared helpers of the integration tests; each test file uses a subset.
#![allow(dead_code)]

pub mod daemon;
pub mod monitor;
pub mod netns;
pub mod powercut;
pub mod redis;
pub mod rig;
