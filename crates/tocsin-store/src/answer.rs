//! The answers to alert requests that wait on another thread (the alert log's appender, the
//! writer), delivered with one wake-up per waiting event loop instead of one per request
//! (issue #5).
//!
//! Why: a task of a current-thread runtime (each of the server's event loops is one) woken
//! from another thread costs that thread a write to the runtime's eventfd, a system call, and
//! the loop a return from `epoll_wait`: tokio does both for every such wake-up, however many
//! come at once. The appender answers the dozen or so creates of each flush together, which
//! made a dozen such writes a flush beside the flush's own two system calls (strace), and
//! as many returns of the loops from `epoll_wait`. Measured (bench/README.md): about 1 us of
//! CPU an alert less, the appender's and the loops' together.
//!
//! So an event loop's runtime has a *home* (`answer_here`, which each loop calls as it
//! starts): a queue, and a task of that runtime that answers what the queue holds. A
//! request made on the loop names its home; a batch's answers (`Answers`) go into each
//! home's queue in one piece, and each home's task is woken once; it answers its requests
//! on their own thread, where waking a task is a push onto the runtime's run queue. Requests
//! made anywhere else (a runtime without a home) are answered directly, as before. Homes are
//! made on request, not for every current-thread runtime met, because a home's task runs
//! only while its runtime is driven (`Runtime::block_on`): a request made through
//! `Handle::block_on` from another thread would wait on a task nobody runs.

use crate::Result;
use crate::alerts::RequestStatus;
use std::cell::RefCell;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::{Notify, oneshot};

/// What an alert request is answered with: its request status once its transaction
/// commits, `None` once the alert log holds it (a create sent with `AlertWriter::accept`),
/// or why it failed.
pub(crate) type Outcome = Result<Option<RequestStatus>>;

type Waiting = oneshot::Sender<Outcome>;
/// Answers for one home: each waiting request with its outcome.
type Batch = Vec<(Waiting, Outcome)>;

/// Where a request's outcome goes: answered through `Answers`. (Dropped unanswered, its
/// request learns that the writer stopped.)
pub(crate) struct Reply {
    tx: Waiting,
    /// The home of the runtime the request waits on, when it has one.
    home: Option<Arc<Home>>,
}

impl Reply {
    /// A reply, and what its request awaits.
    pub(crate) fn new() -> (Reply, oneshot::Receiver<Outcome>) {
        let (tx, rx) = oneshot::channel();
        (
            Reply {
                tx,
                home: Home::here(),
            },
            rx,
        )
    }
}

/// A batch's answers, gathered by home and delivered together by `send` (or when dropped,
/// so that no answer is lost on an early return).
#[derive(Default)]
pub(crate) struct Answers {
    homes: Vec<(Arc<Home>, Batch)>,
}

impl Answers {
    pub(crate) fn add(&mut self, reply: Reply, outcome: Outcome) {
        let Some(home) = reply.home else {
            let _ = reply.tx.send(outcome);
            return;
        };
        // A batch's requests come from the loops, a handful of homes at most.
        match self.homes.iter_mut().find(|(h, _)| Arc::ptr_eq(h, &home)) {
            Some((_, list)) => list.push((reply.tx, outcome)),
            None => self.homes.push((home, vec![(reply.tx, outcome)])),
        }
    }

    /// Hands every home its answers, waking each home's task once.
    pub(crate) fn send(&mut self) {
        for (home, list) in self.homes.drain(..) {
            home.deliver(list);
        }
    }
}

impl Drop for Answers {
    fn drop(&mut self) {
        self.send();
    }
}

/// A runtime's queue of answers, and the task that answers them on it.
pub(crate) struct Home {
    queue: Mutex<Queue>,
    ready: Notify,
}

struct Queue {
    answers: Batch,
    /// False once the home's task is gone (its runtime shut down): answers then go
    /// directly, so none waits in a queue nobody reads.
    open: bool,
}

thread_local! {
    /// This thread's home, with the runtime its task runs on.
    static HOME: RefCell<Option<(tokio::runtime::Id, Arc<Home>)>> = const { RefCell::new(None) };
}

/// Makes the runtime this thread drives (a current-thread runtime, in `Runtime::block_on`
/// for as long as it serves) answer the alert requests made on it together: one wake-up
/// of the loop per batch of answers instead of one per request. Call it only from a task of
/// a current-thread runtime that this thread drives with `Runtime::block_on` for the rest of
/// the runtime's life (as each event loop does): the home's task runs only while the runtime
/// is driven, so a home made where it is merely entered (`Runtime::enter`,
/// `Handle::block_on` from another thread) would leave its requests waiting. On a
/// multi-thread runtime, or outside one, it does nothing.
pub fn answer_here() {
    let Ok(handle) = Handle::try_current() else {
        return;
    };
    if handle.runtime_flavor() != RuntimeFlavor::CurrentThread {
        return;
    }
    let home = Arc::new(Home {
        queue: Mutex::new(Queue {
            answers: Vec::new(),
            open: true,
        }),
        ready: Notify::new(),
    });
    // Made before the task is spawned and moved into it, so that it closes the home even if
    // the task is dropped unpolled (a runtime shutting down).
    let closer = Closer(home.clone());
    handle.spawn(async move {
        let closer = closer;
        closer.0.answer().await;
    });
    let _ = HOME.try_with(|slot| *slot.borrow_mut() = Some((handle.id(), home)));
}

