//! Errors with stable codes (the JavaScript binding's `err.code`).

use std::fmt;

/// Every error code of shmq, in every binding (the JS one gets the list
/// generated, `lib/constants.ts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// No space became free in time.
    Full,
    /// No message arrived in time.
    Empty,
    /// This end, or every end of the other side, has closed.
    Closed,
    /// A message larger than the queue's `max_message_size`.
    TooLarge,
    /// A value the binding cannot encode.
    NotCloneable,
    /// A value only another runtime can decode (a pickle in Node.js, a
    /// V8-serialized value in Python); the message is consumed.
    ForeignValue,
    /// No such queue (or it was closed by all its ends).
    NotFound,
    /// Bad input, or shared memory that is not a valid queue.
    Invalid,
    /// The shared-memory filesystem is full.
    NoSpace,
    /// No backend for this platform.
    UnsupportedPlatform,
    /// An operating-system failure with no better code (the message names it).
    Os,
}

impl Code {
    pub const ALL: [Code; 11] = [
        Code::Full,
        Code::Empty,
        Code::Closed,
        Code::TooLarge,
        Code::NotCloneable,
        Code::ForeignValue,
        Code::NotFound,
        Code::Invalid,
        Code::NoSpace,
        Code::UnsupportedPlatform,
        Code::Os,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::Full => "ERR_SHMQ_FULL",
            Code::Empty => "ERR_SHMQ_EMPTY",
            Code::Closed => "ERR_SHMQ_CLOSED",
            Code::TooLarge => "ERR_SHMQ_TOO_LARGE",
            Code::NotCloneable => "ERR_SHMQ_NOT_CLONEABLE",
            Code::ForeignValue => "ERR_SHMQ_FOREIGN_VALUE",
            Code::NotFound => "ERR_SHMQ_NOT_FOUND",
            Code::Invalid => "ERR_SHMQ_INVALID",
            Code::NoSpace => "ERR_SHMQ_NO_SPACE",
            Code::UnsupportedPlatform => "ERR_SHMQ_UNSUPPORTED_PLATFORM",
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

/// A binding uses the code as its errors' `code` (napi-rs: `Error<Code>`).
impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}
