//! What production never runs: the simulated platform (`sandbox`), the end-to-end `demo`,
//! the load generators (`bench`) and the `stage` harness they share with the tests. A client
//! of the relay's library like any other; built only with the `tooling` feature (default).

pub mod bench;
pub mod demo;
pub mod sandbox;
pub mod stage;
