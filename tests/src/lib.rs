//! End-to-end tests over the real Gantry binaries.
