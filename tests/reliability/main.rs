//! The adversarial suite of `sumserver`: worker chaos, runaway jobs,
//! overload, slow clients, bad input, panics, shutdown under load and
//! descriptor exhaustion, each against the real binary on loopback.
