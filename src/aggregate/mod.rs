//! Aggregations: what a gather computes from the socket records it reads.
//! [`states`]: the 13 fields of `netstat` per address family.

pub mod states;
