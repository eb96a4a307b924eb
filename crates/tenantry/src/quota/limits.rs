//! A partition's limits, as config writes them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The highest `rate_per_sec` (beyond it a rate limit is as good as none).
pub const MAX_RATE_PER_SEC: f64 = 1e9;
/// The highest `burst`, `concurrency` may be.
pub const MAX_COUNT: u32 = 1_000_000;
/// The highest `weight`.
pub const MAX_WEIGHT: u32 = 1_000;
/// The highest byte limit (`max_stored_bytes`, `max_state_bytes`, `max_reply_bytes`): 1 PiB.
pub const MAX_BYTES: u64 = 1 << 50;

/// One partition's limits (`None`: no limit). Written as config: under `limits` for
/// every partition, under `tenants.<partition>.limits` for one (each field set there
/// replaces the default's). For example `{"rate_per_sec": 1000, "burst": 200}`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Calls per second admitted on average (above 0, at most 10⁹).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_sec: Option<f64>,
    /// How many calls may come at once above the rate (1 to 10⁶; default: one
    /// second's worth of the rate, at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Calls in flight at once (1 to 10⁶).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Its weight in the fair share of a saturated runtime (1 to 1,000; default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Live keyed instances at once (1 to 10⁶). At the cap, an activation first
    /// hibernates the partition's least recently used idle instances; it is refused only
    /// when none can hibernate. Agents and pods count; components do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instances: Option<u32>,
    /// Bytes the partition may keep in the store, checkpoints and scoped storage together
    /// (1 to 2⁵⁰). A write that would grow it past this is refused; writes that shrink it
    /// always pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stored_bytes: Option<u64>,
    /// Bytes of the largest single record: one instance's checkpoint or one storage value
    /// (1 to 2⁵⁰).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_state_bytes: Option<u64>,
    /// Bytes of the largest JSON reply a call from outside may get (1 to 2⁵⁰).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_reply_bytes: Option<u64>,
}

impl Limits {
    /// Limits read from a config value: `null` or absent is no limit; anything else must
    /// be an object of the fields above, in their bounds.
    pub fn from_config(value: Option<&Value>) -> Result<Self, String> {
        let limits = match value {
            None | Some(Value::Null) => Self::default(),
            // serde would read an array positionally: `[1, 2]` as a rate and a burst.
            Some(v) if !v.is_object() => {
                let kind = match v {
                    Value::Array(_) => "an array",
                    Value::String(_) => "a string",
                    Value::Number(_) => "a number",
                    _ => "a boolean",
                };
                return Err(format!(
                    "invalid limits: expected an object of named limits, not {kind}"
                ));
            }
            Some(v) => Self::deserialize(v).map_err(|e| format!("invalid limits: {e}"))?,
        };
        limits.validate()?;
        Ok(limits)
    }

    /// Checks every field against its bounds.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(rate) = self.rate_per_sec {
            if !(rate > 0.0 && rate <= MAX_RATE_PER_SEC) {
                return Err(format!(
                    "rate_per_sec must be above 0 and at most {MAX_RATE_PER_SEC}, not {rate:?}"
                ));
            }
        }
        for (name, value, max) in [
            ("burst", self.burst, MAX_COUNT),
            ("concurrency", self.concurrency, MAX_COUNT),
            ("weight", self.weight, MAX_WEIGHT),
            ("max_instances", self.max_instances, MAX_COUNT),
        ] {
            if let Some(v) = value {
                if !(1..=max).contains(&v) {
                    return Err(format!("{name} must be 1 to {max}, not {v}"));
                }
            }
        }
        for (name, value) in [
            ("max_stored_bytes", self.max_stored_bytes),
            ("max_state_bytes", self.max_state_bytes),
            ("max_reply_bytes", self.max_reply_bytes),
        ] {
            if let Some(v) = value {
                if !(1..=MAX_BYTES).contains(&v) {
                    return Err(format!("{name} must be 1 to {MAX_BYTES}, not {v}"));
                }
            }
        }
        Ok(())
    }

    /// These limits over `defaults`: each field set here wins.
    pub fn over(self, defaults: Limits) -> Limits {
        Limits {
            rate_per_sec: self.rate_per_sec.or(defaults.rate_per_sec),
            burst: self.burst.or(defaults.burst),
            concurrency: self.concurrency.or(defaults.concurrency),
            weight: self.weight.or(defaults.weight),
            max_instances: self.max_instances.or(defaults.max_instances),
            max_stored_bytes: self.max_stored_bytes.or(defaults.max_stored_bytes),
            max_state_bytes: self.max_state_bytes.or(defaults.max_state_bytes),
            max_reply_bytes: self.max_reply_bytes.or(defaults.max_reply_bytes),
        }
    }

    /// The weight in force (1 unless set).
    pub fn weight(&self) -> u32 {
        self.weight.unwrap_or(1)
    }

    /// The burst in force with a rate: as set, else one second's worth (at least 1).
    pub fn burst(&self) -> Option<u32> {
        let rate = self.rate_per_sec?;
        Some(
            self.burst
                .unwrap_or_else(|| (rate.ceil() as u32).clamp(1, MAX_COUNT)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn limits_parse_within_their_bounds_and_override_the_defaults_field_by_field() {
        let defaults =
            Limits::from_config(Some(&json!({"rate_per_sec": 50, "weight": 2}))).unwrap();
        let own = Limits::from_config(Some(&json!({"rate_per_sec": 1000, "burst": 200}))).unwrap();
        let both = own.over(defaults);
        assert_eq!(
            (both.rate_per_sec, both.burst, both.weight()),
            (Some(1000.0), Some(200), 2)
        );
        assert_eq!(Limits::from_config(None).unwrap(), Limits::default());
        assert_eq!(
            Limits::from_config(Some(&Value::Null)).unwrap(),
            Limits::default()
        );
        assert_eq!(defaults.burst(), Some(50), "a second's worth by default");
        for bad in [
            json!({"rate_per_sec": 0}),
            json!({"rate_per_sec": -1}),
            json!({"rate_per_sec": 1e12}),
            json!({"burst": 0}),
            json!({"concurrency": 2_000_000}),
            json!({"weight": 0}),
            json!({"weight": 1001}),
            json!({"max_instances": 0}),
            json!({"max_stored_bytes": 0}),
            json!({"max_state_bytes": -5}),
            json!({"max_reply_bytes": 1u64 << 51}),
            json!({"rate": 5}),
            json!("fast"),
            json!([1, 2]),
            json!(5),
        ] {
            assert!(Limits::from_config(Some(&bad)).is_err(), "{bad}");
        }
    }
}
