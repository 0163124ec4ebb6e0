//! Per-message costs on the hot path. Budgets are in the README (Performance).
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use eventbench::connect::resp;
use eventbench::drivers::pubsub::conn::{parse_push, Push};
use eventbench::stats::ledger::SeqLedger;
use eventbench::stats::{latency_histogram, record, ConsumerStats, ThreadStats, Window};
use eventbench::wire::{Header, HEADER_LEN};
use std::hint::black_box;

/// Pushes in the receive-path benchmark: about what one 256 KiB read holds.
const PUSHES: u64 = 2048;

fn header(c: &mut Criterion) {
    let h = Header { producer: 3, channel: 1, seq: 123_456, intended_ns: 987_654_321, sent_ns: 987_654_400 };
    let mut buf = [0u8; 64];
    c.bench_function("header encode", |b| b.iter(|| black_box(&h).encode(black_box(&mut buf))));
    h.encode(&mut buf);
    c.bench_function("header decode", |b| b.iter(|| Header::decode(black_box(&buf[..HEADER_LEN]))));
}

fn ledger(c: &mut Criterion) {
    let mut ledger = SeqLedger::default();
    let mut seq = 0u64;
    c.bench_function("ledger update (in order)", |b| {
        b.iter(|| {
            seq += 1;
            ledger.record(black_box(seq - 1))
        })
    });
}

fn histogram(c: &mut Criterion) {
    let mut h = latency_histogram();
    // Latencies between about 10 µs and 10 ms, in ns, spread like real ones.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    c.bench_function("histogram record", |b| {
        b.iter(|| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            record(&mut h, black_box(10_000 + (x & 0xFF_FFFF) / 2));
        })
    });
}

/// What a consumer does with one read: find each push in the buffer, decode
/// its header, update the ledger and the four histograms.
fn receive(c: &mut Criterion) {
    let channel = b"eventbench:0123abcd:0";
    let mut buf = Vec::new();
    let mut payload = [0u8; 64];
    for seq in 0..PUSHES {
        let h = Header {
            producer: 0,
            channel: 0,
            seq,
            intended_ns: 1_000_000 + seq * 1000,
            sent_ns: 1_000_000 + seq * 1000,
        };
        h.encode(&mut payload);
        resp::encode_command(&mut buf, &[b"message", channel, &payload]);
    }
    let window = Window { start_ns: 0, end_ns: 60_000_000_000 };
    let mut thread = ThreadStats::new(&window);
    let fresh = ConsumerStats::new(0, 1, 1);
    let mut group = c.benchmark_group("receive path");
    group.throughput(Throughput::Elements(PUSHES));
    group.bench_function("parse + decode + record, per read of 2048 pushes", |b| {
        b.iter_batched_ref(
            || fresh.clone(),
            |consumer| {
                let mut at = 0;
                while let Ok(Some((push, used))) = parse_push(&buf[at..], b"unsubscribe") {
                    if let Push::Message(range) = push {
                        consumer.record(&buf[at..][range], 5_000_000_000, &window, &mut thread);
                    }
                    at += used;
                }
                assert_eq!(consumer.delivered, PUSHES);
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, header, ledger, histogram, receive);
criterion_main!(benches);
