//! Admission control: a budget of bytes shared by every request in flight.
//!
//! A request reserves its body bytes as they arrive and its inflated bytes before
//! inflating. When the budget is spent the request is answered 503 at once, so a
//! flood of large deliveries makes Firehose back off and retry instead of making
//! Hydrant buffer without bound. Reservations are released when the request ends.

use std::sync::Arc;

use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;

/// Budget unit: tokio semaphores count in `u32`, so bytes are reserved in KiB.
const UNIT: u64 = 1024;

/// The shared in-flight byte budget.
#[derive(Debug, Clone)]
pub struct InFlight {
    budget: Arc<Semaphore>,
    gauge: IntGauge,
}

/// Bytes held by one request; released on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
    gauge: IntGauge,
}

impl InFlight {
    /// A budget of `limit_bytes`, reported through `gauge`.
    #[must_use]
    pub fn new(limit_bytes: u64, gauge: IntGauge) -> Self {
        let units = usize::try_from(limit_bytes.div_ceil(UNIT)).unwrap_or(usize::MAX);
        Self {
            budget: Arc::new(Semaphore::new(units.min(Semaphore::MAX_PERMITS))),
            gauge,
        }
    }

    /// An empty reservation to grow as the request's bytes arrive.
    #[must_use]
    pub fn reservation(&self) -> Reservation {
        Reservation {
            budget: Arc::clone(&self.budget),
            permit: None,
            gauge: self.gauge.clone(),
        }
    }
}

impl Reservation {
    /// Reserves `bytes` more, without waiting.
    ///
    /// # Errors
    ///
    /// [`ApiError::Overloaded`] when the budget cannot cover them now.
    pub fn grow(&mut self, bytes: u64) -> Result<(), ApiError> {
        if bytes == 0 {
            return Ok(());
        }
        let units = u32::try_from(bytes.div_ceil(UNIT)).map_err(|_| ApiError::Overloaded)?;
        let more = Arc::clone(&self.budget)
            .try_acquire_many_owned(units)
            .map_err(|_| ApiError::Overloaded)?;
        self.gauge.add(i64::from(units) * UNIT as i64);
        match &mut self.permit {
            Some(permit) => permit.merge(more),
            None => self.permit = Some(more),
        }
        Ok(())
    }

    /// Bytes held, rounded up to the budget unit.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.permit
            .as_ref()
            .map_or(0, |permit| permit.num_permits() as u64 * UNIT)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.gauge
            .sub(i64::try_from(self.bytes()).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge() -> IntGauge {
        IntGauge::new("test_in_flight", "test").unwrap()
    }

    #[test]
    fn grants_until_the_budget_is_spent_and_releases_on_drop() {
        let gauge = gauge();
        let in_flight = InFlight::new(10 * UNIT, gauge.clone());
        let mut first = in_flight.reservation();
        first.grow(6 * UNIT).unwrap();
        first.grow(1).unwrap(); // rounds up to one unit
        assert_eq!(first.bytes(), 7 * UNIT);
        assert_eq!(gauge.get(), 7 * UNIT as i64);
        let mut second = in_flight.reservation();
        assert_eq!(second.grow(4 * UNIT), Err(ApiError::Overloaded));
        second.grow(3 * UNIT).unwrap();
        drop(first);
        assert_eq!(gauge.get(), 3 * UNIT as i64);
        let mut third = in_flight.reservation();
        third.grow(7 * UNIT).unwrap();
        drop((second, third));
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn a_request_larger_than_the_budget_is_refused() {
        let in_flight = InFlight::new(UNIT, gauge());
        assert_eq!(
            in_flight.reservation().grow(2 * UNIT),
            Err(ApiError::Overloaded)
        );
        assert_eq!(
            in_flight.reservation().grow(u64::MAX),
            Err(ApiError::Overloaded)
        );
    }
}
