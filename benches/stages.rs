//! Stage benchmarks over the real CloudTrail files in `tests/data`: inflate, decode into Arrow,
//! encode Parquet. `cargo bench --bench stages`.

use std::io::Write;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use trailql_ingest::decompress::Inflater;
use trailql_ingest::{BatchBuilder, Decoder};
use trailql_parquet::{WriterOptions, encode_sorted, writer_properties};

/// All real sample files as one `{"Records":[...]}` document, about 4 MB.
fn sample() -> Vec<u8> {
    let mut events: Vec<serde_json::Value> = Vec::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                match serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap() {
                    serde_json::Value::Array(items) => events.extend(items),
                    serde_json::Value::Object(mut o) => {
                        if let Some(serde_json::Value::Array(items)) = o.remove("Records") {
                            events.extend(items);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    serde_json::to_vec(&serde_json::json!({ "Records": events })).unwrap()
}

fn stages(c: &mut Criterion) {
    let json = sample();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(&json).unwrap();
    let gz = gz.finish().unwrap();

    let mut group = c.benchmark_group("stages");
    group.throughput(Throughput::Bytes(json.len() as u64));
    group.sample_size(20);

    let mut inflater = Inflater::new();
    let mut out = Vec::new();
    group.bench_function("inflate (libdeflate)", |b| {
        b.iter(|| inflater.gunzip(&gz, &mut out, 1 << 30).unwrap())
    });

    let mut decoder = Decoder::new();
    group.bench_function("decode to Arrow (simd-json tape)", |b| {
        b.iter(|| {
            let mut builder = BatchBuilder::new(8192);
            decoder.decode_file("sample", &json, &mut builder).unwrap();
            builder.flush()
        })
    });

    let mut builder = BatchBuilder::new(8192);
    decoder.decode_file("sample", &json, &mut builder).unwrap();
    let batches = builder.flush();
    let props = writer_properties(&WriterOptions::default());
    group.bench_function("encode Parquet (sorted, zstd)", |b| {
        b.iter(|| {
            encode_sorted(&batches, &props, 64 * 1024)
                .ok()
                .unwrap()
                .bytes
                .len()
        })
    });
    group.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
