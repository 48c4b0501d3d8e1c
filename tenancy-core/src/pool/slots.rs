//! Slot numbers of a pool's connections, which outlive any one connection.

use std::sync::{Arc, Mutex};

/// The slot numbers `0..max_size` of a pool's connections: each connection
/// holds one for its life, and a connection opened to replace another takes
/// the number it left. Tenants are routed to connections by slot number, so
/// the routing outlives any one connection.
#[derive(Debug)]
pub(crate) struct Slots {
    taken: Mutex<Vec<bool>>,
}

impl Slots {
    pub(crate) fn new(count: u32) -> Arc<Self> {
        Arc::new(Self { taken: Mutex::new(vec![false; count as usize]) })
    }

    /// How many slots there are.
    pub(crate) fn count(&self) -> usize {
        self.taken.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The lowest free slot, if any (a connection opened before the one it
    /// replaces is dropped gets none, and is no tenant's home).
    pub(crate) fn take(self: &Arc<Self>) -> Option<Slot> {
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        let index = taken.iter().position(|t| !t)?;
        taken[index] = true;
        Some(Slot { index, slots: self.clone() })
    }
}

/// A connection's slot number, given back when the connection is dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) index: usize,
    slots: Arc<Slots>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut taken = self.slots.taken.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = taken.get_mut(self.index) {
            *t = false;
        }
    }
}
