//! What production never runs: the simulated platform (`sandbox`), the end-to-end `demo`,
//! the load generators (`bench`) and the `stage` harness they share with the tests. A client
//! of the relay's library like any other, in a crate of its own so the relay's package
//! builds and tests only the binary that ships.

pub mod bench;
pub mod cli;
pub mod demo;
pub mod sandbox;
pub mod stage;
