pub mod netns;
pub mod daemon;
