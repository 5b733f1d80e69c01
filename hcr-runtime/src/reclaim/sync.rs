//! The synchronisation primitives the reclamation protocol is written
//! against: std's atomics and parking_lot's mutex here. The model test
//! (`tests/reclaim_model.rs`) includes the same protocol file with loom's.

pub(crate) use std::sync::Arc;
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};

/// A mutex with the two operations the protocol uses.
#[derive(Debug, Default)]
pub(crate) struct Mutex<T>(parking_lot::Mutex<T>);

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Mutex<T> {
        Mutex(parking_lot::Mutex::new(value))
    }

    pub(crate) fn lock(&self) -> parking_lot::MutexGuard<'_, T> {
        self.0.lock()
    }

    pub(crate) fn try_lock(&self) -> Option<parking_lot::MutexGuard<'_, T>> {
        self.0.try_lock()
    }
}

/// Lets the waiting side of a handshake give way (a real wait with a
/// deadline lives in the safepoint code; the model yields to the scheduler).
#[allow(dead_code)]
pub(crate) fn spin() {
    std::hint::spin_loop();
}
