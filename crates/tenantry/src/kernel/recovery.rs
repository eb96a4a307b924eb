//! Recovery of components that gave up: backoff, restart, and the admin's restart-now.
//!
//! When a component's instance crashes past its restart bound, its manager leaves a
//! failure in its slot and calls the hook installed here. The kernel then takes the
//! instance out of routing, marks it `BackingOff` (with the error, the attempt and the
//! time of the next try) and, once the backoff has passed, activates it again. A start
//! that fails backs off again, longer. Nothing of the recovery holds the runtime while it
//! waits (a weak reference), so a shut-down runtime is not kept alive by it.

use super::{InstanceStatus, Kernel, KernelCore, Placed};
use crate::failure::Failure;
use crate::manager::GiveUpHook;
use crate::{Error, Identity, Key};
use std::sync::{Arc, Weak};

/// The hook a component manager calls when one of its instances gives up.
pub(crate) fn hook(kernel: Weak<KernelCore>) -> GiveUpHook {
    Arc::new(move |identity: &Identity, failure: &Arc<Failure>| {
        let name = identity.key.to_string();
        // Out of routing at once, not in a task of its own: a caller whose turn ran in
        // place then finds it withdrawn as soon as it has its answer.
        let withdrawn = upgrade(&kernel).is_some_and(|k| {
            k.withdraw(&name, InstanceStatus::backing_off(failure))
                .is_ok()
        });
        if withdrawn {
            tokio::spawn(recover(kernel.clone(), name, failure.clone()));
        }
    })
}

/// The kernel behind a weak reference, while the runtime exists.
fn upgrade(kernel: &Weak<KernelCore>) -> Option<Kernel> {
    kernel.upgrade().map(Kernel::new)
}

/// Whether `name` is still backing off from attempt `attempt` (not removed, not
/// restarted by the admin meanwhile).
fn still_backing_off(kernel: &Kernel, name: &str, attempt: u32) -> bool {
    kernel.instance(name).is_some_and(
        |i| matches!(i.status, InstanceStatus::BackingOff { attempt: a, .. } if a == attempt),
    )
}

/// Waits out the backoff of a withdrawn instance, then activates it again.
async fn recover(weak: Weak<KernelCore>, name: String, failure: Arc<Failure>) {
    let mut failure = failure;
    loop {
        tokio::time::sleep_until(failure.retry_at).await;
        let Some(kernel) = upgrade(&weak) else {
            return;
        };
        if kernel.core.shared.is_closed() {
            return;
        }
        if !still_backing_off(&kernel, &name, failure.attempt) {
            return;
        }
        match kernel.activate(&name).await {
            Ok(()) => {
                tracing::info!(instance = %name, attempt = failure.attempt, "component restarted after backing off");
                return;
            }
            Err(e) => {
                let backoff = kernel
                    .placed(&name)
                    .map(|p| p.manager.config_dyn().backoff)
                    .unwrap_or_default();
                let attempt = failure.attempt.saturating_add(1);
                failure = Arc::new(Failure::new(e.to_string(), attempt, backoff.delay(attempt)));
                tracing::warn!(instance = %name, attempt, error = %e, "component failed to start again; backing off");
                kernel.set_status(&name, InstanceStatus::backing_off(&failure));
            }
        }
    }
}

impl Kernel {
    /// Starts a failed or backing-off instance now (the admin's "restart"): its failure is
    /// forgotten and it activates at once. An active or never-booted instance is not
    /// failed ([`Error::NotFailed`]).
    pub async fn restart(&self, name: &str) -> Result<(), Error> {
        let status = self
            .instance(name)
            .ok_or_else(|| Error::UnknownInstance(name.to_owned()))?
            .status;
        if !matches!(
            status,
            InstanceStatus::Failed(_) | InstanceStatus::BackingOff { .. }
        ) {
            return Err(Error::NotFailed(name.to_owned()));
        }
        let Placed {
            manager, partition, ..
        } = self.placed(name)?;
        manager.clear_failure_dyn(&Key::new(name)?, &partition);
        // Its recovery, if waiting, sees the new status and stands down.
        self.set_status(name, InstanceStatus::Registered);
        match self.activate(name).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.set_status(name, InstanceStatus::Failed(e.to_string()));
                Err(e)
            }
        }
    }
}
