//! Per-message costs on the hot path. Budgets are in the README (Performance).
use criterion::{criterion_group, criterion_main, Criterion};
use eventbench::wire::{Header, HEADER_LEN};
use std::hint::black_box;

fn header(c: &mut Criterion) {
    let h = Header { producer: 3, channel: 1, seq: 123_456, intended_ns: 987_654_321, sent_ns: 987_654_400 };
    let mut buf = [0u8; 64];
    c.bench_function("header encode", |b| b.iter(|| black_box(&h).encode(black_box(&mut buf))));
    h.encode(&mut buf);
    c.bench_function("header decode", |b| b.iter(|| Header::decode(black_box(&buf[..HEADER_LEN]))));
}

criterion_group!(benches, header);
criterion_main!(benches);
