//! The quantiles the benchmarks report.

use tenancy_tests::stats::{median, quantile};

#[test]
fn quantiles_interpolate_between_the_nearest_values() {
    let xs = vec![4.0, 1.0, 3.0, 2.0];
    assert_eq!(quantile(xs.clone(), 0.0), 1.0);
    assert_eq!(quantile(xs.clone(), 0.25), 1.75);
    assert_eq!(median(xs.clone()), 2.5);
    assert_eq!(quantile(xs, 1.0), 4.0);
    assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
    assert!(median(Vec::new()).is_nan());
}
