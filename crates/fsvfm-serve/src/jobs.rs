//! Asynchronous jobs (`/v1/jobs`): a video (or image) analysed in the background, its progress
//! polled, its result kept for a time-to-live; how many are held is bounded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::api::DetectResponse;
use crate::error::{ApiError, ErrorDetail};

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Accepted, not started.
    Queued,
    /// Being analysed.
    Running,
    /// Finished with a result.
    Done,
    /// Finished with an error.
    Failed,
}

/// A job as `GET /v1/jobs/{id}` shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct JobView {
    /// The job's id.
    pub id: String,
    /// Where it is.
    pub status: JobStatus,
    /// 0 to 1.
    pub progress: f64,
    /// The analysis (status `done`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<DetectResponse>,
    /// Why it failed (status `failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

struct Job {
    view: JobView,
    finished: Option<Instant>,
    cancel: Arc<AtomicBool>,
}

/// The jobs held, by id.
pub struct Jobs {
    map: Mutex<HashMap<String, Job>>,
    ttl: Duration,
    max: usize,
    counter: AtomicU64,
    started: Instant,
}

/// What a running job reports through.
#[derive(Clone)]
pub struct JobHandle {
    jobs: Arc<Jobs>,
    id: String,
    cancel: Arc<AtomicBool>,
}

impl std::fmt::Debug for JobHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobHandle").field("id", &self.id).finish()
    }
}

impl JobHandle {
    /// The job's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the job was deleted (the worker stops at its next step).
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Sets the progress (0 to 1) and marks it running.
    pub fn progress(&self, p: f64) {
        self.jobs.update(&self.id, |v| {
            v.status = JobStatus::Running;
            v.progress = p.clamp(0.0, 1.0);
        });
    }

    /// Records the outcome.
    pub fn finish(&self, result: Result<DetectResponse, ApiError>) {
        let mut map = self.jobs.lock();
        if let Some(j) = map.get_mut(&self.id) {
            match result {
                Ok(r) => {
                    j.view.status = JobStatus::Done;
                    j.view.progress = 1.0;
                    j.view.result = Some(r);
                }
                Err(e) => {
                    j.view.status = JobStatus::Failed;
                    j.view.error = Some(e.body().error);
                }
            }
            j.finished = Some(Instant::now());
        }
    }
}

impl Jobs {
    /// Holds at most `max` jobs; finished ones are dropped after `ttl`.
    pub fn new(max: usize, ttl: Duration) -> Arc<Jobs> {
        Arc::new(Jobs {
            map: Mutex::new(HashMap::new()),
            ttl,
            max: max.max(1),
            counter: AtomicU64::new(0),
            started: Instant::now(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Job>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut JobView)) {
        if let Some(j) = self.lock().get_mut(id) {
            f(&mut j.view);
        }
    }

    /// Jobs held now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Jobs not finished.
    pub fn unfinished(&self) -> usize {
        self.lock()
            .values()
            .filter(|j| j.finished.is_none())
            .count()
    }

    /// A new queued job, or `overloaded` when `max` unfinished jobs are held (expired and, if
    /// needed, the oldest finished ones are dropped first).
    pub fn create(self: &Arc<Self>) -> Result<JobHandle, ApiError> {
        let mut map = self.lock();
        let now = Instant::now();
        map.retain(|_, j| j.finished.is_none_or(|f| now.duration_since(f) < self.ttl));
        while map.len() >= self.max {
            let oldest = map
                .iter()
                .filter_map(|(id, j)| j.finished.map(|f| (f, id.clone())))
                .min();
            match oldest {
                Some((_, id)) => {
                    map.remove(&id);
                }
                None => {
                    return Err(ApiError::overloaded(format!(
                        "{} jobs are running or queued (--max-jobs): retry later",
                        map.len()
                    )));
                }
            }
        }
        // Unguessable enough for a loopback service behind a key; unique by the counter.
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut h = Sha256::new();
        h.update(n.to_le_bytes());
        h.update(self.started.elapsed().as_nanos().to_le_bytes());
        h.update(std::process::id().to_le_bytes());
        h.update((&raw const *self as usize).to_le_bytes());
        let id: String = h.finalize()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let cancel = Arc::new(AtomicBool::new(false));
        map.insert(
            id.clone(),
            Job {
                view: JobView {
                    id: id.clone(),
                    status: JobStatus::Queued,
                    progress: 0.0,
                    result: None,
                    error: None,
                },
                finished: None,
                cancel: cancel.clone(),
            },
        );
        Ok(JobHandle {
            jobs: self.clone(),
            id,
            cancel,
        })
    }

    /// The job's view (`None`: unknown or expired).
    pub fn get(&self, id: &str) -> Option<JobView> {
        let now = Instant::now();
        let map = self.lock();
        let j = map.get(id)?;
        if j.finished
            .is_some_and(|f| now.duration_since(f) >= self.ttl)
        {
            return None;
        }
        Some(j.view.clone())
    }

    /// Deletes a job, cancelling it if it runs. Whether it existed.
    pub fn delete(&self, id: &str) -> bool {
        match self.lock().remove(id) {
            Some(j) => {
                j.cancel.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_with_finished_jobs_evicted_first() {
        let jobs = Jobs::new(2, Duration::from_secs(3600));
        let a = jobs.create().unwrap();
        let b = jobs.create().unwrap();
        assert_ne!(a.id(), b.id());
        assert_eq!(jobs.create().unwrap_err().code, "overloaded");
        a.finish(Err(ApiError::no_face("none")));
        let c = jobs.create().unwrap();
        assert!(jobs.get(a.id()).is_none(), "the finished job made room");
        assert_eq!(jobs.get(c.id()).unwrap().status, JobStatus::Queued);
        b.progress(0.5);
        assert_eq!(jobs.get(b.id()).unwrap().status, JobStatus::Running);
        assert!(jobs.delete(b.id()) && b.cancelled() && !jobs.delete(b.id()));
        let short = Jobs::new(4, Duration::ZERO);
        let d = short.create().unwrap();
        d.finish(Err(ApiError::no_face("none")));
        assert!(
            short.get(d.id()).is_none(),
            "expired at once with a zero TTL"
        );
    }
}
