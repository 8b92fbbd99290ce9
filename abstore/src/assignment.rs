//! Deterministic weighted assignment (being written).
