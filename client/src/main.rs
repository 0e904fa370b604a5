//! `sumclient`: filled in by issue 4.
fn main() {}
