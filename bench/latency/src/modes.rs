//! `--mode embedded|distributed|both`, shared by the benchmarks that run the app in
//! either deployment shape.

use clap::ValueEnum;
use petportrait_tests::Mode;

#[derive(Clone, Copy, ValueEnum)]
pub enum Which {
    Embedded,
    Distributed,
    Both,
}

impl Which {
    /// The modes to measure, in order.
    pub fn modes(self) -> &'static [Mode] {
        match self {
            Which::Embedded => &[Mode::Embedded],
            Which::Distributed => &[Mode::Distributed],
            Which::Both => &[Mode::Embedded, Mode::Distributed],
        }
    }
}
