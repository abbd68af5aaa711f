//! The gantry command-line console: every subcommand of `gantry`, the
//! `#GANTRY` directive reader and the `gantry dev` supervisor. It talks to
//! gantryd only through the `gantry-client` SDK.

pub mod cli;
pub mod cmd;
pub mod dev;
pub mod directives;
pub mod output;
pub mod parse;
