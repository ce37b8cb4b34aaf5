//! How a command fails: a usage error (exit code 2) or anything else (1), as one line.

use super::options::Usage;

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// Bad flags or values.
    Usage(Usage),
    /// Device `id` does not exist.
    NoDevice(u32),
    /// Anything else.
    Runtime(String),
    /// Stdout was closed by its reader (a broken pipe): nothing to say, and no one to say it
    /// to, but what was asked for was not delivered.
    Quiet,
}

impl Failure {
    /// The one-line message (empty for [`Failure::Quiet`]).
    pub fn message(&self) -> String {
        match self {
            Failure::Usage(u) => u.0.clone(),
            Failure::NoDevice(id) => format!("device {id} does not exist"),
            Failure::Runtime(m) => m.clone(),
            Failure::Quiet => String::new(),
        }
    }
}

impl From<Usage> for Failure {
    fn from(u: Usage) -> Failure {
        Failure::Usage(u)
    }
}

impl From<ublk::Error> for Failure {
    fn from(e: ublk::Error) -> Failure {
        match e {
            // Settings the library refused before asking the kernel: the user's to fix.
            ublk::Error::InvalidArgument { .. } => Failure::Usage(Usage(e.to_string())),
            e => Failure::Runtime(e.to_string()),
        }
    }
}
