//! Errors with the stable codes the JavaScript side turns into error classes.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    NotFound,
    Invalid,
    NoSpace,
    TooLarge,
    Closed,
    /// An operating-system failure with no better code (the message names it).
    Os,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::NotFound => "ERR_SHMQ_NOT_FOUND",
            Code::Invalid => "ERR_SHMQ_INVALID",
            Code::NoSpace => "ERR_SHMQ_NO_SPACE",
            Code::TooLarge => "ERR_SHMQ_TOO_LARGE",
            Code::Closed => "ERR_SHMQ_CLOSED",
            Code::Os => "ERR_SHMQ_OS",
        }
    }
}

#[derive(Debug)]
pub struct ShmqError {
    pub code: Code,
    pub message: String,
}

impl ShmqError {
    pub fn new(code: Code, message: String) -> Self {
        ShmqError { code, message }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ShmqError::new(Code::Invalid, message.into())
    }

    /// An operating-system failure that may pass (out of descriptors or
    /// memory), as opposed to a queue that is corrupt or gone.
    pub fn is_transient(&self) -> bool {
        matches!(self.code, Code::Os | Code::NoSpace)
    }
}

impl fmt::Display for ShmqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ShmqError {}

/// napi-rs errors only carry its own status codes, so the stable code leads
/// the message (`"ERR_SHMQ_INVALID: ..."`) and the TypeScript wrapper
/// (`lib/errors.ts`) moves it into the error's `code`.
impl From<ShmqError> for napi::Error {
    fn from(e: ShmqError) -> Self {
        napi::Error::new(napi::Status::GenericFailure, e.to_string())
    }
}
