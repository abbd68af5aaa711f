//! The built-in Gantry scheduler process: priority, FIFO, EASY backfill.
