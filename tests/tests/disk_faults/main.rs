//! A full or failing disk never turns an acknowledged change into a lost
//! one: gantryd refuses changes while its database cannot write, says why
//! (the refusal, `ListSites`, the gRPC health service), serves again by
//! itself once the fault clears, and after SIGKILL + restart every job it
//! acknowledged is there. Real faults: a tmpfs filled to the last byte, and
//! syscalls failed by strace. Run as root (as CI does).

mod common;
mod injected;
mod local_gate;
mod postgres;
mod schedule;
mod slurm_gate;
mod state_disk;
