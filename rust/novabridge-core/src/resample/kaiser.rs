//! The Kaiser window (Kaiser & Schafer's design formulas).

/// The zeroth-order modified Bessel function of the first kind, by its power series (converges for all x).
pub(crate) fn bessel_i0(x: f64) -> f64 {
    let quarter_x2 = x * x / 4.0;
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..200 {
        let k = f64::from(k);
        term *= quarter_x2 / (k * k);
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

/// The window's shape parameter for a stopband attenuation of `attenuation_db` dB.
pub(crate) fn beta(attenuation_db: f64) -> f64 {
    if attenuation_db > 50.0 {
        0.1102 * (attenuation_db - 8.7)
    } else if attenuation_db >= 21.0 {
        0.5842 * (attenuation_db - 21.0).powf(0.4) + 0.07886 * (attenuation_db - 21.0)
    } else {
        0.0
    }
}

/// The transition width, as a fraction of the sample rate, that a Kaiser low-pass of `len` taps achieves at
/// `attenuation_db` dB.
pub(crate) fn transition_width(attenuation_db: f64, len: usize) -> f64 {
    (attenuation_db - 7.95) / (14.36 * (len as f64 - 1.0))
}

/// The window's value at tap `n` of `len`.
pub(crate) fn window(n: usize, len: usize, beta: f64) -> f64 {
    let centred = 2.0 * n as f64 / (len as f64 - 1.0) - 1.0;
    bessel_i0(beta * (1.0 - centred * centred).max(0.0).sqrt()) / bessel_i0(beta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bessel_matches_known_values() {
        assert!((bessel_i0(0.0) - 1.0).abs() < 1e-15);
        assert!((bessel_i0(1.0) - 1.266_065_877_752_008_4).abs() < 1e-12);
        assert!((bessel_i0(10.0) - 2_815.716_628_466_254).abs() < 1e-8);
    }

    #[test]
    fn window_is_symmetric_and_peaks_in_the_middle() {
        let len = 31;
        let b = beta(100.0);
        for n in 0..len {
            assert!((window(n, len, b) - window(len - 1 - n, len, b)).abs() < 1e-12);
        }
        assert!((window(15, len, b) - 1.0).abs() < 1e-12);
        assert!(window(0, len, b) < 1e-3);
    }
}
