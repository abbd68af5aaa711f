//! gantryd: the Gantry daemon that owns the job queue and all state.
