//! A Gantry gate that runs jobs as processes on this machine.
