//! The harness every Gantry gate is built on.
