use std::f64::consts::PI;

use super::*;
use crate::resample::UnsupportedRate;

fn tone(rate: u32, freq: f64, len: usize, amplitude: f64) -> Vec<f32> {
    (0..len).map(|n| (amplitude * (2.0 * PI * freq * n as f64 / f64::from(rate)).sin()) as f32).collect()
}

fn run(resampler: &mut Resampler, input: &[f32], chunks: &[usize]) -> Vec<f32> {
    let mut out = Vec::new();
    let mut at = 0;
    for &len in chunks.iter().cycle() {
        if at >= input.len() {
            break;
        }
        let end = (at + len).min(input.len());
        let expected = resampler.output_len(end - at);
        let before = out.len();
        resampler.process(&input[at..end], &mut out);
        assert_eq!(out.len() - before, expected, "output_len must be exact");
        at = end;
    }
    out
}

/// Level in dB of `signal` relative to a sine of `freq` with `amplitude`, fitted by least squares.
fn snr_db(signal: &[f32], rate: u32, freq: f64, amplitude: f64, delay: f64) -> f64 {
    let mut err = 0.0;
    let mut power = 0.0;
    for (n, &y) in signal.iter().enumerate() {
        let expected = amplitude * (2.0 * PI * freq * (n as f64 - delay) / f64::from(rate)).sin();
        err += (f64::from(y) - expected).powi(2);
        power += expected * expected;
    }
    10.0 * (power / err).log10()
}

fn rms(signal: &[f32]) -> f64 {
    (signal.iter().map(|&y| f64::from(y).powi(2)).sum::<f64>() / signal.len() as f64).sqrt()
}

#[test]
fn unsupported_rates_are_refused() {
    assert_eq!(Resampler::new(16000, 12345, Quality::Voice).err(), Some(UnsupportedRate(12345)));
    assert_eq!(Resampler::new(96000, 16000, Quality::Voice).err(), Some(UnsupportedRate(96000)));
}

#[test]
fn output_is_identical_however_the_input_is_split() {
    for (in_rate, out_rate) in [(16000, 24000), (24000, 16000), (48000, 16000), (16000, 48000), (44100, 16000)] {
        let input = tone(in_rate, 1234.5, 4000, 0.5);
        let whole = run(&mut Resampler::new(in_rate, out_rate, Quality::Voice).unwrap(), &input, &[input.len()]);
        for chunks in [&[1usize][..], &[320, 7, 1000, 3], &[in_rate as usize / 50]] {
            let split = run(&mut Resampler::new(in_rate, out_rate, Quality::Voice).unwrap(), &input, chunks);
            assert_eq!(split, whole, "{in_rate}->{out_rate} split as {chunks:?}");
        }
        let expected = (input.len() as u64 * u64::from(out_rate)).div_ceil(u64::from(in_rate)) as usize;
        assert!(whole.len().abs_diff(expected) <= 1, "{} vs {expected}", whole.len());
    }
}

#[test]
fn every_20ms_call_returns_what_its_input_implies_within_one() {
    for (in_rate, out_rate) in [(16000u32, 24000u32), (24000, 16000), (48000, 16000), (44100, 24000)] {
        let mut resampler = Resampler::new(in_rate, out_rate, Quality::Voice).unwrap();
        let frame = in_rate as usize / 50;
        let implied = frame as f64 * f64::from(out_rate) / f64::from(in_rate);
        let mut out = Vec::new();
        for _ in 0..50 {
            let before = out.len();
            resampler.process(&vec![0.1; frame], &mut out);
            assert!(((out.len() - before) as f64 - implied).abs() <= 1.0);
        }
    }
}

#[test]
fn a_1khz_tone_comes_out_clean() {
    for (quality, floor_db) in [(Quality::Voice, 90.0), (Quality::High, 120.0)] {
        for (in_rate, out_rate) in [(16000, 24000), (24000, 16000), (48000, 16000), (16000, 48000)] {
            let mut resampler = Resampler::new(in_rate, out_rate, quality).unwrap();
            let out = run(&mut resampler, &tone(in_rate, 1000.0, in_rate as usize, 0.5), &[in_rate as usize / 50]);
            let settled = resampler.delay_samples().ceil() as usize * 2 + 10;
            let delay = resampler.delay_samples();
            let tail = &out[settled..];
            let shifted: Vec<f32> = tail.to_vec();
            let snr = snr_db(&shifted, out_rate, 1000.0, 0.5, delay - settled as f64);
            assert!(snr >= floor_db, "{quality:?} {in_rate}->{out_rate}: SNR {snr:.1} dB");
        }
    }
}

