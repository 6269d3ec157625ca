//! The streaming resampler.

use super::design::{Design, Quality, SUPPORTED_RATES, UnsupportedRate};

pub struct Resampler {
    in_rate: u32,
    out_rate: u32,
    design: Design,
    /// The last `taps` inputs, stored twice over so that the window is always one contiguous slice.
    history: Vec<f32>,
    /// Where the next input goes; the window of the last `taps` inputs is `history[next..next + taps]`.
    next: usize,
    /// The phase of the next output, in units of the up-sampled rate past the newest input.
    phase: usize,
    dot: Dot,
}

impl Resampler {
    pub fn new(in_rate: u32, out_rate: u32, quality: Quality) -> Result<Self, UnsupportedRate> {
        for rate in [in_rate, out_rate] {
            if !SUPPORTED_RATES.contains(&rate) {
                return Err(UnsupportedRate(rate));
            }
        }
        let design = Design::new(in_rate, out_rate, quality);
        let history = vec![0.0; 2 * design.taps];
        Ok(Self { in_rate, out_rate, design, history, next: 0, phase: 0, dot: pick_dot() })
    }

    #[must_use]
    pub fn in_rate(&self) -> u32 {
        self.in_rate
    }

    #[must_use]
    pub fn out_rate(&self) -> u32 {
        self.out_rate
    }

    /// The algorithmic delay in output samples (fractional: a linear-phase filter's centre may fall between).
    #[must_use]
    pub fn delay_samples(&self) -> f64 {
        self.design.delay_in * f64::from(self.out_rate) / f64::from(self.in_rate)
    }

    /// The algorithmic delay in seconds.
    #[must_use]
    pub fn delay_seconds(&self) -> f64 {
        self.design.delay_in / f64::from(self.in_rate)
    }

    /// How many outputs the next `input_len` inputs produce, exactly: one for each up-sampled instant
    /// `phase + k * down` before `input_len * up`.
    #[must_use]
    pub fn output_len(&self, input_len: usize) -> usize {
        let (up, down) = (self.design.up, self.design.down);
        (input_len * up).saturating_sub(self.phase).div_ceil(down)
    }

    /// Resamples `input`, appending to `output`.
    pub fn process(&mut self, input: &[f32], output: &mut Vec<f32>) {
        let Design { up, down, taps, ref phases, .. } = self.design;
        output.reserve(self.output_len(input.len()));
        for &sample in input {
            self.history[self.next] = sample;
            self.history[self.next + taps] = sample;
            self.next = (self.next + 1) % taps;
            let window = &self.history[self.next..self.next + taps];
            while self.phase < up {
                let coefficients = &phases[self.phase * taps..(self.phase + 1) * taps];
                output.push((self.dot)(coefficients, window));
                self.phase += down;
            }
            self.phase -= up;
        }
    }

    /// Resamples 16-bit PCM, saturating (never wrapping) on overshoot.
    pub fn process_i16(&mut self, input: &[i16], output: &mut Vec<i16>) {
        let scaled: Vec<f32> = input.iter().map(|&s| f32::from(s)).collect();
        let mut out = Vec::with_capacity(self.output_len(input.len()));
        self.process(&scaled, &mut out);
        output.extend(out.iter().map(|&y| saturate(y)));
    }

    /// Pushes enough silence through to release what the delay holds back, appending it to `output`.
    pub fn flush(&mut self, output: &mut Vec<f32>) {
        let silence = vec![0.0; self.design.taps];
        self.process(&silence, output);
    }

    /// [`Resampler::flush`] for 16-bit PCM.
    pub fn flush_i16(&mut self, output: &mut Vec<i16>) {
        self.process_i16(&vec![0; self.design.taps], output);
    }

    /// Forgets all input, as if new.
    pub fn reset(&mut self) {
        self.history.fill(0.0);
        self.next = 0;
        self.phase = 0;
    }
}

fn saturate(sample: f32) -> i16 {
    sample.round().clamp(-32768.0, 32767.0) as i16
}

/// A dot product of two equally long slices.
type Dot = fn(&[f32], &[f32]) -> f32;

/// The fastest dot product this CPU runs. Every variant adds in the same order, lane by lane, so the output is
/// identical to the last bit whichever is picked.
fn pick_dot() -> Dot {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        return dot_avx2;
    }
    dot_lanes
}

#[cfg(target_arch = "x86_64")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    #[target_feature(enable = "avx2")]
    fn widened(a: &[f32], b: &[f32]) -> f32 {
        dot_lanes(a, b)
    }
    // SAFETY: `pick_dot` hands out this variant only after detecting AVX2 on the running CPU.
    unsafe { widened(a, b) }
}

/// Sixteen independent accumulators (two AVX or four SSE registers): enough to keep the adds busy without
/// reassociating one long dependency chain, which the compiler may not do for floats.
#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let split = a.len() / LANES * LANES;
    for (x, y) in a[..split].chunks_exact(LANES).zip(b[..split].chunks_exact(LANES)) {
        for lane in 0..LANES {
            acc[lane] += x[lane] * y[lane];
        }
    }
    let tail: f32 = a[split..].iter().zip(&b[split..]).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests;
