pub mod daemon;
pub mod monitor;
pub mod netns;
pub mod rig;
