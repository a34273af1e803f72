//! The per-chunk work of `add` and `cat`, one 1 MiB chunk at a time on one core: chunking,
//! key derivation, sealing, addressing, opening. `cargo bench --bench seal`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{RngCore, SeedableRng};
use storgo::content::{BlockAddress, Chunker, ConvergenceSecret};

fn data(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(1).fill_bytes(&mut v);
    v
}

fn bench(c: &mut Criterion) {
    let secret = ConvergenceSecret::from_bytes([3; 32]);
    let chunk = data(1 << 20);
    let mut g = c.benchmark_group("chunk");
    g.throughput(Throughput::Bytes(chunk.len() as u64));
    g.bench_function("derive_key (blake3 keyed)", |b| {
        b.iter(|| secret.derive_key(&[], &chunk))
    });
    g.bench_function("sha256 address", |b| b.iter(|| BlockAddress::of(&chunk)));
    g.bench_function("seal (xchacha20poly1305)", |b| {
        let key = secret.derive_key(&[], &chunk);
        b.iter(|| {
            let mut v = Vec::with_capacity(chunk.len() + 16);
            v.extend_from_slice(&chunk);
            key.seal_in_place(&mut v, &[]);
            v
        })
    });
    g.bench_function("seal path (key + seal + address)", |b| {
        b.iter(|| {
            let key = secret.derive_key(&[], &chunk);
            let mut v = Vec::with_capacity(chunk.len() + 16);
            v.extend_from_slice(&chunk);
            key.seal_in_place(&mut v, &[]);
            BlockAddress::of(&v)
        })
    });
    g.bench_function("open", |b| {
        let key = secret.derive_key(&[], &chunk);
        let mut sealed = chunk.clone();
        key.seal_in_place(&mut sealed, &[]);
        b.iter(|| {
            let mut v = sealed.clone();
            key.open_in_place(&mut v, &[]).map(|_| v)
        })
    });
    g.finish();

    let stream = data(64 << 20);
    let mut g = c.benchmark_group("stream");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.sample_size(10);
    g.bench_with_input(
        BenchmarkId::new("chunker (fastcdc + whole sha256)", "64MiB"),
        &stream,
        |b, s| {
            b.iter(|| {
                let mut ch = Chunker::new(&s[..]);
                let mut n = 0;
                while let Ok(Some(c)) = ch.next_chunk() {
                    n += c.len();
                }
                n
            })
        },
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
