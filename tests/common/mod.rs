pub mod powercut;
