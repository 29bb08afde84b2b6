//! The group commit of accepts, for every backend: one writer task per inbox (started when it
//! opens, shared by its clones) takes the deliveries that arrived while its previous batch was
//! being written, hands them to the backend's [`WriteBatch`] at once (one transaction on the
//! SQL backends, one script call on Redis), and answers each accept only after that write
//! returned.
//!
//! A backend syncs once per write (`SQLite` with `synchronous = FULL`, `PostgreSQL` with
//! `synchronous_commit = on`, Redis with `appendfsync always`), so one delivery per write caps
//! accepts at the disk's sync rate; a batch shares one sync, one statement or script call and
//! one round trip among all its deliveries, and a 2xx still means the delivery is on disk.
//!
//! The machine, the same for each backend:
//! - a batch is what waits when the writer may start a write (one at a time, or as many as the
//!   backend allows in flight: [`Writer::start`]), up to [`MAX_BATCH`] deliveries or
//!   [`MAX_BATCH_BYTES`] (a single larger delivery is a batch of its own);
//! - an accept that gave up (its own timeout) before the writer took it is not written: it was
//!   answered "may have been stored", and its retry is accepted as new;
//! - each delivery of a written batch gets its own answer (new, duplicate, full); a batch that
//!   failed (an error, the writer's timeout, answers for another number of deliveries)
//!   answers each of its deliveries the error;
//! - the producers are woken after a batch that stored a new delivery, and after a failed one
//!   (a write whose answer was lost may have stored it: a spurious wake-up costs one claim).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::backend::{Accepted, InboxFuture};
use super::error::{timed, InboxError};

/// How many deliveries one batch takes at most.
pub(super) const MAX_BATCH: usize = 256;

/// How many bytes (as the backend weighs its rows, [`WriteBatch::size`]) one batch takes at
/// most; a single delivery larger than this is a batch of its own.
pub(super) const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// How many accepts may wait for the writer before an accept waits to hand its delivery over.
const QUEUE: usize = 1024;

/// What writes one batch of accepts: a backend's transaction or script call. Its row encoding
/// and its write stay in the backend (`sql/writer.rs`, `redis/writer.rs`).
pub(super) trait WriteBatch: Send + Sync + 'static {
    /// One delivery as the backend writes it, encoded by its accept (so that an encoding error
    /// is that accept's own, not its batch's).
    type Row: Send + 'static;

    /// What `row` weighs in a batch's byte bound.
    fn size(row: &Self::Row) -> usize;

    /// Writes the non-empty batch `rows` at once, durably before it returns: each row's answer
    /// in order (new; a duplicate, of a delivery stored before or earlier in the batch; full,
    /// the depth limit checked exactly within the batch), or the error that failed the whole
    /// batch (nothing of it stored, or, when the answer was lost, unknown).
    fn write<'a>(
        &'a self,
        rows: &'a [Self::Row],
    ) -> InboxFuture<'a, Vec<Result<Accepted, InboxError>>>;
}

/// One accept waiting for its batch's write.
struct Request<R> {
    row: R,
    reply: oneshot::Sender<Result<Accepted, InboxError>>,
}

/// The handle an inbox (and each of its clones) holds: the writer task ends when the last one
/// is dropped.
pub(super) struct Writer<W: WriteBatch> {
    sender: mpsc::Sender<Request<W::Row>>,
    commits: Arc<AtomicU64>,
}

impl<W: WriteBatch> Clone for Writer<W> {
    fn clone(&self) -> Self {
        Self {
            sender: self.sender.clone(),
            commits: Arc::clone(&self.commits),
        }
    }
}

impl<W: WriteBatch> Writer<W> {
    /// Starts the writer task on the current Tokio runtime: `batch` writes each batch, within
    /// `timeout`, up to `in_flight` batches at once (at least one); `wake` wakes the producers
    /// after a batch that stored a new delivery (and after a failed one).
    ///
    /// More than one batch in flight suits a backend that runs writes one after another in the
    /// order it receives them and checks the depth limit and duplicates in each (Redis's
    /// scripts): the next batch is on its way while the previous one syncs. Where writes run
    /// side by side, one in flight keeps the depth limit exact.
    pub(super) fn start(
        batch: W,
        in_flight: usize,
        timeout: Duration,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let task = Task {
            batch: Arc::new(batch),
            in_flight: Arc::new(Semaphore::new(in_flight.max(1))),
            timeout,
            commits: Arc::clone(&commits),
            wake: Arc::new(wake),
        };
        tokio::spawn(task.run(receiver));
        Self { sender, commits }
    }

