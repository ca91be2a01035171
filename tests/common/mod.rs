pub mod daemon;
pub mod monitor;
pub mod netns;
pub mod powercut;
pub mod redis;
pub mod rig;
