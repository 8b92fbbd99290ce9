//! The key schema (being written).
