//! `--image`: the AMI machines boot, named by its id or found by a
//! DescribeImages query (the newest match, so a new release of an image
//! family is picked up by the next machine without a config change).

use std::fmt;
use std::str::FromStr;

use aws_sdk_ec2::Client;
use gantry_gate::{GateError, Result};

use crate::ec2::{ec2_error, filter};

/// The image machines boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Image {
    /// This AMI (`ami-…`).
    Id(String),
    /// The newest available image these owners publish that passes these
    /// DescribeImages filters (name and value; `*` and `?` match as EC2 says).
    Newest {
        /// Account ids, or `amazon`, `aws-marketplace`, `self`.
        owners: Vec<String>,
        /// Filters as (name, value).
        filters: Vec<(String, String)>,
    },
}

impl FromStr for Image {
    type Err = String;

    /// `ami-…`, or `KEY=VALUE[,KEY=VALUE…]` where `owner` names an owner and
    /// any other key a DescribeImages filter (`name`, `architecture`, …).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        if s.starts_with("ami-") && !s.contains('=') {
            return Ok(Image::Id(s.to_string()));
        }
        let (mut owners, mut filters) = (Vec::new(), Vec::new());
        for part in s.split(',') {
            let Some((key, value)) = part.split_once('=') else {
                return Err(format!(
                    "{part:?} is neither an AMI id (ami-...) nor KEY=VALUE \
                     (e.g. owner=099720109477,name=ubuntu/images/*jammy*amd64-server-*)"
                ));
            };
            let (key, value) = (key.trim(), value.trim());
            if key.is_empty() || value.is_empty() {
                return Err(format!("{part:?}: both the key and the value are needed"));
            }
            match key {
                "owner" => owners.push(value.to_string()),
                _ => filters.push((key.to_string(), value.to_string())),
            }
        }
        if owners.is_empty() {
            return Err(
                "an image query needs owner=... (an account id, amazon or self): \
                 anyone can publish an image of any name"
                    .into(),
            );
        }
        Ok(Image::Newest { owners, filters })
    }
}

impl fmt::Display for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Image::Id(id) => f.write_str(id),
            Image::Newest { owners, filters } => {
                let owners = owners.iter().map(|o| format!("owner={o}"));
                let filters = filters.iter().map(|(k, v)| format!("{k}={v}"));
                f.write_str(&owners.chain(filters).collect::<Vec<_>>().join(","))
            }
        }
    }
}

impl Image {
    /// The AMI id to launch now.
    pub async fn resolve(&self, client: &Client) -> Result<String> {
        let (owners, filters) = match self {
            Image::Id(id) => return Ok(id.clone()),
            Image::Newest { owners, filters } => (owners, filters),
        };
        let mut query = client
            .describe_images()
            .set_owners(Some(owners.clone()))
            .filters(filter("state", &["available"]));
        for (name, value) in filters {
            query = query.filters(filter(name, &[value]));
        }
        let found = query
            .send()
            .await
            .map_err(|e| ec2_error("DescribeImages", e))?;
        // The newest; of images made at the same moment, the greatest name
        // (image families put their release date in it).
        let newest = found
            .images()
            .iter()
            .max_by(|a, b| (a.creation_date(), a.name()).cmp(&(b.creation_date(), b.name())));
        match newest.and_then(|i| i.image_id()) {
            Some(id) => Ok(id.to_string()),
            None => Err(GateError::invalid(
                "the AWS gate's --image",
                format!("no available image matches {self}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ami_id_or_a_query_with_an_owner() {
        assert_eq!("ami-0abc".parse(), Ok(Image::Id("ami-0abc".into())));
        let query: Image = "owner=099720109477, name=ubuntu/images/*, architecture=x86_64"
            .parse()
            .unwrap();
        assert_eq!(
            query,
            Image::Newest {
                owners: vec!["099720109477".into()],
                filters: vec![
                    ("name".into(), "ubuntu/images/*".into()),
                    ("architecture".into(), "x86_64".into())
                ],
            }
        );
        assert_eq!(
            query.to_string(),
            "owner=099720109477,name=ubuntu/images/*,architecture=x86_64"
        );
        let no_owner = "name=ubuntu/*".parse::<Image>().unwrap_err();
        assert!(no_owner.contains("needs owner="), "{no_owner}");
        let garbage = "ubuntu".parse::<Image>().unwrap_err();
        assert!(garbage.contains("neither an AMI id"), "{garbage}");
    }
}
