//! Test support shared by every area module of the `it` binary.
pub mod cluster;
pub mod common;
pub mod fixture;
