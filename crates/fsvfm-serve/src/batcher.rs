//! Dynamic batching: the faces of concurrent requests are scored together.
//!
//! One inference thread takes the first waiting face, then waits at most `wait` for more, up to
//! `max_batch`, and scores them in one forward pass ([`fsvfm::Detector::score_normalised`]). It
//! waits only while some request is still decoding or detecting ([`Batcher::expect`]): with
//! nothing on its way, a lone request is scored at once.
//! The forward pass itself runs on the rayon pool (the flex backend's GEMMs), the same pool that
//! decodes and detects faces, so the CPU is never given more busy threads than it has cores.
//! A face's score does not depend on the others in its batch (every layer is per sample), so a
//! service answer equals `fsvfm predict`'s whatever batching happened.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use fsvfm::Detector;
use tokio::sync::oneshot;

use crate::error::ApiError;
use crate::metrics::Metrics;

struct Item {
    /// One normalised face, `[3, S, S]`.
    x: Vec<f32>,
    reply: oneshot::Sender<Result<f32, String>>,
}

/// The handle requests submit faces through. Dropping every handle stops the thread once the
/// queue is drained.
#[derive(Clone)]
pub struct Batcher {
    tx: SyncSender<Item>,
    depth: Arc<AtomicUsize>,
    coming: Arc<AtomicUsize>,
    capacity: usize,
}

/// A request that may still submit faces (see [`Batcher::expect`]); dropping it says it will
/// not, or has.
pub struct Coming(Arc<AtomicUsize>);

impl Drop for Coming {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Batcher {
    /// Starts the inference thread: batches of at most `max_batch` faces, waiting at most
    /// `wait` to fill one, with at most `capacity` faces queued.
    pub fn start(
        det: Arc<Detector>,
        max_batch: usize,
        wait: Duration,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> Batcher {
        let (tx, rx) = sync_channel(capacity.max(1));
        let depth = Arc::new(AtomicUsize::new(0));
        let coming = Arc::new(AtomicUsize::new(0));
        let (d, c) = (depth.clone(), coming.clone());
        std::thread::Builder::new()
            .name("fsvfm-inference".into())
            .spawn(move || run(det, rx, max_batch.max(1), wait, d, c, metrics))
            .expect("spawning the inference thread");
        Batcher {
            tx,
            depth,
            coming,
            capacity: capacity.max(1),
        }
    }

    /// Announces a request that will submit faces soon: while any is announced, a batch waits
    /// (up to `wait`) for more faces. Drop the guard before (or instead of) submitting.
    pub fn expect(&self) -> Coming {
        self.coming.fetch_add(1, Ordering::Relaxed);
        Coming(self.coming.clone())
    }

    /// Faces waiting to be scored.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Queues `faces` and waits for their P(fake), in order. `overloaded` (503) when the queue
    /// cannot take them all.
    pub async fn score(&self, faces: Vec<Vec<f32>>) -> Result<Vec<f32>, ApiError> {
        if self.depth() + faces.len() > self.capacity {
            return Err(ApiError::overloaded(format!(
                "{} faces are waiting to be scored (--queue {}): retry shortly",
                self.depth(),
                self.capacity
            )));
        }
        let mut replies = Vec::with_capacity(faces.len());
        for x in faces {
            let (reply, rx) = oneshot::channel();
            self.depth.fetch_add(1, Ordering::Relaxed);
            match self.tx.try_send(Item { x, reply }) {
                Ok(()) => replies.push(rx),
                Err(e) => {
                    self.depth.fetch_sub(1, Ordering::Relaxed);
                    return Err(match e {
                        TrySendError::Full(_) => ApiError::overloaded(
                            "the scoring queue is full (--queue): retry shortly",
                        ),
                        TrySendError::Disconnected(_) => {
                            ApiError::internal("the inference thread has stopped")
                        }
                    });
                }
            }
        }
        let mut out = Vec::with_capacity(replies.len());
        for r in replies {
            match r.await {
                Ok(Ok(p)) => out.push(p),
                Ok(Err(e)) => return Err(ApiError::internal(format!("scoring failed: {e}"))),
                Err(_) => return Err(ApiError::internal("the inference thread stopped")),
            }
        }
        Ok(out)
    }
}

fn run(
    det: Arc<Detector>,
    rx: Receiver<Item>,
    max_batch: usize,
    wait: Duration,
    depth: Arc<AtomicUsize>,
    coming: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let deadline = Instant::now() + wait;
        while batch.len() < max_batch {
            if coming.load(Ordering::Relaxed) == 0 {
                // Nothing else on its way: take what is queued and score now.
                match rx.try_recv() {
                    Ok(item) => {
                        batch.push(item);
                        continue;
                    }
                    Err(_) => break,
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // Short slices, so a request that stops being expected ends the wait early.
            match rx.recv_timeout(left.min(Duration::from_micros(500))) {
                Ok(item) => batch.push(item),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        depth.fetch_sub(batch.len(), Ordering::Relaxed);
        let mut x = Vec::with_capacity(batch.len() * batch[0].x.len());
        for item in &batch {
            x.extend_from_slice(&item.x);
        }
        metrics.batch(batch.len());
        // A panic in the forward pass fails this batch's requests, not the service.
        let scores =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| det.score_normalised(&x)));
        match scores {
            Ok(Ok(p)) if p.len() == batch.len() => {
                for (item, p) in batch.into_iter().zip(p) {
                    let _ = item.reply.send(Ok(p));
                }
            }
            other => {
                let why = match other {
                    Ok(Ok(p)) => format!("{} scores for {} faces", p.len(), batch.len()),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "the forward pass panicked".into(),
                };
                tracing::error!("scoring a batch of {}: {why}", batch.len());
                for item in batch {
                    let _ = item.reply.send(Err(why.clone()));
                }
            }
        }
    }
}