    /// How many batches the writer has written (committed) successfully.
    #[cfg(any(feature = "sqlite", feature = "postgres", test))]
    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Hands `row` to the writer and waits for its batch's write (the caller bounds the wait
    /// with the inbox's timeout).
    pub(super) async fn accept(&self, row: W::Row) -> Result<Accepted, InboxError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Request { row, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> InboxError {
    InboxError::Backend("the inbox's accept writer stopped (its runtime shut down?)".into())
}

/// The writer task's state.
struct Task<W> {
    batch: Arc<W>,
    /// A permit per batch being written.
    in_flight: Arc<Semaphore>,
    timeout: Duration,
    commits: Arc<AtomicU64>,
    /// Called after a batch that stored a new delivery (here, not by the accepts: one that
    /// gave up while its batch was written would leave its delivery to the workers' poll).
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl<W: WriteBatch> Task<W> {
    async fn run(self, mut receiver: mpsc::Receiver<Request<W::Row>>) {
        let mut carried: Option<Request<W::Row>> = None;
        loop {
            // A batch is gathered once it can be written at once: what arrives meanwhile
            // waits, and goes in it.
            let Ok(permit) = Arc::clone(&self.in_flight).acquire_owned().await else {
                return;
            };
            let first = match carried.take() {
                Some(request) => request,
                None => match receiver.recv().await {
                    Some(request) => request,
                    None => return,
                },
            };
            // What arrived while the previous batch was written, within the bounds.
            let mut bytes = W::size(&first.row);
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                let Ok(next) = receiver.try_recv() else {
                    break;
                };
                let size = W::size(&next.row);
                if bytes + size > MAX_BATCH_BYTES {
                    carried = Some(next);
                    break;
                }
                bytes += size;
                batch.push(next);
            }
            // An accept that gave up (timed out) is not written: it was answered "may have
            // been stored", and its retry is accepted as new.
            batch.retain(|request| !request.reply.is_closed());
            if batch.is_empty() {
                continue;
            }
            tokio::spawn(self.write(batch, permit));
        }
    }

    /// Writes `batch` and answers each of its accepts; `permit` is given back after.
    fn write(
        &self,
        batch: Vec<Request<W::Row>>,
        permit: OwnedSemaphorePermit,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (writer, timeout) = (Arc::clone(&self.batch), self.timeout);
        let (commits, wake) = (Arc::clone(&self.commits), Arc::clone(&self.wake));
        async move {
            let (replies, rows): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .map(|Request { row, reply }| (reply, row))
                .unzip();
            let written = match timed(timeout, writer.write(&rows)).await {
                Ok(answers) if answers.len() != rows.len() => Err(InboxError::Backend(
                    "the batch's write answered for another number of deliveries".into(),
                )),
                written => written,
            };
            drop(permit);
            match written {
                Ok(answers) => {
                    commits.fetch_add(1, Ordering::Relaxed);
                    if answers
                        .iter()
                        .any(|answer| matches!(answer, Ok(Accepted::New)))
                    {
                        // Stored: the workers waiting on this inbox claim at once.
                        wake();
                    }
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        let _ = reply.send(answer);
                    }
                }
                Err(error) => {
                    crate::observe::warn!(
                        %error,
                        deliveries = replies.len(),
                        "inbox accept batch failed; each of its deliveries is answered an error"
                    );
                    // A write whose answer was lost (a timeout, a cut connection) may have
                    // stored the batch: a spurious wake-up costs one claim.
                    wake();
                    for reply in replies {
                        let _ = reply.send(Err(each(&error)));
                    }
                }
            }
        }
    }
}

/// The batch's error, for each of its deliveries.
fn each(error: &InboxError) -> InboxError {
    match error {
        InboxError::Timeout => InboxError::Timeout,
        InboxError::Full => InboxError::Full,
        InboxError::Backend(error) => {
            InboxError::Backend(format!("the batch of accepts failed: {error}").into())
        }
    }
}

#[cfg(test)]
mod tests {
    //! The machine's bounds and answers, with a batch writer in memory (the backends' writes
    //! are tested against real servers in `tests/inbox_*_group.rs` and `tests/inbox_redis.rs`).

    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;

    use super::*;

    /// Writes nothing: records each batch's rows (their sizes), holds its first batch until
    /// `hold` is let go, and answers `New` for each row (one answer short when `short`).
    struct Memory {
        batches: Arc<Mutex<Vec<Vec<usize>>>>,
        hold: Mutex<Option<oneshot::Receiver<()>>>,
        short: bool,
    }

    impl WriteBatch for Memory {
        type Row = usize;

        fn size(row: &usize) -> usize {
            *row
        }

