//! Two-dimensional principal component analysis, for plotting 384-dimensional prompt vectors.
//!
//! The two leading eigenvectors of the sample covariance are found by power iteration with
//! deflation. The covariance is never formed: `C v = Xᵀ (X v) / (n - 1)` over the centred
//! rows, which costs `O(n d)` per step for `n` rows of dimension `d`.

/// Power-iteration steps at most per component.
const MAX_STEPS: usize = 1000;
/// Stop when the direction moves less than this between steps.
const TOLERANCE: f64 = 1e-10;

/// A fitted 2-D projection.
#[derive(Debug, Clone)]
pub struct Pca2 {
    /// Mean of the fitted rows.
    pub mean: Vec<f64>,
    /// The first and second principal directions (unit length).
    pub components: [Vec<f64>; 2],
    /// Variance along each direction.
    pub variances: [f64; 2],
    /// Total variance of the rows (sum over all dimensions).
    pub total_variance: f64,
}

impl Pca2 {
    /// Fits the projection to `rows` (all of one length); `None` with fewer than two rows or
    /// rows of different lengths.
    pub fn fit(rows: &[&[f32]]) -> Option<Self> {
        let n = rows.len();
        let d = rows.first()?.len();
        if n < 2 || d == 0 || rows.iter().any(|r| r.len() != d) {
            return None;
        }
        let mut mean = vec![0.0; d];
        for row in rows {
            for (m, &x) in mean.iter_mut().zip(row.iter()) {
                *m += x as f64 / n as f64;
            }
        }
        let centred: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| r.iter().zip(&mean).map(|(&x, m)| x as f64 - m).collect())
            .collect();
        let total_variance = centred
            .iter()
            .map(|r| r.iter().map(|x| x * x).sum::<f64>())
            .sum::<f64>()
            / (n - 1) as f64;
        let first = leading(&centred, &[]);
        let second = leading(&centred, std::slice::from_ref(&first.0));
        Some(Self {
            mean,
            components: [first.0, second.0],
            variances: [first.1, second.1],
            total_variance,
        })
    }

    /// Coordinates of `v` along the two components.
    pub fn project(&self, v: &[f32]) -> (f64, f64) {
        let along = |c: &[f64]| {
            v.iter()
                .zip(&self.mean)
                .zip(c)
                .map(|((&x, m), c)| (x as f64 - m) * c)
                .sum()
        };
        (along(&self.components[0]), along(&self.components[1]))
    }

    /// Share of the total variance along each component (0 when there is none).
    pub fn explained(&self) -> [f64; 2] {
        self.variances.map(|v| {
            if self.total_variance > 0.0 {
                v / self.total_variance
            } else {
                0.0
            }
        })
    }
}

/// `C v` for the covariance `C` of the centred rows.
fn covariance_times(rows: &[Vec<f64>], v: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; v.len()];
    for row in rows {
        let t: f64 = row.iter().zip(v).map(|(a, b)| a * b).sum();
        for (o, a) in out.iter_mut().zip(row) {
            *o += t * a;
        }
    }
    let scale = 1.0 / (rows.len() - 1) as f64;
    out.iter_mut().for_each(|o| *o *= scale);
    out
}

/// Removes the parts of `v` along each of the (orthonormal) `found` directions.
fn orthogonalise(v: &mut [f64], found: &[Vec<f64>]) {
    for u in found {
        let t: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
        v.iter_mut().zip(u).for_each(|(a, b)| *a -= t * b);
    }
}

fn normalise(v: &mut [f64]) -> f64 {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    norm
}

