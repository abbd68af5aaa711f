//! Secret values (a job's `secret_env`): kept in a map whose `Debug` shows
//! the names only, so that a logged spec or request never carries a value.

use std::collections::BTreeMap;

/// Secret environment variables, by name.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets(pub BTreeMap<String, String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Secrets {
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_names_not_values() {
        let secrets = Secrets([("TOKEN".to_string(), "s3cr3t".to_string())].into());
        assert_eq!(format!("{secrets:?}"), "{\"TOKEN\"}");
    }
}
