//! Lines as a stream: an unbounded channel with a soft bound. Producers
//! stop reading pipes while [`LIMIT`] lines wait (backpressure without a
//! send that could block the capture), and the consumer wakes them.

use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use childfd_io::{JobId, Stream};
use tokio::sync::{Notify, mpsc};

/// Lines waiting in a channel before its producers stop reading.
const LIMIT: usize = 1024;

/// A line of a child's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Which stream it came from.
    pub stream: Stream,
    /// The line, without `\n`.
    pub line: Vec<u8>,
}

/// What the capture tasks send.
#[derive(Debug)]
pub(crate) enum Msg {
    Line(JobId, Stream, Vec<u8>, Option<Arc<str>>),
    Started(JobId, u32, Option<Arc<str>>),
}

/// How many lines wait, and the producers waiting for room.
#[derive(Debug, Default)]
pub(crate) struct Room {
    queued: AtomicUsize,
    freed: Notify,
}

impl Room {
    /// The consumer took one line.
    pub(crate) fn took_one(&self) {
        if self.queued.fetch_sub(1, Ordering::AcqRel) == LIMIT {
            self.freed.notify_waiters();
        }
    }
}

/// The producing end, for one job.
#[derive(Debug, Clone)]
pub(crate) struct LineSink {
    pub(crate) id: JobId,
    pub(crate) tag: Option<Arc<str>>,
    pub(crate) tx: mpsc::UnboundedSender<Msg>,
    pub(crate) room: Arc<Room>,
}

impl LineSink {
    /// Whether reading may go on: fewer than [`LIMIT`] lines wait, or
    /// nobody listens any more.
    pub(crate) fn has_room(&self) -> bool {
        self.room.queued.load(Ordering::Acquire) < LIMIT || self.tx.is_closed()
    }

    /// Resolves once [`has_room`](Self::has_room) holds. Cancel-safe.
    pub(crate) async fn wait_room(&self) {
        loop {
            let mut freed = pin!(self.room.freed.notified());
            freed.as_mut().enable();
            if self.has_room() {
                return;
            }
            tokio::select! {
                () = freed => {}
                () = self.tx.closed() => return,
            }
        }
    }

    pub(crate) fn send(&self, stream: Stream, line: &[u8]) {
        if self.tx.is_closed() {
            return;
        }
        self.room.queued.fetch_add(1, Ordering::AcqRel);
        if self
            .tx
            .send(Msg::Line(self.id, stream, line.to_vec(), self.tag.clone()))
            .is_err()
        {
            self.room.took_one();
        }
    }
}

pub(crate) fn channel() -> (LineSink, Lines) {
    let (tx, rx) = mpsc::unbounded_channel();
    let room = Arc::new(Room::default());
    let sink = LineSink {
        id: 0,
        tag: None,
        tx,
        room: room.clone(),
    };
    (sink, Lines { rx, room })
}

/// The lines of one [`output`](crate::output) call, from
/// [`Options::lines`](crate::Options::lines). Ends when the capture ends.
#[derive(Debug)]
pub struct Lines {
    rx: mpsc::UnboundedReceiver<Msg>,
    room: Arc<Room>,
}

impl Lines {
    /// The next line; `None` once the capture has ended and every line was
    /// taken.
    pub async fn next(&mut self) -> Option<Line> {
        std::future::poll_fn(|cx| self.poll_line(cx)).await
    }

    fn poll_line(&mut self, cx: &mut Context<'_>) -> Poll<Option<Line>> {
        loop {
            return match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Msg::Line(_, stream, line, _))) => {
                    self.room.took_one();
                    Poll::Ready(Some(Line { stream, line }))
                }
                Poll::Ready(Some(Msg::Started(..))) => continue,
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            };
        }
    }
}

impl futures_core::Stream for Lines {
    type Item = Line;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Line>> {
        self.get_mut().poll_line(cx)
    }
}
