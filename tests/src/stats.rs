//! Quantiles of measurements, for the benchmarks' reports.

/// The `q`-quantile (0..=1) of `xs`, interpolated between the two nearest
/// values; NaN for no values.
pub fn quantile(mut xs: Vec<f64>, q: f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    if xs.is_empty() {
        return f64::NAN;
    }
    let pos = q * (xs.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    xs[lo] + (xs[hi] - xs[lo]) * (pos - lo as f64)
}

/// The median of `xs` (interpolated); NaN for no values.
pub fn median(xs: Vec<f64>) -> f64 {
    quantile(xs, 0.5)
}
