//! Who is calling: the authority a call carries, attached by the runtime.
//!
//! A [`Caller`] decides which partitions a call may reach and what a shared provider may
//! do for it. Tenant code can read the caller of the letter it handles but can never make
//! one: the constructors are crate-private, and no public API takes a `Caller` as input.
//! Authority comes from where code runs (the instance's own identity and grant, or the
//! [`Runtime`](crate::Runtime) host code holds), never from a value in hand.
//!
//! ```compile_fail
//! // Tenant code cannot forge the host (nor any other caller).
//! let forged = tenantry::Caller::Host;
//! ```

use crate::{Identity, Partition};
use std::fmt;
use std::sync::Arc;

/// Who is calling: host code, code confined to one partition, or an admin-granted
/// instance. Read it with [`Caller::kind`]; only the runtime makes one.
///
/// One word: host code carries nothing, other callers one shared allocation (a letter
/// holds its sender, and an instance's context the current one).
#[derive(Clone, PartialEq, Eq)]
pub struct Caller(Option<Arc<Reach>>);

/// A caller other than host code.
#[derive(PartialEq, Eq)]
enum Reach {
    Tenant(Partition),
    Admin(Arc<Identity>),
}

/// A read-only view of a [`Caller`], for matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerKind<'a> {
    /// Trusted host code: the embedding program, the gateway's admin routes.
    Host,
    /// Code acting inside one partition: an instance without a grant, or a tenant's key.
    Partition(&'a Partition),
    /// An instance instantiated with the admin grant; its cross-partition calls are
    /// audited.
    Admin(&'a Identity),
}

impl Caller {
    /// Host code (only code holding the runtime gets this).
    pub(crate) const fn host() -> Self {
        Self(None)
    }

    /// Code confined to `partition`.
    pub(crate) fn tenant(partition: Partition) -> Self {
        Self(Some(Arc::new(Reach::Tenant(partition))))
    }

    /// An instance holding the admin grant.
    pub(crate) fn admin(identity: Arc<Identity>) -> Self {
        Self(Some(Arc::new(Reach::Admin(identity))))
    }

    /// What kind of caller this is.
    pub fn kind(&self) -> CallerKind<'_> {
        match self.0.as_deref() {
            None => CallerKind::Host,
            Some(Reach::Tenant(p)) => CallerKind::Partition(p),
            Some(Reach::Admin(id)) => CallerKind::Admin(id),
        }
    }

    /// Whether this is host code.
    pub fn is_host(&self) -> bool {
        self.0.is_none()
    }

    /// Whether this caller may act beyond one partition (host code or an admin grant).
    pub fn is_privileged(&self) -> bool {
        !matches!(self.kind(), CallerKind::Partition(_))
    }

    /// The partition this caller is confined to (`None` for host and admin callers).
    pub fn confined_to(&self) -> Option<&Partition> {
        match self.kind() {
            CallerKind::Partition(p) => Some(p),
            _ => None,
        }
    }

    /// The partition this caller acts from (`None` for host code).
    pub fn home(&self) -> Option<&Partition> {
        match self.kind() {
            CallerKind::Host => None,
            CallerKind::Partition(p) => Some(p),
            CallerKind::Admin(id) => Some(&id.partition),
        }
    }
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind() {
            CallerKind::Host => f.write_str("Caller::Host"),
            CallerKind::Partition(p) => write!(f, "Caller::Partition({p})"),
            CallerKind::Admin(id) => write!(f, "Caller::Admin({id})"),
        }
    }
}

/// The runtime's proof of who a routed call acts for. Only the crate makes one, and no
/// public API hands one out, so a method that takes it cannot be used to act as someone
/// else.
pub struct CallAs(pub(crate) Caller);
