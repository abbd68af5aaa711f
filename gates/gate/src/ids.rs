//! Ids gantryd chooses for gate objects, validated once at the edge.

use std::fmt;

use crate::error::{GateError, Result};

/// Longest id gantryd may choose.
pub const MAX_ID_LEN: usize = 64;

/// Check that `value` is an id: 1–64 characters of `[A-Za-z0-9_-]`.
/// Such an id is safe as a file name and in provider labels.
pub fn check_id(field: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(GateError::invalid(
            field,
            "must not be empty; use e.g. \"a-0193\"",
        ));
    }
    if value.len() > MAX_ID_LEN {
        return Err(GateError::invalid(
            field,
            format!(
                "is {} characters long; at most {MAX_ID_LEN} are allowed",
                value.len()
            ),
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
    {
        return Err(GateError::invalid(
            field,
            format!("`{value}` contains {bad:?}; use only letters, digits, `_` and `-`"),
        ));
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Parse `value` given in request field `field`.
            pub fn parse(field: &str, value: &str) -> Result<Self> {
                check_id(field, value)?;
                Ok(Self(value.to_string()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// gantryd's id of one attempt of a job (the idempotency key of StartJob).
    AttemptId
);
id_type!(
    /// gantryd's id of a partition (the idempotency key of CreatePartition).
    PartitionId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ids_of_the_allowed_alphabet() {
        for ok in ["a", "A-1_b", &"x".repeat(64), "0193f1c2-7d3e"] {
            assert!(AttemptId::parse("attempt_id", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_empty_long_and_odd_ids_naming_the_field() {
        for bad in ["", &"x".repeat(65), "a/b", "..", "a b", "é", "a.b"] {
            let err = PartitionId::parse("partition_id", bad).unwrap_err();
            assert!(err.to_string().starts_with("partition_id: "), "{err}");
        }
    }

    #[test]
    fn displays_as_the_raw_id() {
        let id = AttemptId::parse("attempt_id", "a-7").unwrap();
        assert_eq!(id.to_string(), "a-7");
        assert_eq!(id.as_str(), "a-7");
    }
}
