//! page tests come next
