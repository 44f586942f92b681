//! The diff of two contents lives in the domain, shared with the web UI.

pub use cutover_domain::diff::{fields, lines, render_fields};
