//! enigm-attestd (being written)
fn main() {}
