//! The arithmetic of reports: percentiles, power-of-two histograms, timeline buckets.

/// The `p`-th percentile (0 < p ≤ 100) of `sorted` by nearest rank: the smallest value with at
/// least p % of the values at or below it. `None` for no values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Counts of `values` in power-of-two buckets `[2^k, 2^(k+1))`, from the lowest non-empty bucket
/// to the highest (values below 1 go to `[0, 1)`): fault costs span several orders of magnitude
/// (a mapped zero page against a copy under contention), equal-width buckets would put nearly all
/// of them in the first.
pub fn pow2_histogram(values: &[f64]) -> Vec<(f64, f64, u64)> {
    let bucket = |v: f64| if v < 1.0 { 0 } else { v.log2().floor() as i32 + 1 };
    let (Some(lo), Some(hi)) = (values.iter().map(|&v| bucket(v)).min(), values.iter().map(|&v| bucket(v)).max()) else {
        return Vec::new();
    };
    let mut counts = vec![0u64; (hi - lo + 1) as usize];
    for &v in values {
        counts[(bucket(v) - lo) as usize] += 1;
    }
    let edge = |b: i32| if b == 0 { 0.0 } else { 2f64.powi(b - 1) };
    counts.into_iter().enumerate().map(|(i, n)| (edge(lo + i as i32), edge(lo + i as i32 + 1), n)).collect()
}

/// A bucket width for spreading `span` axis units over at most `max_buckets` buckets: 1, 2 or 5
/// times a power of ten, so bucket edges read well in a table.
pub fn nice_width(span: f64, max_buckets: usize) -> f64 {
    let raw = span / max_buckets.max(1) as f64;
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * mag).find(|w| *w >= raw).unwrap_or(10.0 * mag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 1.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 90.0), Some(3.0));
    }

    #[test]
    fn histogram_buckets_are_powers_of_two_without_gaps() {
        let h = pow2_histogram(&[0.5, 3.0, 3.9, 40.0]);
        assert_eq!(h, [(0.0, 1.0, 1), (1.0, 2.0, 0), (2.0, 4.0, 2), (4.0, 8.0, 0), (8.0, 16.0, 0), (16.0, 32.0, 0), (32.0, 64.0, 1)]);
        assert_eq!(pow2_histogram(&[1000.0, 1023.0]), [(512.0, 1024.0, 2)]);
        assert!(pow2_histogram(&[]).is_empty());
    }

    #[test]
    fn widths_are_1_2_5_steps() {
        assert_eq!(nice_width(100.0, 50), 2.0);
        assert_eq!(nice_width(16490.0, 40), 500.0);
        assert_eq!(nice_width(0.35, 40), 0.01);
        assert_eq!(nice_width(0.0, 40), 1.0);
    }
}
