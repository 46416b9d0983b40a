//! The few-row product path: a product whose `a` has a handful of contiguous rows (a decoding
//! step, an attention query) runs as dot products that read each weight once, the
//! memory-bound case where `gemm`'s packing costs as much as the arithmetic.

use rayon::prelude::*;

use super::matmul::View;
use crate::models::simd;

/// Products whose `a` has at most this many rows (a decoder step's tokens, an attention
/// query) run as dot products ([`simd::dot_products`]) when both operands allow it.
pub(super) const SKINNY_ROWS: usize = 8;

/// [`matmul`] for an `a` of few, contiguous rows and a `b` of contiguous columns (a
/// weight matrix in PyTorch's layout read as `W^T`, keys read as `K^T`): the columns of `b`
/// are split between the threads, each computes its columns' dot products with every row of
/// `a` ([`simd::dot_products`]), and the results are added into `dst` (operands checked by
/// [`matmul`]).
pub(super) fn skinny_matmul(
    dst: &mut [f32],
    dst_rs: usize,
    a: View,
    b: View,
    accumulate: bool,
    threads: usize,
) {
    let (rows, cols) = (a.rows, b.cols);
    if rows == 0 || cols == 0 {
        return;
    }
    let per_task = cols.div_ceil(threads.max(1));
    // Column-major results: `products[j * rows + i]` is `dst[i][j]`.
    let mut products = vec![0f32; rows * cols];
    let task = |(t, out): (usize, &mut [f32])| {
        let w = &b.data[t * per_task * b.cs..];
        simd::dot_products(a.data, a.rs, w, b.cs, a.cols, rows, out);
    };
    if threads > 1 {
        products
            .par_chunks_mut(per_task * rows)
            .enumerate()
            .for_each(task);
    } else {
        task((0, &mut products));
    }
    for i in 0..rows {
        // In bounds: the destination's reach was checked by `matmul`.
        let row = &mut dst[i * dst_rs..][..cols];
        let column = products.iter().skip(i).step_by(rows);
        for (d, &p) in row.iter_mut().zip(column) {
            *d = if accumulate { *d + p } else { p };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::matmul::{matmul, View};

    /// The dot-product path agrees with `gemm` on a strided product, accumulating or not.
    #[test]
    fn skinny_products_match_gemm() {
        let (rows, depth, cols) = (3, 40, 70);
        let a: Vec<f32> = (0..rows * 50)
            .map(|i| (i % 11) as f32 / 3.0 - 1.5)
            .collect();
        let b: Vec<f32> = (0..cols * 45).map(|i| (i % 7) as f32 / 2.0 - 1.0).collect();
        let a = View {
            data: &a,
            rows,
            cols: depth,
            rs: 50,
            cs: 1,
        };
        let b = View {
            data: &b,
            rows: depth,
            cols,
            rs: 1,
            cs: 45,
        };
        // The same product with `a` seen as 9 rows (its 3 rows repeated), past SKINNY_ROWS.
        let tall: Vec<f32> = (0..9)
            .flat_map(|i| a.data[(i % 3) * 50..][..depth].to_vec())
            .collect();
        let mut want = vec![1f32; 9 * cols];
        matmul(&mut want, cols, View::rows(&tall, 9, depth), b, true, 1);
        for threads in [1, 2] {
            for accumulate in [false, true] {
                let mut got = vec![1f32; rows * (cols + 2)];
                matmul(&mut got, cols + 2, a, b, accumulate, threads);
                for i in 0..rows {
                    for j in 0..cols {
                        let w = want[i * cols + j] - if accumulate { 0.0 } else { 1.0 };
                        assert!((got[i * (cols + 2) + j] - w).abs() < 1e-3);
                    }
                }
            }
        }
    }
}
