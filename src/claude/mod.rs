//! Everything about the `claude` CLI: its argument list (`args`), its output format
//! (`output`) and running it under supervision (`process`). Nothing outside this folder
//! knows a CLI flag or a stream-json field name.

pub mod args;
pub mod output;
pub mod process;

pub use args::{Conversation, RunSpec};
pub use output::{Denial, Line, ResultLine, Tokens};
pub use process::{End, Flow, Invocation, Limits, Outcome, RunEvent, SpawnError};
