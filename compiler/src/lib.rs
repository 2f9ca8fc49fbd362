//! placeholder
pub mod interpreter;
pub mod pyc;
pub mod walk;
pub mod workers;
