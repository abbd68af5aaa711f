//! Jobs: the state machine, spec validation and units.

pub mod array;
pub mod spec;
pub mod state;
pub mod units;

pub use spec::{Resources, ValidSpec};
