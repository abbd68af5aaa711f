//! The gantry command-line console.
