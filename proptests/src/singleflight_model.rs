//! A naive reference model of [`lcache_core::SingleFlight`].
//!
//! Flights are a `Vec` searched linearly. The model numbers its flights itself (`0, 1, 2, …`);
//! tests map those numbers to the [`lcache_core::FlightId`]s the real coalescer hands out.

/// What the model says [`lcache_core::SingleFlight::begin`] must return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelBegin<W> {
    /// A new flight, with the model's number for it.
    Lead(u64),
    /// Queued behind the current flight.
    Joined,
    /// The key is at its waiter bound; the waiter comes back.
    Full(W),
}

/// One flight in progress.
#[derive(Debug, Clone)]
struct ModelFlight<K, W> {
    key: K,
    id: u64,
    /// Leader's waiter first, then joiners in join order.
    waiters: Vec<W>,
    superseded: bool,
}

/// Reference model of a `SingleFlight<K, W>`.
#[derive(Debug, Clone)]
pub struct SingleFlightModel<K, W> {
    flights: Vec<ModelFlight<K, W>>,
    max_waiters: usize,
    next_id: u64,
}

impl<K: PartialEq + Clone, W> SingleFlightModel<K, W> {
    /// An empty model holding at most `max_waiters_per_key` waiters per key (0 counts as 1).
    pub fn new(max_waiters_per_key: usize) -> Self {
        SingleFlightModel {
            flights: Vec::new(),
            max_waiters: if max_waiters_per_key == 0 {
                1
            } else {
                max_waiters_per_key
            },
            next_id: 0,
        }
    }

    fn find(&self, key: &K) -> Option<usize> {
        self.flights.iter().position(|f| f.key == *key)
    }

    /// `SingleFlight::begin`.
    pub fn begin(&mut self, key: K, waiter: W) -> ModelBegin<W> {
        if let Some(i) = self.find(&key) {
            let flight = &mut self.flights[i];
            if flight.waiters.len() >= self.max_waiters {
                return ModelBegin::Full(waiter);
            }
            flight.waiters.push(waiter);
            return ModelBegin::Joined;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.flights.push(ModelFlight {
            key,
            id,
            waiters: vec![waiter],
            superseded: false,
        });
        ModelBegin::Lead(id)
    }

    /// `SingleFlight::complete`: the waiters if `id` is the key's current flight, else nothing.
    pub fn complete(&mut self, key: &K, id: u64) -> Vec<W> {
        match self.find(key) {
            Some(i) if self.flights[i].id == id => self.flights.remove(i).waiters,
            _ => Vec::new(),
        }
    }

    /// `SingleFlight::supersede`.
    pub fn supersede(&mut self, key: &K) -> bool {
        match self.find(key) {
            Some(i) => {
                self.flights[i].superseded = true;
                true
            }
            None => false,
        }
    }

    /// `SingleFlight::is_superseded`: true unless `id` is the key's current, unmarked flight.
    pub fn is_superseded(&self, key: &K, id: u64) -> bool {
        match self.find(key) {
            Some(i) => self.flights[i].id != id || self.flights[i].superseded,
            None => true,
        }
    }

    /// The model number of the key's current flight.
    pub fn flight_id(&self, key: &K) -> Option<u64> {
        self.find(key).map(|i| self.flights[i].id)
    }

    /// Number of waiters of the key's flight (0 if none).
    pub fn waiters(&self, key: &K) -> usize {
        self.find(key).map_or(0, |i| self.flights[i].waiters.len())
    }

    /// Number of flights in progress.
    pub fn in_flight(&self) -> usize {
        self.flights.len()
    }

    /// The key and model number of every flight in progress.
    pub fn current(&self) -> Vec<(K, u64)> {
        self.flights.iter().map(|f| (f.key.clone(), f.id)).collect()
    }
}
