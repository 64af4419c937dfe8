//! Benchmarks for childfd (see `benches/`).
