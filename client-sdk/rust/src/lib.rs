//! The Rust SDK terminals use to talk to gantryd.
