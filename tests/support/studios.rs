//! Fault injection around the real local studio: the studio still does the work,
//! these wrappers only decide when it fails or stalls.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use petportrait_core::config::UploadLimits;
use petportrait_studio::{LocalStudio, RenderContext, RenderRequest, RenderedFile, Studio, StudioError};

/// Fails the first `failures` renders as "model unavailable" (a retryable failure).
pub struct FlakyStudio {
    inner: LocalStudio,
    failures: usize,
    pub calls: AtomicUsize,
}

impl FlakyStudio {
    pub fn new(failures: usize) -> Arc<FlakyStudio> {
        Arc::new(FlakyStudio { inner: LocalStudio::new(UploadLimits::default()), failures, calls: AtomicUsize::new(0) })
    }
}

impl Studio for FlakyStudio {
    fn render(&self, request: &RenderRequest, ctx: &RenderContext) -> Result<Vec<RenderedFile>, StudioError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call < self.failures {
            return Err(StudioError::Unavailable(format!("injected outage {}", call + 1).into()));
        }
        self.inner.render(request, ctx)
    }
}

/// Reports progress, then blocks until released (or 60 s pass): a worker stuck in a
/// long render, ready to be killed.
pub struct StallingStudio {
    release: Mutex<mpsc::Receiver<()>>,
}

impl StallingStudio {
    pub fn new() -> (Arc<StallingStudio>, mpsc::Sender<()>) {
        let (tx, rx) = mpsc::channel();
        (Arc::new(StallingStudio { release: Mutex::new(rx) }), tx)
    }
}

impl Studio for StallingStudio {
    fn render(&self, _request: &RenderRequest, ctx: &RenderContext) -> Result<Vec<RenderedFile>, StudioError> {
        ctx.checkpoint(10, "stalling")?;
        let release = self.release.lock().map_err(|_| StudioError::Canceled)?;
        let _ = release.recv_timeout(Duration::from_secs(60));
        Err(StudioError::Unavailable("the stalled render was released".into()))
    }
}

/// Reports progress, blocks until released, then renders with the real studio and
/// succeeds without looking at cancellation again: a render that finishes after its
/// generation was canceled (the local studio past its last checkpoint).
pub struct LateSuccessStudio {
    inner: LocalStudio,
    release: Mutex<mpsc::Receiver<()>>,
}

impl LateSuccessStudio {
    pub fn new() -> (Arc<LateSuccessStudio>, mpsc::Sender<()>) {
        let (tx, rx) = mpsc::channel();
        let studio = LateSuccessStudio { inner: LocalStudio::new(UploadLimits::default()), release: Mutex::new(rx) };
        (Arc::new(studio), tx)
    }
}

impl Studio for LateSuccessStudio {
    fn render(&self, request: &RenderRequest, ctx: &RenderContext) -> Result<Vec<RenderedFile>, StudioError> {
        ctx.checkpoint(10, "waiting")?;
        let release = self.release.lock().map_err(|_| StudioError::Canceled)?;
        let _ = release.recv_timeout(Duration::from_secs(60));
        self.inner.render(request, &RenderContext::detached())
    }
}

/// The real studio at a model's pace: before rendering it reports a few stages, one
/// every `step`, as a model server working for a while does, so a client can watch a
/// generation move (and cancel it) before it ends.
pub struct PacedStudio {
    inner: LocalStudio,
    step: Duration,
}

impl PacedStudio {
    pub fn new(step: Duration) -> Arc<PacedStudio> {
        Arc::new(PacedStudio { inner: LocalStudio::new(UploadLimits::default()), step })
    }
}

impl Studio for PacedStudio {
    fn render(&self, request: &RenderRequest, ctx: &RenderContext) -> Result<Vec<RenderedFile>, StudioError> {
        for (percent, stage) in [(1, "loading_model"), (2, "loading_model"), (3, "warming_up"), (4, "warming_up")] {
            ctx.checkpoint(percent, stage)?;
            // The model's working time: this is what is being simulated, not a wait.
            std::thread::sleep(self.step);
        }
        self.inner.render(request, ctx)
    }
}
