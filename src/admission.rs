//! Admission control: a budget of bytes shared by every request in flight.
//!
//! A request reserves its body bytes as they arrive, its inflated bytes before
//! inflating, and its decoded events before handing them to the sinks. When the
//! budget is spent the request is answered 503 at once, so a flood of large
//! deliveries makes Firehose back off and retry instead of making Hydrant buffer
//! without bound. Reservations are released when the request ends.
//!
//! One delivery can need more than the whole budget (a 64 MiB batch of gzip'd
//! CloudWatch Logs inflates several times over). Refusing it would make Firehose
//! retry it forever, so such a delivery may run *alone*: it takes the whole budget
//! when nothing else holds any of it, and every other request gets 503 until it is
//! done. Memory is then bounded by the budget or by the largest single delivery,
//! whichever is larger.

use std::sync::Arc;

use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget cannot cover a request's bytes now: the request is answered 503,
/// and Firehose retries it later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too much data in flight; retry later")]
pub struct Overloaded;

/// Budget unit: tokio semaphores count in `u32`, so bytes are reserved in KiB.
const UNIT: u64 = 1024;

/// The shared in-flight byte budget.
#[derive(Debug, Clone)]
pub struct InFlight {
    budget: Arc<Semaphore>,
    /// The whole budget, in units.
    units: u64,
    gauge: IntGauge,
}

/// Bytes held by one request; released on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<Semaphore>,
    units: u64,
    permit: Option<OwnedSemaphorePermit>,
    /// Units held beyond the budget by a delivery running alone.
    beyond: u64,
    gauge: IntGauge,
}

impl InFlight {
    /// A budget of `limit_bytes`, reported through `gauge`.
    #[must_use]
    pub fn new(limit_bytes: u64, gauge: IntGauge) -> Self {
        let units = usize::try_from(limit_bytes.div_ceil(UNIT))
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Self {
            budget: Arc::new(Semaphore::new(units)),
            units: units as u64,
            gauge,
        }
    }

    /// An empty reservation to grow as the request's bytes arrive.
    #[must_use]
    pub fn reservation(&self) -> Reservation {
        Reservation {
            budget: Arc::clone(&self.budget),
            units: self.units,
            permit: None,
            beyond: 0,
            gauge: self.gauge.clone(),
        }
    }
}

impl Reservation {
    /// Reserves `bytes` more, without waiting.
    ///
    /// # Errors
    ///
    /// [`Overloaded`] when the budget cannot cover them now.
    pub fn grow(&mut self, bytes: u64) -> Result<(), Overloaded> {
        if bytes == 0 {
            return Ok(());
        }
        let wanted = bytes.div_ceil(UNIT);
        if self.beyond > 0 {
            // Already running alone with the whole budget.
            self.beyond += wanted;
        } else {
            let held = self.held_units();
            let units = u32::try_from(wanted).map_err(|_| Overloaded)?;
            match Arc::clone(&self.budget).try_acquire_many_owned(units) {
                Ok(more) => self.merge(more),
                Err(_) if held + wanted > self.units => self.run_alone(held, wanted)?,
                Err(_) => return Err(Overloaded),
            }
        }
        self.gauge
            .add(i64::try_from(wanted * UNIT).unwrap_or(i64::MAX));
        Ok(())
    }

    /// Takes the rest of the budget for a delivery that can never fit in it, if no
    /// other request holds any of it.
    fn run_alone(&mut self, held: u64, wanted: u64) -> Result<(), Overloaded> {
        let rest = self.units.saturating_sub(held);
        if self.budget.available_permits() as u64 != rest {
            return Err(Overloaded);
        }
        let rest_units = u32::try_from(rest).map_err(|_| Overloaded)?;
        let all = Arc::clone(&self.budget)
            .try_acquire_many_owned(rest_units)
            .map_err(|_| Overloaded)?;
        self.merge(all);
        self.beyond = wanted - rest;
        tracing::info!(
            bytes = (held + wanted) * UNIT,
            "Delivery is larger than the in-flight budget; running it alone."
        );
        Ok(())
    }

    fn merge(&mut self, more: OwnedSemaphorePermit) {
        match &mut self.permit {
            Some(permit) => permit.merge(more),
            None => self.permit = Some(more),
        }
    }

    fn held_units(&self) -> u64 {
        self.permit
            .as_ref()
            .map_or(0, |permit| permit.num_permits() as u64)
    }

    /// Bytes held, rounded up to the budget unit.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        (self.held_units() + self.beyond) * UNIT
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
        assert_eq!(second.grow(4 * UNIT), Err(Overloaded));
        second.grow(3 * UNIT).unwrap();
        drop(first);
        assert_eq!(gauge.get(), 3 * UNIT as i64);
        let mut third = in_flight.reservation();
        third.grow(7 * UNIT).unwrap();
        drop((second, third));
        assert_eq!(gauge.get(), 0);
    }

    /// A delivery larger than the whole budget runs alone: only while nothing else
    /// is in flight, and while it runs everything else is refused.
    #[test]
    fn a_request_larger_than_the_budget_runs_alone() {
        let gauge = gauge();
        let in_flight = InFlight::new(10 * UNIT, gauge.clone());
        let mut small = in_flight.reservation();
        small.grow(UNIT).unwrap();
        let mut giant = in_flight.reservation();
        giant.grow(4 * UNIT).unwrap();
        assert_eq!(
            giant.grow(20 * UNIT),
            Err(Overloaded),
            "not while others hold some"
        );
        drop(small);
        giant.grow(20 * UNIT).unwrap();
        assert_eq!(giant.bytes(), 24 * UNIT);
        giant.grow(UNIT).unwrap();
        assert_eq!(gauge.get(), 25 * UNIT as i64);
        assert_eq!(
            in_flight.reservation().grow(1),
            Err(Overloaded),
            "others wait"
        );
        drop(giant);
        assert_eq!(gauge.get(), 0);
        let mut after = in_flight.reservation();
        after.grow(10 * UNIT).unwrap();
        assert_eq!(in_flight.reservation().grow(u64::MAX), Err(Overloaded));
    }
}
