//! A corpus line without a newline is never read into memory whole: a 64 MiB text file with
//! no newline is reported as one over-long line, quickly, and the process's peak memory does
//! not grow by the size of the line. (Its own test binary: it measures the peak RSS.)

use std::io::Write;
use std::time::Instant;

use promptdex::ingest::{CorpusReader, Row};

/// The process's peak resident set (`VmHWM`), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[test]
fn a_64_mib_line_without_newline_is_rejected_quickly_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one_line.txt");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let block = b"a cat, ".repeat(1 << 14);
    let mut written = 0;
    while written < 64 << 20 {
        file.write_all(&block).unwrap();
        written += block.len();
    }
    file.write_all(b"\na short prompt after it\n").unwrap();
    drop(file);

    let before = peak_rss();
    let start = Instant::now();
    let rows: Vec<Row> = CorpusReader::open(&path)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let seconds = start.elapsed().as_secs_f64();
    let grown = peak_rss().saturating_sub(before);
    eprintln!("{seconds:.3} s, peak RSS grew by {} KiB", grown >> 10);
    match &rows[..] {
        [Row::Rejected { line: 1, reason }, Row::Prompt(entry)] => {
            assert!(
                reason.contains("bytes") && reason.contains("limit"),
                "{reason}"
            );
            assert_eq!(entry.line, 2);
            assert_eq!(entry.prompt, "a short prompt after it");
        }
        other => panic!("{other:?}"),
    }
    assert!(seconds < 5.0, "{seconds} s");
    assert!(grown < 16 << 20, "peak RSS grew by {grown} bytes");

    // A CSV whose one record has no end is refused, naming the file, just as quickly.
    let csv = dir.path().join("one_record.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
    file.write_all(b"prompt,seed\n\"").unwrap();
    for _ in 0..(32 << 20) / block.len() {
        file.write_all(&block).unwrap();
    }
    drop(file);
    let before = peak_rss();
    let rows: Vec<_> = CorpusReader::open(&csv).unwrap().collect();
    let grown = peak_rss().saturating_sub(before);
    let err = rows
        .into_iter()
        .find_map(|r| r.err())
        .expect("an error for the endless record")
        .to_string();
    assert!(
        err.contains("one_record.csv") && err.contains("record"),
        "{err}"
    );
    assert!(grown < 16 << 20, "peak RSS grew by {grown} bytes");
}