#[test]
fn the_passband_is_flat_to_085_of_the_lower_nyquist() {
    for (in_rate, out_rate) in [(16000, 24000), (24000, 16000), (48000, 16000)] {
        let nyquist = f64::from(in_rate.min(out_rate)) / 2.0;
        for fraction in [0.1, 0.5, 0.85] {
            let freq = nyquist * fraction;
            let mut resampler = Resampler::new(in_rate, out_rate, Quality::Voice).unwrap();
            let out = run(&mut resampler, &tone(in_rate, freq, in_rate as usize, 0.5), &[320]);
            let settled = &out[out.len() / 4..];
            let gain_db = 20.0 * (rms(settled) / (0.5 / 2f64.sqrt())).log10();
            assert!(gain_db.abs() <= 0.1, "{in_rate}->{out_rate} at {freq} Hz: {gain_db:.3} dB");
        }
    }
}

#[test]
fn tones_above_the_new_nyquist_are_rejected_when_downsampling() {
    for (quality, floor_db) in [(Quality::Voice, 100.0), (Quality::High, 120.0)] {
        for (in_rate, out_rate, freq) in [(24000, 16000, 9000.0), (48000, 16000, 10000.0), (48000, 16000, 20000.0)] {
            let mut resampler = Resampler::new(in_rate, out_rate, quality).unwrap();
            let out = run(&mut resampler, &tone(in_rate, freq, in_rate as usize, 1.0), &[480]);
            let level_db = 20.0 * (rms(&out[out.len() / 4..]) / (1.0 / 2f64.sqrt())).log10();
            assert!(level_db <= -floor_db, "{quality:?} {in_rate}->{out_rate} at {freq} Hz: {level_db:.1} dB");
        }
    }
}

#[test]
fn voice_delay_is_at_most_2ms_and_reported_exactly() {
    for (in_rate, out_rate) in [(16000, 24000), (24000, 16000), (48000, 16000), (16000, 48000)] {
        let mut resampler = Resampler::new(in_rate, out_rate, Quality::Voice).unwrap();
        assert!(resampler.delay_seconds() <= 0.002, "{in_rate}->{out_rate}: {} s", resampler.delay_seconds());
        // A band-limited impulse (a windowed sinc at the lower rate) peaks at the reported delay.
        let mut input = vec![0f32; 2000];
        input[0] = 1.0;
        let mut out = Vec::new();
        resampler.process(&input, &mut out);
        // The response is the filter itself: its centre of mass is the group delay.
        let (num, den) = out
            .iter()
            .enumerate()
            .fold((0.0, 0.0), |(num, den), (n, &y)| (num + n as f64 * f64::from(y), den + f64::from(y)));
        let measured = num / den;
        assert!((measured - resampler.delay_samples()).abs() < 0.01, "{measured} vs {}", resampler.delay_samples());
    }
}

#[test]
fn int16_saturates_instead_of_wrapping() {
    let mut resampler = Resampler::new(16000, 24000, Quality::Voice).unwrap();
    // A full-scale square wave overshoots (Gibbs) after filtering.
    let input: Vec<i16> = (0..1600).map(|n| if (n / 20) % 2 == 0 { i16::MAX } else { i16::MIN }).collect();
    let mut out = Vec::new();
    resampler.process_i16(&input, &mut out);
    assert!(out.contains(&i16::MAX) && out.contains(&i16::MIN), "the overshoot must clip at the rails");
    // Wrapping would put large values of the wrong sign next to the rails.
    for pair in out.windows(2) {
        assert!((i32::from(pair[0]) - i32::from(pair[1])).abs() < 40000, "{pair:?}");
    }
}

#[test]
fn reset_forgets_and_flush_releases_the_tail() {
    let mut resampler = Resampler::new(24000, 16000, Quality::Voice).unwrap();
    let input = tone(24000, 500.0, 480, 0.5);
    let mut first = Vec::new();
    resampler.process(&input, &mut first);
    resampler.reset();
    let mut again = Vec::new();
    resampler.process(&input, &mut again);
    assert_eq!(first, again);
    let mut tail = Vec::new();
    resampler.flush(&mut tail);
    assert!(tail.len() as f64 >= resampler.delay_samples());
    assert!(rms(&tail) > 0.01, "the held-back part of the tone comes out");
}
