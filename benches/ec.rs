//! Erasure coding of one stripe at 10+6 with 1 MiB shards, on one core: the Reed–Solomon code
//! alone, and storgo's stripe functions (which also check every block against its address).
//! `cargo bench --bench ec` (`just bench-ec`). Throughput is data bytes (10 MiB a stripe).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{RngCore, SeedableRng};
use storgo::content::stripe::{self, Shape};
use storgo::content::BlockAddress;

const K: usize = 10;
const M: usize = 6;
const SHARD: usize = 1 << 20;

fn bench(c: &mut Criterion) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let blocks: Vec<Vec<u8>> = (0..K)
        .map(|_| {
            let mut v = vec![0u8; SHARD];
            rng.fill_bytes(&mut v);
            v
        })
        .collect();
    let shape = Shape::new(K as u8, M as u8).expect("10+6");
    let listed: Vec<(BlockAddress, u32)> = blocks
        .iter()
        .map(|b| (BlockAddress::of(b), b.len() as u32))
        .collect();
    let data = stripe::plan(shape, &listed).expect("plan").remove(0);
    let ordered: Vec<&[u8]> = data
        .iter()
        .map(|d| {
            blocks[listed
                .iter()
                .position(|(a, _)| *a == d.address)
                .expect("listed")]
            .as_slice()
        })
        .collect();
    let parity = stripe::parity(shape, &data, &ordered).expect("parity");
    let map = stripe::map(
        shape,
        BlockAddress::of(b"root"),
        vec![(
            data.clone(),
            parity.iter().map(|p| BlockAddress::of(p)).collect(),
        )],
    );

    let mut g = c.benchmark_group("ec 10+6, 1 MiB shards");
    g.throughput(Throughput::Bytes((K * SHARD) as u64));
    g.sample_size(20);
    g.bench_function("encode: the code alone", |b| {
        b.iter(|| reed_solomon_simd::encode(K, M, &ordered).expect("encode"))
    });
    g.bench_function(
        "encode: stripe::parity (checks each data block's address)",
        |b| b.iter(|| stripe::parity(shape, &data, &ordered).expect("parity")),
    );
    // The worst loss: six data blocks gone, rebuilt from four data and six parity blocks.
    let originals: Vec<(usize, &[u8])> = (M..K).map(|i| (i, ordered[i])).collect();
    let recovery: Vec<(usize, &[u8])> = parity
        .iter()
        .enumerate()
        .map(|(j, p)| (j, p.as_slice()))
        .collect();
    g.bench_function("decode 6 lost data blocks: the code alone", |b| {
        b.iter(|| {
            reed_solomon_simd::decode(K, M, originals.iter().copied(), recovery.iter().copied())
                .expect("decode")
        })
    });
    let have: Vec<(usize, &[u8])> = originals
        .iter()
        .copied()
        .chain(recovery.iter().map(|&(j, p)| (K + j, p)))
        .collect();
    g.bench_function(
        "decode 6 lost data blocks: stripe::rebuild (checks in and out)",
        |b| b.iter(|| stripe::rebuild(&map, 0, &have).expect("rebuild")),
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
