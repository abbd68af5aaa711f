//! Gantry's AWS gate: EC2 instances as the fleet's machines
//! ([`Ec2Machines`]), priced from an operator's table ([`Prices`]). The
//! fleet (`gantry-fleet`) does the rest: partitions, join tokens, agents.

mod ec2;
mod image;
mod prices;
mod s3;

pub use ec2::{Ec2Machines, Ec2Settings, TAG_GATE, TAG_INSTALLATION, TAG_PARTITION, ec2_error};
pub use image::Image;
pub use prices::{DEFAULT_PRICES, Prices};
pub use s3::S3Storage;
