//! One-shot mode: gather once, print, exit with a code that says whether
//! everything was counted.

use std::process::ExitCode;

use crate::sink::{Delivery, Sink};

use crate::cli::Config;
use crate::deliver::{Outcome, Printer};
use crate::exit::{EXIT_GATHER_FAILED, EXIT_NAMESPACE_FAILED, EXIT_OK};
use crate::gather::Gatherer;
use crate::signals::Uninterrupted;
use crate::state::StateFile;

pub fn run(config: Config, sink: Sink, mut state: Option<StateFile>) -> ExitCode {
    let mut gatherer: Gatherer = Gatherer::new(&config);
    let mut printer = Printer::new(config.format, sink);
    let log = *gatherer.log();
    if let Some(s) = &mut state {
        gatherer.recall_tcp_info(s.recall(&log));
    }
    let outcome = printer.gather(&mut gatherer, &mut Uninterrupted);
    // What was counted is kept, printed or not; a failed gather keeps the
    // last run's.
    if let (Some(s), Outcome::Delivered { .. } | Outcome::NotDelivered(_)) = (&state, &outcome) {
        s.keep(&log, gatherer.tcp_info_destinations());
    }
    match outcome {
        Outcome::Delivered { failed: 0 }
        | Outcome::NotDelivered(Delivery::Closed | Delivery::Stopped)
        | Outcome::Stopped => ExitCode::from(EXIT_OK),
        Outcome::Delivered { .. } => ExitCode::from(EXIT_NAMESPACE_FAILED),
        Outcome::NotDelivered(Delivery::Failed(e)) => {
            log.error(format_args!("cannot write the output: {e}"));
            ExitCode::from(EXIT_GATHER_FAILED)
        }
        Outcome::GatherFailed => ExitCode::from(EXIT_GATHER_FAILED),
    }
}
