//! The price table: what one machine of each instance type costs per hour.
//! EC2 has no price in its API (the Pricing API is another service and
//! region-bound), so the operator supplies it; a dated default ships.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

/// The table shipped with the gate (`gates/aws/prices.toml`).
pub const DEFAULT_PRICES: &str = include_str!("../prices.toml");

/// Hourly prices by instance type.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Prices {
    /// ISO 4217 code, e.g. "USD".
    pub currency: String,
    /// When the prices were read, for people.
    #[serde(default)]
    pub as_of: String,
    /// Instance type → price per hour.
    pub prices: BTreeMap<String, f64>,
}

impl Prices {
    /// Parse a table (TOML, the format of [`DEFAULT_PRICES`]).
    pub fn parse(text: &str) -> Result<Self> {
        let prices: Prices = toml::from_str(text)?;
        if let Some((name, price)) = prices
            .prices
            .iter()
            .find(|(_, p)| !(p.is_finite() && **p >= 0.0))
        {
            anyhow::bail!("the price of {name} is {price}; give a non-negative number");
        }
        Ok(prices)
    }

    /// The table in `path`, or the shipped one.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("--prices {}", path.display()))?;
                Self::parse(&text).with_context(|| format!("--prices {}", path.display()))
            }
            None => Self::parse(DEFAULT_PRICES).context("the shipped price table"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_parses_and_a_bad_price_is_refused() {
        let prices = Prices::load(None).unwrap();
        assert_eq!(prices.currency, "USD");
        assert!(prices.prices["t3.micro"] > 0.0);
        let bad = "currency = \"USD\"\n[prices]\n\"x\" = -1.0\n";
        assert!(Prices::parse(bad).is_err());
    }
}
