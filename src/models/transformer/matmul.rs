//! Matrix products on strided operands: [`View`] and [`matmul`], with the bounds checks made
//! before the unsafe `gemm` call; products with a handful of rows go to
//! `skinny`.

use gemm::Parallelism;

use super::skinny::{skinny_matmul, SKINNY_ROWS};

/// A strided matrix operand: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    /// The elements, from `(0, 0)` on.
    pub data: &'a [f32],
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Distance between rows.
    pub rs: usize,
    /// Distance between columns.
    pub cs: usize,
}

impl<'a> View<'a> {
    /// A contiguous row-major `rows x cols` matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// Whether every element lies inside `data` (false where the arithmetic would overflow).
    fn in_bounds(&self) -> bool {
        reach(self.rows, self.cols, self.rs, self.cs).is_some_and(|r| r <= self.data.len())
    }
}

/// One past the largest index a `rows x cols` matrix with strides `rs`, `cs` touches, or
/// `None` when that does not fit a `usize`.
fn reach(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    let last_row = (rows - 1).checked_mul(rs)?;
    let last_col = (cols - 1).checked_mul(cs)?;
    last_row.checked_add(last_col)?.checked_add(1)
}

/// `dst = a b`, or `dst += a b` with `accumulate`, dst being `a.rows x b.cols` with row
/// stride `dst_rs` (columns adjacent), run on `threads` threads of rayon's pool: by `gemm`,
/// or, when `a` has few rows (at most `SKINNY_ROWS`, 8) and both the rows of `a` and the
/// columns of `b` are contiguous, as dot products that read `b` once.
///
/// # Panics
/// When the shapes disagree, an operand or the destination reaches outside its slice (or its
/// extent overflows a `usize`), the destination's rows overlap (`dst_rs < b.cols` with more
/// than one row), or a stride does not fit an `isize`: checked before any element is touched.
pub fn matmul(dst: &mut [f32], dst_rs: usize, a: View, b: View, accumulate: bool, threads: usize) {
    check_product(dst.len(), dst_rs, &a, &b);
    if a.rows <= SKINNY_ROWS && a.cs == 1 && b.rs == 1 {
        skinny_matmul(dst, dst_rs, a, b, accumulate, threads);
        return;
    }
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: every element of the three matrices lies inside its slice and every stride fits
    // an `isize` (`check_product`); the destination's rows do not overlap, so each element is
    // written by one thread; `dst` is borrowed mutably, so it cannot overlap the operands.
    unsafe {
        gemm::gemm(
            a.rows,
            b.cols,
            a.cols,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// The checks [`matmul`] makes before its unsafe product (see its `# Panics`).
fn check_product(dst_len: usize, dst_rs: usize, a: &View, b: &View) {
    assert_eq!(a.cols, b.rows, "matmul: inner dimensions differ");
    assert!(
        a.in_bounds() && b.in_bounds(),
        "matmul: operand out of bounds"
    );
    assert!(
        reach(a.rows, b.cols, dst_rs, 1).is_some_and(|r| r <= dst_len),
        "matmul: destination out of bounds"
    );
    assert!(
        a.rows <= 1 || dst_rs >= b.cols,
        "matmul: destination rows overlap (row stride {dst_rs} < width {})",
        b.cols
    );
    let fits = |s: usize| isize::try_from(s).is_ok();
    assert!(
        [dst_rs, a.rs, a.cs, b.rs, b.cs].into_iter().all(fits),
        "matmul: stride over isize::MAX"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strides whose bounds arithmetic would wrap around reach far outside the slice; a
    /// wrapped sum must not pass for a small one.
    #[test]
    fn wrapping_strides_are_out_of_bounds() {
        let data = [0f32; 4];
        let tall = View {
            data: &data,
            rows: 2,
            cols: 1,
            rs: usize::MAX,
            cs: 1,
        };
        assert!(!tall.in_bounds());
        let wide = View {
            data: &data,
            rows: 1,
            cols: 3,
            rs: 1,
            cs: usize::MAX / 2 + 1,
        };
        assert!(!wide.in_bounds());
        assert!(View::rows(&data, 2, 2).in_bounds());
    }

    /// Operands of a `gemm` product, `rows x depth` times `depth x cols`, all ones.
    fn ones(rows: usize, depth: usize, cols: usize) -> (Vec<f32>, Vec<f32>) {
        (vec![1.0; rows * depth], vec![1.0; depth * cols])
    }

    /// A destination row stride below the width makes rows overlap (written from several
    /// threads at once, a data race): refused.
    #[test]
    #[should_panic(expected = "matmul: destination rows overlap")]
    fn overlapping_destination_rows_are_refused() {
        let (a, b) = ones(16, 2, 4);
        let mut dst = vec![0f32; 64];
        matmul(
            &mut dst,
            1,
            View::rows(&a, 16, 2),
            View::rows(&b, 2, 4),
            false,
            1,
        );
    }

    /// The same on the dot-product path (few rows, `b` read as `W^T`).
    #[test]
    #[should_panic(expected = "matmul: destination rows overlap")]
    fn overlapping_destination_rows_are_refused_for_skinny_products() {
        let (a, b) = ones(2, 2, 4);
        let b = View {
            data: &b,
            rows: 2,
            cols: 4,
            rs: 1,
            cs: 2,
        };
        let mut dst = vec![0f32; 8];
        matmul(&mut dst, 3, View::rows(&a, 2, 2), b, false, 2);
    }

    /// An operand whose row stride wraps around (it would be read at a negative offset).
    #[test]
    #[should_panic(expected = "matmul: operand out of bounds")]
    fn a_wrapping_operand_is_refused() {
        let (a, b) = ones(2, 1, 1);
        let a = View {
            data: &a,
            rows: 2,
            cols: 1,
            rs: usize::MAX,
            cs: 2,
        };
        let mut dst = vec![0f32; 2];
        matmul(&mut dst, 1, a, View::rows(&b, 1, 1), false, 1);
    }

    /// A destination whose row stride wraps around (row 1 would be written before row 0).
    #[test]
    #[should_panic(expected = "matmul: destination out of bounds")]
    fn a_wrapping_destination_is_refused() {
        let (a, b) = ones(16, 1, 1);
        let mut dst = vec![0f32; 16];
        matmul(
            &mut dst,
            usize::MAX,
            View::rows(&a, 16, 1),
            View::rows(&b, 1, 1),
            false,
            1,
        );
    }

    /// A stride that does not fit `gemm`'s signed strides, even where only one row exists.
    #[test]
    #[should_panic(expected = "matmul: stride")]
    fn a_stride_beyond_isize_is_refused() {
        let (a, b) = ones(1, 1, 1);
        let a = View {
            data: &a,
            rows: 1,
            cols: 1,
            rs: usize::MAX,
            cs: 2,
        };
        let mut dst = vec![0f32; 1];
        matmul(&mut dst, 1, a, View::rows(&b, 1, 1), false, 1);
    }

    /// A destination too short for its rows.
    #[test]
    #[should_panic(expected = "matmul: destination out of bounds")]
    fn a_short_destination_is_refused() {
        let (a, b) = ones(16, 2, 4);
        let mut dst = vec![0f32; 63];
        matmul(
            &mut dst,
            4,
            View::rows(&a, 16, 2),
            View::rows(&b, 2, 4),
            false,
            2,
        );
    }
}
