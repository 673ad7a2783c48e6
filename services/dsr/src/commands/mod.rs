//! One module per subcommand.

pub mod generate;
pub mod process;
pub mod programs;
pub mod publish;
pub mod route;
pub mod schemas;
pub mod score;
pub mod tail;
pub mod topics;
