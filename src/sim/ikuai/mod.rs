//! A simulated iKuai router (being written).