/// The leading eigenvector (and eigenvalue) of the covariance restricted to the complement
/// of `found`. The start is deterministic, with every coordinate non-zero, and the sign is
/// fixed (largest coordinate positive) so that plots do not flip between runs.
fn leading(rows: &[Vec<f64>], found: &[Vec<f64>]) -> (Vec<f64>, f64) {
    let d = rows[0].len();
    let mut v: Vec<f64> = (0..d).map(|i| 1.0 + (i as f64 * 0.618).fract()).collect();
    orthogonalise(&mut v, found);
    if normalise(&mut v) == 0.0 {
        return (vec![0.0; d], 0.0);
    }
    let mut value = 0.0;
    for _ in 0..MAX_STEPS {
        let mut next = covariance_times(rows, &v);
        orthogonalise(&mut next, found);
        value = normalise(&mut next);
        if value == 0.0 {
            // Nothing left outside `found`: any orthogonal direction will do.
            return (v, 0.0);
        }
        let moved: f64 = next.iter().zip(&v).map(|(a, b)| (a - b).powi(2)).sum();
        v = next;
        if moved < TOLERANCE {
            break;
        }
    }
    let largest = v
        .iter()
        .copied()
        .max_by(|a, b| a.abs().total_cmp(&b.abs()))
        .unwrap_or(0.0);
    if largest < 0.0 {
        v.iter_mut().for_each(|x| *x = -*x);
    }
    (v, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points on an ellipse with semi-axes 3 and 1, rotated by 30° in the (x, y) plane of a
    /// 4-D space, with a small third axis along z: the components are the rotated axes and the
    /// variances are a²/2·n/(n-1) for a uniform angle grid.
    #[test]
    fn recovers_the_axes_of_a_rotated_ellipse() {
        let n = 360;
        let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
        let rows: Vec<Vec<f32>> = (0..n)
            .map(|i| {
                let t = i as f64 / n as f64 * std::f64::consts::TAU;
                let (a, b) = (3.0 * t.cos(), 1.0 * t.sin());
                let z = 0.1 * (2.0 * t).sin();
                vec![
                    (a * c - b * s + 5.0) as f32,
                    (a * s + b * c - 2.0) as f32,
                    z as f32,
                    7.0,
                ]
            })
            .collect();
        let refs: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
        let pca = Pca2::fit(&refs).unwrap();
        let scale = n as f64 / (n - 1) as f64;
        assert!(
            (pca.variances[0] - 4.5 * scale).abs() < 1e-4,
            "{:?}",
            pca.variances
        );
        assert!(
            (pca.variances[1] - 0.5 * scale).abs() < 1e-4,
            "{:?}",
            pca.variances
        );
        let [u, w] = &pca.components;
        assert!((u[0] - c).abs() < 1e-4 && (u[1] - s).abs() < 1e-4, "{u:?}");
        assert!(
            (w[0].abs() - s).abs() < 1e-4 && (w[1].abs() - c).abs() < 1e-4,
            "{w:?}"
        );
        assert!(u[3].abs() < 1e-9 && w[3].abs() < 1e-9);
        let total = (4.5 + 0.5 + 0.005) * scale;
        assert!((pca.total_variance - total).abs() < 1e-4);
        let explained = pca.explained();
        assert!((explained[0] - 4.5 / 5.005).abs() < 1e-4);
        // The centre projects to the origin, a point on the major axis to (3, 0).
        let (x, y) = pca.project(&[5.0, -2.0, 0.0, 7.0]);
        assert!(x.abs() < 1e-5 && y.abs() < 1e-5);
        let (x, y) = pca.project(&[(3.0 * c + 5.0) as f32, (3.0 * s - 2.0) as f32, 0.0, 7.0]);
        assert!((x - 3.0).abs() < 1e-4 && y.abs() < 1e-4, "{x} {y}");
    }

    #[test]
    fn degenerate_inputs() {
        assert!(Pca2::fit(&[]).is_none());
        assert!(Pca2::fit(&[&[1.0, 2.0]]).is_none());
        assert!(Pca2::fit(&[&[1.0, 2.0], &[1.0]]).is_none());
        // Identical rows: no variance, still a projection (to the origin).
        let pca = Pca2::fit(&[&[1.0, 2.0], &[1.0, 2.0]]).unwrap();
        assert_eq!(pca.variances, [0.0, 0.0]);
        assert_eq!(pca.project(&[1.0, 2.0]), (0.0, 0.0));
        assert_eq!(pca.explained(), [0.0, 0.0]);
    }
}
