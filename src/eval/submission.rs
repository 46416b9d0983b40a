//! The Kaggle submission format: `imgId_eId,val`, one row per embedding dimension per image,
//! where `imgId` is the image file's stem and `eId` runs over 0..384.

use std::io::{self, Write};

/// Writes one block of rows per `(image id, vector)`, in the given order.
pub fn write_submission(out: impl Write, rows: &[(String, Vec<f32>)]) -> io::Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(["imgId_eId", "val"])?;
    for (image_id, vector) in rows {
        for (e, value) in vector.iter().enumerate() {
            writer.write_record([format!("{image_id}_{e}"), value.to_string()])?;
        }
    }
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_keys() {
        let mut out = Vec::new();
        write_submission(&mut out, &[("abc".into(), vec![0.5, -0.25])]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "imgId_eId,val\nabc_0,0.5\nabc_1,-0.25\n"
        );
    }
}
