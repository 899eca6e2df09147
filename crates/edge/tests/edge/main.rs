//! moat-edge's tests: one binary, a module per behaviour, over real files in temporary directories.

mod grants;
mod join;
mod link;
mod support;
mod tokens;
