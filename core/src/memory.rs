//! The process's memory budget (`MEMORY_BUDGET`): the bytes that upload bodies, image
//! decodes and renders may hold at once. Each reserves what it will need before
//! allocating it and gives it back when done, so a burst of large uploads or renders
//! waits its turn instead of growing the process until the kernel kills it (and every
//! job beside it).
//!
//! One budget per process: in embedded mode the API and the worker draw from the same one.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Reservations are counted in KiB: a semaphore takes at most `u32::MAX` permits at once.
const UNIT: u64 = 1024;

/// A shared, cheap-to-clone budget of bytes.
#[derive(Clone, Debug)]
pub struct MemoryBudget {
    /// `None`: unlimited (unit tests and benchmarks of one render).
    semaphore: Option<Arc<Semaphore>>,
    total_units: u64,
}

/// Bytes held from the budget until dropped.
#[derive(Debug)]
#[must_use = "the bytes go back to the budget when the reservation is dropped"]
pub struct Reservation {
    _permit: Option<OwnedSemaphorePermit>,
}

/// A single reservation larger than the whole budget: it can never be granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{needed} bytes are needed at once, more than the whole memory budget of {total} bytes (MEMORY_BUDGET)")]
pub struct OverBudget {
    pub needed: u64,
    pub total: u64,
}

impl MemoryBudget {
    pub fn new(total_bytes: u64) -> MemoryBudget {
        let total_units = (total_bytes / UNIT).clamp(1, Semaphore::MAX_PERMITS as u64);
        MemoryBudget { semaphore: Some(Arc::new(Semaphore::new(total_units as usize))), total_units }
    }

    pub fn unlimited() -> MemoryBudget {
        MemoryBudget { semaphore: None, total_units: u64::MAX }
    }

    pub fn total_bytes(&self) -> u64 {
        self.total_units.saturating_mul(UNIT)
    }

    /// Bytes not reserved right now.
    pub fn available_bytes(&self) -> u64 {
        self.semaphore.as_ref().map_or(u64::MAX, |s| s.available_permits() as u64 * UNIT)
    }

    /// Waits until `bytes` are free and holds them. Refused at once when they exceed the
    /// whole budget. Waiters are served in order, so a large reservation is not starved
    /// by a stream of small ones.
    pub async fn reserve(&self, bytes: u64) -> Result<Reservation, OverBudget> {
        let Some(semaphore) = &self.semaphore else { return Ok(Reservation { _permit: None }) };
        let units = self.units(bytes)?;
        // The semaphore is never closed, so acquiring can only wait, not fail.
        let permit = semaphore.clone().acquire_many_owned(units).await.map_err(|_| self.over(bytes))?;
        Ok(Reservation { _permit: Some(permit) })
    }

    /// `reserve` for code on a blocking thread (a render). Never call it from async code.
    pub fn reserve_blocking(&self, bytes: u64) -> Result<Reservation, OverBudget> {
        futures::executor::block_on(self.reserve(bytes))
    }

    fn units(&self, bytes: u64) -> Result<u32, OverBudget> {
        let units = bytes.div_ceil(UNIT).max(1);
        if units > self.total_units {
            return Err(self.over(bytes));
        }
        u32::try_from(units).map_err(|_| self.over(bytes))
    }

    fn over(&self, bytes: u64) -> OverBudget {
        OverBudget { needed: bytes, total: self.total_bytes() }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[tokio::test]
    async fn a_reservation_waits_until_enough_is_given_back() {
        let budget = MemoryBudget::new(10 * UNIT);
        let first = budget.reserve(6 * UNIT).await.expect("fits");
        assert_eq!(budget.available_bytes(), 4 * UNIT);
        let waiting = budget.reserve(5 * UNIT);
        tokio::pin!(waiting);
        assert!((&mut waiting).now_or_never().is_none(), "must wait: only 4 KiB are free");
        drop(first);
        let second = waiting.await.expect("granted once the first is dropped");
        assert_eq!(budget.available_bytes(), 5 * UNIT);
        drop(second);
        assert_eq!(budget.available_bytes(), 10 * UNIT);
    }

    #[tokio::test]
    async fn more_than_the_whole_budget_is_refused_at_once() {
        let budget = MemoryBudget::new(10 * UNIT);
        let err = budget.reserve(10 * UNIT + 1).await.expect_err("never fits");
        assert_eq!(err, OverBudget { needed: 10 * UNIT + 1, total: 10 * UNIT });
        assert!(budget.reserve_blocking(10 * UNIT).is_ok(), "exactly the budget fits");
    }

    #[test]
    fn unlimited_grants_anything() {
        let budget = MemoryBudget::unlimited();
        let _held = budget.reserve_blocking(u64::MAX / 2).expect("unlimited");
        assert_eq!(budget.available_bytes(), u64::MAX);
    }
}
