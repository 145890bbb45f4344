//! What the benchmark tools share: the HTTP/1.1 requests they send and read, and how
//! they summarise latencies.

pub mod http1;
pub mod stats;
