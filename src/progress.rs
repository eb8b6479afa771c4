//! How long-running library code reports progress without printing: it calls a [`Progress`]
//! that the output module implements (progress bars on stderr) or [`Silent`].

/// Receives progress events. Implementations must be cheap: `inc` is called per buffer.
pub trait Progress: Sync {
    /// A new phase starts, with a byte total (0 when unknown).
    fn start(&self, label: &str, total_bytes: u64);
    /// `bytes` more of the current phase are done.
    fn inc(&self, bytes: u64);
    /// The current phase is over.
    fn finish(&self);
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &str, _: u64) {}
    fn inc(&self, _: u64) {}
    fn finish(&self) {}
}

/// Reports every byte read through it.
pub struct ProgressReader<'a, R> {
    pub inner: R,
    pub progress: &'a dyn Progress,
}

impl<R: std::io::Read> std::io::Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.inc(n as u64);
        Ok(n)
    }
}
