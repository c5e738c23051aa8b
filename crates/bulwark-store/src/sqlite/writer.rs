//! Group commit: one thread owns the write connection; concurrent write jobs are run
//! together in one transaction, committed with one fsync, and only then answered.
//!
//! Each job runs inside its own SAVEPOINT so that a failing job (e.g. "mailbox already
//! exists") is rolled back alone while the rest of the batch commits. If the COMMIT
//! itself fails (disk full, I/O error) every job of the batch gets the error and
//! nothing of it is acknowledged.

use std::sync::mpsc;

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::{broadcast, oneshot};

use crate::{Result, StoreError, StoreEvent};

/// Upper bound of jobs per transaction; keeps latency bounded under heavy load.
const MAX_BATCH: usize = 512;

/// A unit of work for the writer thread.
pub(crate) trait WriteJob: Send {
    /// Runs the job inside the batch transaction. Events it returns are published
    /// only if the batch commits.
    fn run(&mut self, tx: &Transaction<'_>, events: &mut Vec<StoreEvent>);
    /// Answers the caller after the commit (or its failure).
    fn finish(self: Box<Self>, commit: std::result::Result<(), String>);
}

struct TypedJob<R, F> {
    f: Option<F>,
    result: Option<Result<R>>,
    reply: Option<oneshot::Sender<Result<R>>>,
}

impl<R, F> WriteJob for TypedJob<R, F>
where
    R: Send + 'static,
    F: FnOnce(&Transaction<'_>, &mut Vec<StoreEvent>) -> Result<R> + Send,
{
    fn run(&mut self, tx: &Transaction<'_>, events: &mut Vec<StoreEvent>) {
        let Some(f) = self.f.take() else { return };
        let mut own_events = Vec::new();
        let outcome = (|| -> Result<R> {
            tx.execute_batch("SAVEPOINT job")?;
            match f(tx, &mut own_events) {
                Ok(r) => {
                    tx.execute_batch("RELEASE job")?;
                    Ok(r)
                }
                Err(e) => {
                    tx.execute_batch("ROLLBACK TO job; RELEASE job")?;
                    own_events.clear();
                    Err(e)
                }
            }
        })();
        if outcome.is_ok() {
            events.append(&mut own_events);
        }
        self.result = Some(outcome);
    }

    fn finish(mut self: Box<Self>, commit: std::result::Result<(), String>) {
        let answer = match (commit, self.result.take()) {
            (Ok(()), Some(r)) => r,
            (Err(e), _) => Err(StoreError::Backend(format!("commit failed: {e}"))),
            (Ok(()), None) => Err(StoreError::Backend("write job did not run".into())),
        };
        if let Some(tx) = self.reply.take() {
            let _ = tx.send(answer);
        }
    }
}

/// Handle to the writer thread.
pub(crate) struct Writer {
    tx: parking_lot::Mutex<Option<mpsc::Sender<Box<dyn WriteJob>>>>,
    thread: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Writer {
    pub(crate) fn start(conn: Connection, events: broadcast::Sender<StoreEvent>) -> Writer {
        let (tx, rx) = mpsc::channel::<Box<dyn WriteJob>>();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(conn, rx, events))
            .ok();
        Writer {
            tx: parking_lot::Mutex::new(Some(tx)),
            thread: parking_lot::Mutex::new(thread),
        }
    }

    /// Runs `f` in the next batch and waits until that batch is durable.
    pub(crate) async fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Transaction<'_>, &mut Vec<StoreEvent>) -> Result<R> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = Box::new(TypedJob {
            f: Some(f),
            result: None,
            reply: Some(reply),
        });
        {
            let guard = self.tx.lock();
            let sender = guard.as_ref().ok_or(StoreError::Closed)?;
            sender.send(job).map_err(|_| StoreError::Closed)?;
        }
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Stops accepting jobs, lets the thread finish queued ones, and joins it.
    pub(crate) fn close(&self) {
        self.tx.lock().take();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close();
    }
}

fn writer_loop(
    mut conn: Connection,
    rx: mpsc::Receiver<Box<dyn WriteJob>>,
    events: broadcast::Sender<StoreEvent>,
) {
    let mut batch: Vec<Box<dyn WriteJob>> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut published = Vec::new();
        let commit = run_batch(&mut conn, &mut batch, &mut published);
        if let Err(e) = &commit {
            tracing::error!(target: "bulwark::store", error = %e, jobs = batch.len(), "store commit failed; nothing of this batch was acknowledged");
        }
        // Events go out before the writers hear back, so a session that made a change
        // finds its event already queued when its write returns (IMAP NOOP after a
        // delivery sees it); still only after the commit is durable.
        if commit.is_ok() {
            for ev in published {
                let _ = events.send(ev);
            }
        }
        for job in batch.drain(..) {
            job.finish(commit.clone());
        }
    }
}

fn run_batch(
    conn: &mut Connection,
    batch: &mut [Box<dyn WriteJob>],
    events: &mut Vec<StoreEvent>,
) -> std::result::Result<(), String> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| e.to_string())?;
    for job in batch.iter_mut() {
        job.run(&tx, events);
    }
    // With journal_mode=WAL and synchronous=FULL the commit fsyncs the WAL before it
    // returns: this is the moment the batch becomes durable.
    tx.commit().map_err(|e| e.to_string())
}
