//! The gateway's side of the tenants' limits ([`tenantry::quota`]): config writes that
//! would leave invalid limits are refused before anything is written.
//!
//! Limits are config: the defaults under `limits`, a tenant's own under
//! `tenants.<partition>.limits` (set at onboarding with the tenant's config, or by an
//! admin config write). The runtime applies a write to the next call.

use crate::error::ApiError;
use serde_json::Value;
use tenantry::config::ConfigStore;
use tenantry::quota::Limits;

/// Refuses (422 `invalid_limits`) a write of `value` at `key` that would leave limits
/// that do not parse or break their bounds, at `limits` or any `tenants.<p>.limits`.
pub fn check_limits_write(config: &ConfigStore, key: &str, value: &Value) -> Result<(), ApiError> {
    let segments: Vec<&str> = key.split('.').collect();
    match segments.as_slice() {
        ["limits", rest @ ..] => check_under(config, "limits", rest, value),
        ["tenants", tenant, "limits", rest @ ..] => {
            check_under(config, &format!("tenants.{tenant}.limits"), rest, value)
        }
        ["tenants", _] => check(value.get("limits")),
        ["tenants"] => match value.as_object() {
            Some(tenants) => tenants
                .values()
                .try_for_each(|tenant| check(tenant.get("limits"))),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Refuses a tenant's config (at onboarding) whose `limits` are invalid.
pub fn check_tenant_config(config: Option<&Value>) -> Result<(), ApiError> {
    check(config.and_then(|c| c.get("limits")))
}

/// Checks the limits at `root` once `value` is written `rest` below it.
fn check_under(
    config: &ConfigStore,
    root: &str,
    rest: &[&str],
    value: &Value,
) -> Result<(), ApiError> {
    let Some((last, path)) = rest.split_last() else {
        return check(Some(value));
    };
    let mut limits = config
        .get(root)
        .ok()
        .flatten()
        .filter(Value::is_object)
        .unwrap_or_else(|| Value::Object(Default::default()));
    let mut at = &mut limits;
    for segment in path {
        if !at.get(*segment).is_some_and(Value::is_object) {
            at[*segment] = Value::Object(Default::default());
        }
        at = &mut at[*segment];
    }
    at[*last] = value.clone();
    check(Some(&limits))
}

fn check(limits: Option<&Value>) -> Result<(), ApiError> {
    Limits::from_config(limits)
        .map(|_| ())
        .map_err(|e| ApiError::unprocessable("invalid_limits", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_that_would_leave_invalid_limits_are_refused_wherever_they_land() {
        let config = ConfigStore::new();
        config
            .set("tenants.acme.limits", json!({"rate_per_sec": 10}))
            .unwrap();
        for (key, value, ok) in [
            ("limits", json!({"rate_per_sec": 5, "burst": 2}), true),
            ("limits", json!({"rate_per_sec": 0}), false),
            ("limits.burst", json!(0), false),
            ("limits.weight", json!(3), true),
            ("tenants.acme.limits.concurrency", json!(8), true),
            ("tenants.acme.limits.rate_per_sec", json!(-1), false),
            ("tenants.acme.limits.speed", json!(1), false),
            ("tenants.acme", json!({"limits": {"burst": "many"}}), false),
            ("tenants.acme", json!({"db_url": "x"}), true),
            ("tenants", json!({"acme": {"limits": {"weight": 0}}}), false),
            ("tenants.acme.db_url", json!("x"), true),
            ("plans.gold", json!({"limits": "anything"}), true),
        ] {
            let result = check_limits_write(&config, key, &value);
            assert_eq!(result.is_ok(), ok, "{key} = {value}: {result:?}");
        }
        assert!(check_tenant_config(Some(&json!({"limits": {"burst": 0}}))).is_err());
        assert!(check_tenant_config(Some(&json!({"db_url": "x"}))).is_ok());
        assert!(check_tenant_config(None).is_ok());
    }
}
