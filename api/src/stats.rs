//! The statistics of the `/v1` results: a conversion rate's 95 % Wilson score interval, and a
//! two-proportion z-test of a variant against the control (two-sided p-value). Chosen because
//! they are what A/B dashboards report (Optimizely's and GrowthBook's frequentist modes), behave
//! at 0 and 100 % (Wilson, unlike the normal interval), and need no prior.

/// z for a two-sided 95 % interval.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// The Wilson score interval of `successes` out of `trials` at `z` (`None` without trials).
pub fn wilson(successes: u64, trials: u64, z: f64) -> Option<(f64, f64)> {
    if trials == 0 {
        return None;
    }
    let n = trials as f64;
    let p = (successes.min(trials)) as f64 / n;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

/// A two-proportion z-test (pooled): `(z, two-sided p-value)` of rate `s1/n1` against
/// `s2/n2`; `None` when either has no trials or the pooled rate is 0 or 1 (no variance).
pub fn two_proportion_z_test(s1: u64, n1: u64, s2: u64, n2: u64) -> Option<(f64, f64)> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let (p1, p2) = (s1.min(n1) as f64 / n1f, s2.min(n2) as f64 / n2f);
    let pooled = (s1.min(n1) + s2.min(n2)) as f64 / (n1f + n2f);
    let variance = pooled * (1.0 - pooled) * (1.0 / n1f + 1.0 / n2f);
    if variance <= 0.0 {
        return None;
    }
    let z = (p1 - p2) / variance.sqrt();
    Some((z, 2.0 * (1.0 - normal_cdf(z.abs()))))
}

/// The standard normal CDF, from `erfc` (the `libm` crate: the Rust port of musl's libm, whose
/// `erfc` is accurate to about 1 ulp; std has no `erf`).
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Python's own computation (`statistics.NormalDist`, the standard library), the reference.
    fn python(expression: &str) -> f64 {
        let output = Command::new("python3")
            .args([
                "-c",
                &format!(
                    "from statistics import NormalDist; import math; print(repr({expression}))"
                ),
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn the_normal_cdf_matches_pythons_over_its_range() {
        for x in [
            -8.0, -4.5, -3.0, -1.96, -0.7, -0.2, 0.0, 0.3, 0.49, 0.51, 1.0, 2.5, 3.9, 4.1, 6.0,
        ] {
            let ours = normal_cdf(x);
            let reference = python(&format!("NormalDist().cdf({x})"));
            assert!(
                (ours - reference).abs() <= 1e-12 + reference.abs() * 1e-10,
                "cdf({x}): {ours} against {reference}"
            );
        }
    }

    #[test]
    fn wilson_and_the_z_test_match_a_reference_computation() {
        // Wilson, written out in Python from its definition.
        let reference = |s: u64, n: u64, side: f64| {
            python(&format!(
                "(lambda p, n, z: ((p + z*z/(2*n)) + {side} * z * math.sqrt(p*(1-p)/n + z*z/(4*n*n))) / (1 + z*z/n))({s}/{n}, {n}, NormalDist().inv_cdf(0.975))"
            ))
        };
        for (s, n) in [(0, 10), (10, 10), (45, 1000), (120, 400)] {
            let (lo, hi) = wilson(s, n, Z_95).unwrap();
            assert!(
                (lo - reference(s, n, -1.0).max(0.0)).abs() < 1e-9,
                "{s}/{n} low"
            );
            assert!(
                (hi - reference(s, n, 1.0).min(1.0)).abs() < 1e-9,
                "{s}/{n} high"
            );
        }
        assert_eq!(wilson(0, 0, Z_95), None);
        // The z-test against Python's normal distribution.
        let (z, p) = two_proportion_z_test(120, 1000, 90, 1000).unwrap();
        let pooled = 210.0 / 2000.0;
        let z_ref = (0.12 - 0.09) / (pooled * (1.0 - pooled) * (2.0 / 1000.0_f64)).sqrt();
        assert!((z - z_ref).abs() < 1e-12);
        let p_ref = python(&format!("2 * (1 - NormalDist().cdf({z_ref}))"));
        assert!((p - p_ref).abs() < 1e-12, "p {p} against {p_ref}");
        assert!(p < 0.05, "a significant difference: {p}");
        assert_eq!(two_proportion_z_test(0, 10, 0, 10), None);
        assert_eq!(two_proportion_z_test(1, 0, 0, 10), None);
    }
}
