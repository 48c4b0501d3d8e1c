//! Isolation through the coordinator.
