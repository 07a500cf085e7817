//! The training job's state machine: idle → running → succeeded | failed (and running
//! again from either end state). Pure: time is passed in.

use super::pipeline::Accuracy;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Idle,
    Running,
    Succeeded,
    Failed,
}

/// The last (or current) training job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub state: JobState,
    /// 0..1, from the cross-validation loop; never goes back while running.
    pub progress: f32,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub error: Option<String>,
    /// Samples the job trained on.
    pub samples: Option<usize>,
    /// Model version the job stored.
    pub model_version: Option<i64>,
    pub accuracy: Option<Accuracy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a training job is already running (started at {started_ms} ms)")]
pub struct AlreadyRunning {
    pub started_ms: i64,
}

impl Default for Job {
    fn default() -> Self {
        Self {
            state: JobState::Idle,
            progress: 0.0,
            started_ms: None,
            finished_ms: None,
            error: None,
            samples: None,
            model_version: None,
            accuracy: None,
        }
    }
}

impl Job {
    /// Starts a job unless one is running; the previous job's outcome is cleared.
    pub fn start(&mut self, now_ms: i64) -> Result<(), AlreadyRunning> {
        if self.state == JobState::Running {
            return Err(AlreadyRunning {
                started_ms: self.started_ms.unwrap_or(now_ms),
            });
        }
        *self = Job {
            state: JobState::Running,
            started_ms: Some(now_ms),
            ..Job::default()
        };
        Ok(())
    }

    /// Records progress of the running job (clamped to 0..1, monotone); ignored otherwise.
    pub fn set_progress(&mut self, p: f32) {
        if self.state == JobState::Running && p.is_finite() {
            self.progress = self.progress.max(p.clamp(0.0, 1.0));
        }
    }

    pub fn set_samples(&mut self, n: usize) {
        if self.state == JobState::Running {
            self.samples = Some(n);
        }
    }

    pub fn succeed(&mut self, now_ms: i64, version: i64, accuracy: Accuracy) {
        if self.state != JobState::Running {
            return;
        }
        self.state = JobState::Succeeded;
        self.progress = 1.0;
        self.finished_ms = Some(now_ms);
        self.model_version = Some(version);
        self.accuracy = Some(accuracy);
    }

    pub fn fail(&mut self, now_ms: i64, error: impl Into<String>) {
        if self.state != JobState::Running {
            return;
        }
        self.state = JobState::Failed;
        self.finished_ms = Some(now_ms);
        self.error = Some(error.into());
    }

    /// Run time so far (running) or in total (finished).
    pub fn duration_ms(&self, now_ms: i64) -> Option<i64> {
        let start = self.started_ms?;
        Some(
            self.finished_ms
                .unwrap_or(now_ms)
                .saturating_sub(start)
                .max(0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_running_succeeded_then_again() {
        let mut j = Job::default();
        assert_eq!(j.state, JobState::Idle);
        assert_eq!(j.duration_ms(5), None);
        j.start(1_000).unwrap();
        assert_eq!(j.state, JobState::Running);
        assert_eq!(j.duration_ms(1_250), Some(250));
        assert_eq!(j.start(1_100), Err(AlreadyRunning { started_ms: 1_000 }));
        j.set_progress(0.4);
        j.set_progress(0.2); // never backwards
        j.set_progress(f32::NAN);
        assert_eq!(j.progress, 0.4);
        j.set_progress(7.0);
        assert_eq!(j.progress, 1.0);
        j.set_samples(12);
        let acc = Accuracy {
            mean_error: 1.5,
            ..Accuracy::default()
        };
        j.succeed(3_000, 4, acc.clone());
        assert_eq!(j.state, JobState::Succeeded);
        assert_eq!(
            (j.model_version, j.samples, j.duration_ms(9_999)),
            (Some(4), Some(12), Some(2_000))
        );
        assert_eq!(j.accuracy, Some(acc));
        // a finished job cannot fail afterwards
        j.fail(4_000, "late");
        assert_eq!(j.state, JobState::Succeeded);
        assert_eq!(j.error, None);
        // a new job clears the previous outcome
        j.start(5_000).unwrap();
        assert_eq!(
            (j.progress, j.model_version, j.accuracy.clone(), j.samples),
            (0.0, None, None, None)
        );
    }

    #[test]
    fn failures_keep_the_reason_and_allow_a_retry() {
        let mut j = Job::default();
        j.set_progress(0.5); // not running: ignored
        assert_eq!(j.progress, 0.0);
        j.succeed(1, 1, Accuracy::default()); // not running: ignored
        assert_eq!(j.state, JobState::Idle);
        j.start(10).unwrap();
        j.fail(30, "no training sample has any reading");
        assert_eq!(j.state, JobState::Failed);
        assert_eq!(
            j.error.as_deref(),
            Some("no training sample has any reading")
        );
        assert_eq!(j.duration_ms(1_000), Some(20));
        j.succeed(40, 2, Accuracy::default());
        assert_eq!(j.state, JobState::Failed);
        j.start(50).unwrap();
        assert_eq!((j.state, j.error.clone()), (JobState::Running, None));
    }
}
