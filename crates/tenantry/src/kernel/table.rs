//! A kernel table: a lock that counts its writes, so what was derived from the tables
//! (the bus's resolved routes) can tell whether it still holds.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// One of the kernel's tables, with the number of writes it has seen.
#[derive(Default)]
pub(crate) struct Table<T> {
    lock: RwLock<T>,
    writes: AtomicU64,
}

impl<T> Table<T> {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, T> {
        self.lock.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the table; the count moves on when the guard drops, after the change and
    /// before the lock is released.
    pub(crate) fn write(&self) -> TableWrite<'_, T> {
        TableWrite {
            guard: self.lock.write().unwrap_or_else(|e| e.into_inner()),
            writes: &self.writes,
        }
    }

    /// Writes so far. Read it before deriving anything from the table: a derivation
    /// stamped with it is stale once it moved on.
    pub(crate) fn writes(&self) -> u64 {
        self.writes.load(Ordering::Acquire)
    }
}

/// A write in progress (see [`Table::write`]).
pub(crate) struct TableWrite<'a, T> {
    guard: RwLockWriteGuard<'a, T>,
    writes: &'a AtomicU64,
}

impl<T> Deref for TableWrite<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for TableWrite<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for TableWrite<'_, T> {
    fn drop(&mut self) {
        self.writes.fetch_add(1, Ordering::AcqRel);
    }
}
