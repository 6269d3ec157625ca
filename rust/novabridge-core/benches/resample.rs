//! The resampler against rubato's sinc resampler at a matched delay, 20 ms frames, at the Rust level (no Python).
//! Run: `cargo bench -p novabridge-core --bench resample`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use novabridge_core::resample::{Quality, Resampler};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, FixedAsync, Resampler as _, SincInterpolationParameters, SincInterpolationType, WindowFunction};

const CONVERSIONS: [(u32, u32); 4] = [(16000, 24000), (24000, 16000), (48000, 16000), (16000, 48000)];

fn resample_20ms(c: &mut Criterion) {
    for (in_rate, out_rate) in CONVERSIONS {
        let frame = in_rate as usize / 50;
        let input: Vec<f32> = (0..frame as u16).map(|n| (f32::from(n) * 0.05).sin() * 0.3).collect();
        let mut group = c.benchmark_group(format!("resample 20 ms {in_rate}->{out_rate}"));

        let mut ours = Resampler::new(in_rate, out_rate, Quality::Voice).expect("supported rates");
        let mut out = Vec::with_capacity(4 * frame);
        group.bench_function("novabridge voice (2 ms)", |b| {
            b.iter(|| {
                out.clear();
                ours.process(black_box(&input), &mut out);
                out.len()
            });
        });

        // rubato's sinc filter delays by half its length in input samples: 2 ms at the input rate.
        let sinc_len = in_rate as usize / 250;
        let window = WindowFunction::BlackmanHarris2;
        let parameters = SincInterpolationParameters {
            sinc_len,
            f_cutoff: None, // rubato picks the cutoff for the length and window
            interpolation: SincInterpolationType::Linear,
            oversampling_factor: 256,
            window,
        };
        let ratio = f64::from(out_rate) / f64::from(in_rate);
        let mut theirs = Async::<f32>::new_sinc(ratio, 1.0, &parameters, frame, 1, FixedAsync::Input)
            .expect("valid rubato parameters");
        let mut theirs_out = vec![0f32; theirs.output_frames_max()];
        let capacity = theirs_out.len();
        group.bench_function("rubato sinc, linear, matched delay", |b| {
            b.iter(|| {
                let source = InterleavedSlice::new(black_box(&input[..]), 1, frame).expect("mono frame");
                let mut sink = InterleavedSlice::new_mut(&mut theirs_out[..], 1, capacity).expect("mono buffer");
                theirs.process_into_buffer(&source, &mut sink, None).expect("rubato processes the frame")
            });
        });
        group.finish();
    }
}

criterion_group!(benches, resample_20ms);
criterion_main!(benches);
