//! Moving tenants between workers and rebalancing, under traffic.
