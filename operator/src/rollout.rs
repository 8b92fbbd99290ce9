//! Failover-aware rollouts and scaling: which pod restarts next, and when the primary is
//! switched over first. Shared by the controller (pods of StatefulSets with the `OnDelete`
//! strategy) and `local up` (processes).
