//! One gather printed and delivered: the gatherer's rows encoded in the
//! configured format into a reused buffer, then handed to the sink (stdout
//! or the `--output` file). Used by the one-shot run and the loops.

use crate::sink::{Delivery, Sink};
use telegraf_netstat::Format;

use crate::gather::{Collected, Gatherer};
use crate::signals::Interrupt;

/// How one gather ended.
pub enum Outcome {
    /// The metrics were delivered; `failed` namespaces could not be counted
    /// (each said on stderr).
    Delivered {
        failed: usize,
    },
    /// Nothing could be counted (said on stderr); nothing was delivered.
    GatherFailed,
    NotDelivered(Delivery),
    /// `Interrupt::stop_requested` said so; the rest of the gather was
    /// dropped.
    Stopped,
}

/// The format, the sink and the output buffer, reused by every gather.
pub struct Printer {
    format: Format,
    sink: Sink,
    out: Vec<u8>,
}

impl Printer {
    pub fn new(format: Format, sink: Sink) -> Printer {
        Printer {
            format,
            sink,
            out: Vec::with_capacity(1024),
        }
    }

    /// Whether gathers go to the `--output` file.
    pub fn to_file(&self) -> bool {
        self.sink.is_file()
    }

    /// One gather, printed and delivered unless nothing could be counted.
    pub fn gather(&mut self, gatherer: &mut Gatherer, interrupt: &mut dyn Interrupt) -> Outcome {
        let failed = match gatherer.collect(interrupt) {
            Collected::Counted { failed } => failed,
            Collected::Failed => return Outcome::GatherFailed,
            Collected::Stopped => return Outcome::Stopped,
        };
        gatherer.rows().encode(self.format, &mut self.out);
        match self
            .sink
            .deliver(&self.out, &mut |fd| interrupt.wait_writable(fd))
        {
            Ok(()) => Outcome::Delivered { failed },
            Err(Delivery::Stopped) => Outcome::Stopped,
            Err(d) => Outcome::NotDelivered(d),
        }
    }
}
