//! A simulated eWeLink cloud (being written).