        fn write<'a>(
            &'a self,
            rows: &'a [usize],
        ) -> InboxFuture<'a, Vec<Result<Accepted, InboxError>>> {
            Box::pin(async move {
                let hold = self.hold.lock().unwrap().take();
                if let Some(hold) = hold {
                    let _ = hold.await;
                }
                self.batches.lock().unwrap().push(rows.to_vec());
                let answers = rows.len() - usize::from(self.short);
                Ok((0..answers).map(|_| Ok(Accepted::New)).collect())
            })
        }
    }

    struct Setup {
        writer: Writer<Memory>,
        batches: Arc<Mutex<Vec<Vec<usize>>>>,
        wakes: Arc<AtomicUsize>,
        /// Lets the first batch (one row of size 0, already handed over) go.
        release: Option<oneshot::Sender<()>>,
        first: tokio::task::JoinHandle<Result<Accepted, InboxError>>,
    }

    /// A writer whose first batch (one row) is held, so that what the test accepts next
    /// gathers behind it.
    async fn setup(short: bool) -> Setup {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let wakes = Arc::new(AtomicUsize::new(0));
        let (release, hold) = oneshot::channel();
        let memory = Memory {
            batches: Arc::clone(&batches),
            hold: Mutex::new(Some(hold)),
            short,
        };
        let woken = Arc::clone(&wakes);
        let writer = Writer::start(memory, 1, Duration::from_secs(30), move || {
            woken.fetch_add(1, Ordering::Relaxed);
        });
        let first = tokio::spawn({
            let writer = writer.clone();
            async move { writer.accept(0).await }
        });
        // The writer takes the first row and waits in its write.
        tokio::time::sleep(Duration::from_millis(20)).await;
        Setup {
            writer,
            batches,
            wakes,
            release: Some(release),
            first,
        }
    }

    /// Accepts `rows` at once behind the held first batch, then lets it go: the answers.
    async fn behind(setup: &mut Setup, rows: Vec<usize>) -> Vec<Result<Accepted, InboxError>> {
        let tasks: Vec<_> = rows
            .into_iter()
            .map(|row| {
                let writer = setup.writer.clone();
                tokio::spawn(async move { writer.accept(row).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        setup.release.take().unwrap().send(()).unwrap();
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        answers
    }

    fn sizes(batches: &Mutex<Vec<Vec<usize>>>) -> Vec<usize> {
        batches.lock().unwrap().iter().map(Vec::len).collect()
    }

    #[tokio::test]
    async fn a_batch_takes_at_most_max_batch_deliveries_and_answers_each_after_its_write() {
        let mut setup = setup(false).await;
        let answers = behind(&mut setup, vec![1; MAX_BATCH + 44]).await;
        assert!(answers
            .iter()
            .all(|answer| matches!(answer, Ok(Accepted::New))));
        assert_eq!(sizes(&setup.batches), [1, MAX_BATCH, 44]);
        assert_eq!(setup.writer.commits(), 3);
        assert_eq!(setup.wakes.load(Ordering::Relaxed), 3);
        assert!(matches!(setup.first.await.unwrap(), Ok(Accepted::New)));
    }

    #[tokio::test]
    async fn a_batch_takes_at_most_max_batch_bytes_and_a_larger_delivery_is_a_batch_of_its_own() {
        let mut setup = setup(false).await;
        let mib = 1024 * 1024;
        let rows = vec![mib, mib, mib, mib, 1, MAX_BATCH_BYTES + 1, 1, 1];
        let answers = behind(&mut setup, rows).await;
        assert!(answers
            .iter()
            .all(|answer| matches!(answer, Ok(Accepted::New))));
        let batches = setup.batches.lock().unwrap().clone();
        assert_eq!(
            batches,
            [
                vec![0],
                vec![mib, mib, mib, mib],
                vec![1],
                vec![MAX_BATCH_BYTES + 1],
                vec![1, 1]
            ]
        );
    }

    #[tokio::test]
    async fn an_accept_that_gave_up_before_its_batch_is_not_written() {
        let mut setup = setup(false).await;
        let writer = setup.writer.clone();
        let gave_up = tokio::time::timeout(Duration::from_millis(5), writer.accept(7)).await;
        assert!(gave_up.is_err(), "{gave_up:?}");
        let answers = behind(&mut setup, vec![1, 2]).await;
        assert_eq!(answers.len(), 2);
        let batches = setup.batches.lock().unwrap().clone();
        assert_eq!(batches, [vec![0], vec![1, 2]]);
    }

    #[tokio::test]
    async fn a_batch_answered_for_another_number_of_deliveries_answers_each_an_error_and_wakes() {
        let mut setup = setup(true).await;
        let answers = behind(&mut setup, vec![1, 2, 3]).await;
        for answer in &answers {
            assert!(matches!(answer, Err(InboxError::Backend(_))), "{answer:?}");
        }
        assert!(matches!(
            setup.first.await.unwrap(),
            Err(InboxError::Backend(_))
        ));
        assert_eq!(setup.writer.commits(), 0);
        // Each failed batch wakes the producers: its write's outcome is unknown.
        assert_eq!(setup.wakes.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn with_two_in_flight_a_batch_is_written_while_the_one_before_it_waits() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let (release, hold) = oneshot::channel();
        let memory = Memory {
            batches: Arc::clone(&batches),
            hold: Mutex::new(Some(hold)),
            short: false,
        };
        let writer = Writer::start(memory, 2, Duration::from_secs(30), || {});
        let first = tokio::spawn({
            let writer = writer.clone();
            async move { writer.accept(0).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The first batch is held in its write; the second is written beside it.
        let second = tokio::time::timeout(Duration::from_secs(5), writer.accept(1)).await;
        assert!(matches!(second, Ok(Ok(Accepted::New))), "{second:?}");
        assert_eq!(sizes(&batches), [1]);
        assert!(!first.is_finished());
        release.send(()).unwrap();
        assert!(matches!(first.await.unwrap(), Ok(Accepted::New)));
        assert_eq!(writer.commits(), 2);
    }

    #[tokio::test]
    async fn with_one_in_flight_a_batch_waits_for_the_write_before_it() {
        let setup = setup(false).await;
        let waited = tokio::time::timeout(Duration::from_millis(100), setup.writer.accept(1)).await;
        assert!(waited.is_err(), "written beside the held batch: {waited:?}");
    }

    /// Counts the writes running at once (and the most ever), each a few milliseconds long;
    /// `alive` is held for as long as the writer is.
    struct Overlapping {
        now: AtomicUsize,
        most: Arc<AtomicUsize>,
        written: Arc<AtomicUsize>,
        hold: Mutex<Option<oneshot::Receiver<()>>>,
        _alive: Arc<()>,
    }

    impl WriteBatch for Overlapping {
        type Row = usize;

        fn size(_: &usize) -> usize {
            1
        }

        fn write<'a>(
            &'a self,
            rows: &'a [usize],
        ) -> InboxFuture<'a, Vec<Result<Accepted, InboxError>>> {
            Box::pin(async move {
                let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
                self.most.fetch_max(now, Ordering::SeqCst);
                let hold = self.hold.lock().unwrap().take();
                if let Some(hold) = hold {
                    let _ = hold.await;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                self.written.fetch_add(rows.len(), Ordering::SeqCst);
                self.now.fetch_sub(1, Ordering::SeqCst);
                Ok(rows.iter().map(|_| Ok(Accepted::New)).collect())
            })
        }
    }

    fn overlapping(
        hold: Option<oneshot::Receiver<()>>,
    ) -> (Overlapping, Arc<AtomicUsize>, Arc<()>) {
        let most = Arc::new(AtomicUsize::new(0));
        let alive = Arc::new(());
        let writer = Overlapping {
            now: AtomicUsize::new(0),
            most: Arc::clone(&most),
            written: Arc::new(AtomicUsize::new(0)),
            hold: Mutex::new(hold),
            _alive: Arc::clone(&alive),
        };
        (writer, most, alive)
    }

    /// Under a load of accepts from both threads, the writes running at once never outnumber
    /// `in_flight` (one on the SQL backends: the permit is held for the whole write), and
    /// every accept is answered once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writes_running_at_once_never_outnumber_in_flight() {
        for in_flight in [1, 2] {
            let (batch, most, _alive) = overlapping(None);
            let written = Arc::clone(&batch.written);
            let writer = Writer::start(batch, in_flight, Duration::from_secs(30), || {});
            let mut tasks = Vec::new();
            for wave in 0..20 {
                for row in 0..50 {
                    let writer = writer.clone();
                    tasks.push(tokio::spawn(
                        async move { writer.accept(wave * 50 + row).await },
                    ));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            for task in tasks {
                let answer = task.await.unwrap();
                assert!(matches!(answer, Ok(Accepted::New)), "{answer:?}");
            }
            assert_eq!(written.load(Ordering::SeqCst), 1000);
            let most = most.load(Ordering::SeqCst);
            assert!(
                most <= in_flight,
                "{most} writes at once, {in_flight} allowed"
            );
            assert!(writer.commits() > 1, "one batch: nothing could overlap");
        }
    }

    /// The inbox dropped (its accepts given up) while a batch is written: the writer task ends,
    /// and the batch writer (the backend's connection) is let go once that write ends.
    #[tokio::test]
    async fn the_writer_is_let_go_once_the_inbox_is_dropped_and_its_writes_ended() {
        let (release, hold) = oneshot::channel();
        let (batch, _, alive) = overlapping(Some(hold));
        let writer = Writer::start(batch, 2, Duration::from_secs(30), || {});
        let accept = tokio::spawn({
            let writer = writer.clone();
            async move { writer.accept(0).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        accept.abort();
        drop(writer);
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The write still holds it.
        assert!(Arc::strong_count(&alive) > 1);
        release.send(()).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&alive) > 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the writer was kept"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
