//! A fixed pool of worker threads with a bounded queue, for the CPU-bound work (model
//! inference, decoding) that must not run on the async runtime.
//!
//! [`Pool::run`] hands a job to the pool and awaits its result. When every worker is busy and
//! the queue is full, it fails at once with `503 busy` and a `Retry-After` estimated from the
//! recent job times: the backlog never grows past `workers + queue` jobs. A job whose caller
//! has gone (timed out, disconnected) before a worker picks it up is skipped; a job that
//! panics answers `500` and leaves its worker alive.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::oneshot;

use super::error::{ApiError, ApiResult};

type Job = Box<dyn FnOnce() + Send>;

/// Counters shared by the pool and its workers.
#[derive(Default)]
struct Counters {
    /// Jobs accepted and not yet finished (queued or running).
    pending: AtomicUsize,
    /// Jobs refused because the queue was full.
    rejected: AtomicU64,
    /// Jobs finished.
    done: AtomicU64,
    /// Jobs skipped because their caller had gone.
    abandoned: AtomicU64,
    /// Moving average of a job's run time, microseconds.
    mean_us: AtomicU64,
}

/// A snapshot of a pool, as `/api/stats` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PoolStats {
    /// Worker threads.
    pub workers: usize,
    /// Jobs that may wait beyond the running ones.
    pub queue: usize,
    /// Jobs queued or running now.
    pub pending: usize,
    /// Jobs refused with 503 so far.
    pub rejected: u64,
    /// Jobs finished so far.
    pub done: u64,
    /// Jobs dropped unrun because their caller had gone.
    pub abandoned: u64,
    /// Recent mean run time of a job, milliseconds.
    pub mean_ms: f64,
}

/// Worker threads fed through a bounded queue.
pub struct Pool {
    name: &'static str,
    workers: usize,
    queue: usize,
    sender: SyncSender<Job>,
    counters: Arc<Counters>,
}

impl Pool {
    /// Starts `workers` threads (at least one) named after `name`, with room for `queue`
    /// waiting jobs.
    pub fn new(name: &'static str, workers: usize, queue: usize) -> std::io::Result<Self> {
        let workers = workers.max(1);
        let (sender, receiver) = sync_channel::<Job>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..workers {
            let receiver = Arc::clone(&receiver);
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || work(&receiver))?;
        }
        Ok(Self {
            name,
            workers,
            queue,
            sender,
            counters: Arc::new(Counters::default()),
        })
    }

    /// Runs `job` on a worker and returns its result; `503 busy` when the queue is full.
    pub async fn run<T, F>(&self, job: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let counters = Arc::clone(&self.counters);
        let wrapped: Job = Box::new(move || {
            if reply.is_closed() {
                counters.abandoned.fetch_add(1, Ordering::Relaxed);
                counters.pending.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            let start = Instant::now();
            let result = catch_unwind(AssertUnwindSafe(job));
            let us = start.elapsed().as_micros() as u64;
            // Exponential moving average over about the last eight jobs.
            let old = counters.mean_us.load(Ordering::Relaxed);
            let new = if old == 0 { us } else { (old * 7 + us) / 8 };
            counters.mean_us.store(new, Ordering::Relaxed);
            counters.done.fetch_add(1, Ordering::Relaxed);
            counters.pending.fetch_sub(1, Ordering::Relaxed);
            let _ = reply.send(result);
        });
        self.counters.pending.fetch_add(1, Ordering::Relaxed);
        match self.sender.try_send(wrapped) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.counters.pending.fetch_sub(1, Ordering::Relaxed);
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(ApiError::busy(self.name, self.retry_after()));
            }
            Err(TrySendError::Disconnected(_)) => {
                self.counters.pending.fetch_sub(1, Ordering::Relaxed);
                return Err(ApiError::internal(format!(
                    "the {} pool stopped",
                    self.name
                )));
            }
        }
        match answer.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(panic)) => Err(ApiError::internal(format!(
                "a {} job failed: {}",
                self.name,
                panic_message(panic.as_ref())
            ))),
            Err(_) => Err(ApiError::internal(format!(
                "a {} worker stopped",
                self.name
            ))),
        }
    }

    /// Seconds until the current backlog is likely worked off (at least 1).
    fn retry_after(&self) -> u64 {
        let mean_s = self.counters.mean_us.load(Ordering::Relaxed) as f64 / 1e6;
        let backlog = (self.workers + self.queue) as f64;
        ((mean_s * backlog / self.workers as f64).ceil() as u64).clamp(1, 60)
    }

    /// The pool's counters now.
    pub fn stats(&self) -> PoolStats {
        let c = &self.counters;
        PoolStats {
            workers: self.workers,
            queue: self.queue,
            pending: c.pending.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            done: c.done.load(Ordering::Relaxed),
            abandoned: c.abandoned.load(Ordering::Relaxed),
            mean_ms: c.mean_us.load(Ordering::Relaxed) as f64 / 1e3,
        }
    }
}

/// A worker: takes jobs until the pool is dropped.
fn work(receiver: &Mutex<Receiver<Job>>) {
    loop {
        let job = match receiver.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// The text a panic carried, if any.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn full_queue_is_refused_with_retry_after_and_jobs_still_finish() {
        let pool = Arc::new(Pool::new("test", 1, 1).unwrap());
        runtime().block_on(async {
            let slow = |v: u32| {
                move || {
                    std::thread::sleep(Duration::from_millis(200));
                    v
                }
            };
            let a = tokio::spawn({
                let pool = Arc::clone(&pool);
                async move { pool.run(slow(1)).await }
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
            let b = tokio::spawn({
                let pool = Arc::clone(&pool);
                async move { pool.run(slow(2)).await }
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
            // One running, one queued: the third is refused.
            let refused = pool.run(slow(3)).await.unwrap_err();
            assert_eq!(refused.code, "busy");
            assert!(refused.retry_after.unwrap() >= 1);
            assert_eq!(a.await.unwrap().unwrap(), 1);
            assert_eq!(b.await.unwrap().unwrap(), 2);
            let stats = pool.stats();
            assert_eq!((stats.rejected, stats.done, stats.pending), (1, 2, 0));
        });
    }

    #[test]
    fn a_panicking_job_is_a_500_and_the_worker_lives_on() {
        let pool = Pool::new("test", 1, 4).unwrap();
        runtime().block_on(async {
            let err = pool.run(|| -> u32 { panic!("boom") }).await.unwrap_err();
            assert_eq!(err.code, "internal");
            assert!(err.detail.contains("boom"), "{}", err.detail);
            assert_eq!(pool.run(|| 7).await.unwrap(), 7);
        });
    }
}