impl Home {
    /// The home of the runtime this thread is in, if `answer_here` made one for it.
    fn here() -> Option<Arc<Home>> {
        HOME.try_with(|slot| {
            let slot = slot.borrow();
            let (at, home) = slot.as_ref()?;
            let handle = Handle::try_current().ok()?;
            (*at == handle.id() && home.lock().open).then(|| home.clone())
        })
        .ok()
        .flatten()
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The lock is held only to move vectors, which cannot panic midway.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn deliver(&self, mut list: Batch) {
        {
            let mut queue = self.lock();
            if queue.open {
                match queue.answers.is_empty() {
                    true => std::mem::swap(&mut queue.answers, &mut list),
                    false => queue.answers.append(&mut list),
                }
                drop(queue);
                self.ready.notify_one();
                return;
            }
        }
        for (tx, outcome) in list {
            let _ = tx.send(outcome);
        }
    }

    /// The home's task: answers what the queue holds each time it is woken. (`notify_one`
    /// stores a wake-up that finds the task busy, so none is missed.)
    async fn answer(&self) {
        let mut batch = Vec::new();
        loop {
            self.ready.notified().await;
            std::mem::swap(&mut batch, &mut self.lock().answers);
            for (tx, outcome) in batch.drain(..) {
                let _ = tx.send(outcome);
            }
        }
    }
}

/// Closes its home when the home's task ends: what is queued is answered directly (or
/// dropped with its waiting request, on a runtime that shut down), and so is what comes.
struct Closer(Arc<Home>);

impl Drop for Closer {
    fn drop(&mut self) {
        let left = {
            let mut queue = self.0.lock();
            queue.open = false;
            std::mem::take(&mut queue.answers)
        };
        for (tx, outcome) in left {
            let _ = tx.send(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(id: &str) -> Outcome {
        Ok(Some(RequestStatus {
            id: id.into(),
            action: "Create".into(),
            success: true,
            status: "Created alert".into(),
            alert_id: String::new(),
            alias: String::new(),
            integration_id: None,
            processed_at: time::OffsetDateTime::UNIX_EPOCH,
        }))
    }

    fn id_of(outcome: Outcome) -> String {
        outcome.unwrap().unwrap().id
    }

    /// Requests on two current-thread runtimes (two loops), answered in one batch from a
    /// third thread: each gets its own answer, through its runtime's home.
    #[test]
    fn a_batch_answers_requests_of_several_runtimes_through_their_homes() {
        let (made_tx, made_rx) = std::sync::mpsc::channel();
        let loops: Vec<_> = (0..2)
            .map(|n| {
                let made_tx = made_tx.clone();
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    rt.block_on(async move {
                        answer_here();
                        let mut waits = Vec::new();
                        for i in 0..3 {
                            let (reply, rx) = Reply::new();
                            assert!(reply.home.is_some(), "a current-thread runtime has a home");
                            made_tx.send((format!("{n}-{i}"), reply)).unwrap();
                            waits.push((format!("{n}-{i}"), rx));
                        }
                        // (The batch is answered once every loop has made its requests.)
                        drop(made_tx);
                        for (id, rx) in waits {
                            assert_eq!(id_of(rx.await.unwrap()), id);
                        }
                    })
                })
            })
            .collect();
        drop(made_tx);
        let made: Vec<(String, Reply)> = made_rx.iter().collect();
        assert_eq!(made.len(), 6);
        let homes: std::collections::HashSet<_> = made
            .iter()
            .map(|(_, r)| Arc::as_ptr(r.home.as_ref().unwrap()))
            .collect();
        assert_eq!(
            homes.len(),
            2,
            "one home per runtime, shared by its requests"
        );
        let mut answers = Answers::default();
        for (id, reply) in made {
            answers.add(reply, status(&id));
        }
        assert_eq!(answers.homes.len(), 2);
        answers.send();
        for l in loops {
            l.join().unwrap();
        }
    }

    /// A runtime without a home (a multi-thread one, or one that did not ask) has its
    /// requests answered directly. And answers dropped unsent (an early return) are sent.
    #[test]
    fn elsewhere_answers_go_directly_and_none_is_lost_on_drop() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        rt.block_on(async {
            answer_here();
            let (reply, rx) = Reply::new();
            assert!(reply.home.is_none());
            let mut answers = Answers::default();
            answers.add(reply, status("direct"));
            assert_eq!(id_of(rx.await.unwrap()), "direct");
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let (reply, rx) = Reply::new();
            assert!(reply.home.is_none(), "no home unless asked for");
            answer_here();
            let (reply2, rx2) = Reply::new();
            assert!(reply2.home.is_some());
            {
                let mut answers = Answers::default();
                answers.add(reply2, status("home"));
            }
            assert_eq!(id_of(rx2.await.unwrap()), "home");
            {
                let mut answers = Answers::default();
                answers.add(reply, status("dropped"));
            }
            assert_eq!(id_of(rx.await.unwrap()), "dropped");
        });
    }

    /// A runtime that shut down closes its home, and answers for it go directly; the next
    /// runtime on the same thread does not use it, and gets its own when it asks.
    #[test]
    fn a_home_closes_with_its_runtime_and_the_next_runtime_gets_its_own() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (old_reply, old_rx) = rt.block_on(async {
            answer_here();
            Reply::new()
        });
        let old_home = old_reply.home.clone().unwrap();
        drop(rt);
        assert!(!old_home.lock().open, "the task's end closed the home");
        let mut answers = Answers::default();
        answers.add(old_reply, status("old"));
        answers.send();
        assert_eq!(id_of(old_rx.blocking_recv().unwrap()), "old");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            assert!(
                Reply::new().0.home.is_none(),
                "another runtime's home is not used"
            );
            answer_here();
            let (reply, rx) = Reply::new();
            let home = reply.home.clone().unwrap();
            assert!(!Arc::ptr_eq(&home, &old_home));
            let mut answers = Answers::default();
            answers.add(reply, status("new"));
            answers.send();
            assert_eq!(id_of(rx.await.unwrap()), "new");
        });
    }
}
