//! How often each tenant was asked for lately, so that a switch can take the
//! idle connection whose tenant is asked for least: hot tenants keep their
//! connections, and the rest share the connection that serves whatever is
//! cold (most recently used among equals, so one backend stays busy and warm).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::schema_name::SchemaName;

/// Checkouts between two halvings of every count.
const HALVE_EVERY: u32 = 8_192;

#[derive(Debug, Default)]
pub(crate) struct Heat {
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    by_tenant: HashMap<SchemaName, u32>,
    since_halving: u32,
}

impl Heat {
    /// Counts a checkout for `schema`.
    pub(crate) fn touch(&self, schema: &SchemaName) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        match counts.by_tenant.get_mut(schema) {
            Some(n) => *n = n.saturating_add(1),
            None => {
                counts.by_tenant.insert(schema.clone(), 1);
            }
        }
        counts.since_halving += 1;
        if counts.since_halving >= HALVE_EVERY {
            counts.since_halving = 0;
            counts.by_tenant.retain(|_, n| {
                *n /= 2;
                *n > 0
            });
        }
    }

    /// How often `schema` was asked for lately (`0` for none).
    pub(crate) fn of(&self, schema: &SchemaName) -> u32 {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.by_tenant.get(schema).copied().unwrap_or(0)
    }
}
