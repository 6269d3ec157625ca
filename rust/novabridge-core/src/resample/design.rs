//! The low-pass behind a resampler: rates, quality presets and the polyphase coefficient table.

use super::kaiser;

/// The rates a resampler converts between.
pub const SUPPORTED_RATES: [u32; 8] = [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000];

/// A rate outside [`SUPPORTED_RATES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsupportedRate(pub u32);

impl std::fmt::Display for UnsupportedRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unsupported sample rate {}; supported: {SUPPORTED_RATES:?}", self.0)
    }
}

impl std::error::Error for UnsupportedRate {}

/// Fraction of the lower Nyquist frequency kept flat (within 0.1 dB).
const PASSBAND: f64 = 0.85;

/// What a resampler trades delay for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quality {
    /// At most 2 ms of algorithmic delay, 100 dB stopband: a 20 ms real-time hop.
    Voice,
    /// About 6 ms of delay, 140 dB stopband.
    High,
}

impl Quality {
    fn attenuation_db(self) -> f64 {
        match self {
            Self::Voice => 100.0,
            Self::High => 140.0,
        }
    }

    /// The filter's span in input time: twice the delay target, since a linear-phase filter delays by half.
    fn span_seconds(self) -> f64 {
        match self {
            Self::Voice => 0.004,
            Self::High => 0.012,
        }
    }
}

pub(crate) struct Design {
    pub up: usize,
    pub down: usize,
    /// Coefficients per phase.
    pub taps: usize,
    /// `up` phases of `taps` coefficients, each ordered oldest input first, scaled by `up` so that the
    /// zero-stuffed signal keeps its level.
    pub phases: Vec<f32>,
    /// The filter's group delay in input samples.
    pub delay_in: f64,
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Design {
    pub fn new(in_rate: u32, out_rate: u32, quality: Quality) -> Self {
        let divisor = gcd(in_rate, out_rate);
        let up = (out_rate / divisor) as usize;
        let down = (in_rate / divisor) as usize;
        let taps = ((quality.span_seconds() * f64::from(in_rate)).round() as usize).max(4);
        let len = up * taps;
        let up_rate = f64::from(in_rate) * up as f64;
        let nyquist = f64::from(in_rate.min(out_rate)) / 2.0;
        let attenuation = quality.attenuation_db();
        let transition = kaiser::transition_width(attenuation, len) * up_rate;
        // The passband edge sits at PASSBAND of the lower Nyquist frequency; the cutoff (half-amplitude
        // point) half a transition above it, with a little margin for the design formula's approximation.
        let cutoff = (PASSBAND * nyquist + 0.55 * transition).min(nyquist);
        let beta = kaiser::beta(attenuation);
        let centre = (len as f64 - 1.0) / 2.0;
        let normalised = 2.0 * cutoff / up_rate;
        let prototype: Vec<f64> = (0..len)
            .map(|n| {
                let x = normalised * (n as f64 - centre);
                let sinc = if x == 0.0 { 1.0 } else { (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x) };
                normalised * sinc * kaiser::window(n, len, beta)
            })
            .collect();
        let gain = up as f64 / prototype.iter().sum::<f64>();
        let mut phases = vec![0f32; len];
        for phase in 0..up {
            for age in 0..taps {
                // Tap `phase + age * up` multiplies the input `age` samples old; store oldest first.
                phases[phase * taps + (taps - 1 - age)] = (prototype[phase + age * up] * gain) as f32;
            }
        }
        Self { up, down, taps, phases, delay_in: centre / up as f64 }
    }
}
