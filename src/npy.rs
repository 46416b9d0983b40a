//! Writing vectors as NumPy `.npy` files (format 1.0, little-endian float32, C order).

use std::io::{self, Write};

/// Writes `rows` (each `dim` long) as a `(rows, dim)` float32 array.
pub fn write_npy(out: &mut dyn Write, rows: &[Vec<f32>], dim: usize) -> io::Result<()> {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {dim}), }}",
        rows.len()
    );
    // magic (6) + version (2) + header length (2) + header + '\n' is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    out.write_all(b"\x93NUMPY\x01\x00")?;
    out.write_all(&(header.len() as u16).to_le_bytes())?;
    out.write_all(header.as_bytes())?;
    for row in rows {
        if row.len() != dim {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a row has {} values, expected {dim}", row.len()),
            ));
        }
        for x in row {
            out.write_all(&x.to_le_bytes())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_data_follows() {
        let mut buf = Vec::new();
        write_npy(&mut buf, &[vec![1.0, 2.0], vec![3.0, 4.0]], 2).unwrap();
        let header_len = u16::from_le_bytes([buf[8], buf[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&buf[10..10 + header_len]).unwrap();
        assert!(header.contains("'shape': (2, 2)"));
        assert_eq!(buf.len(), 10 + header_len + 16);
        assert_eq!(
            &buf[10 + header_len..10 + header_len + 4],
            &1.0f32.to_le_bytes()
        );
    }
}
