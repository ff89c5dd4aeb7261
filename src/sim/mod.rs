//! Simulators of the hubs, strict about the API documents: a simulated iKuai router and a simulated
//! eWeLink cloud (HTTP + WebSocket), with knobs for faults. Used by the tests, the benchmarks and
//! `hub2mqtt demo`. Knows nothing of the bridge.

pub mod ewelink;
pub mod ikuai;
