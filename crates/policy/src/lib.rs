//! Access policies: which requests (host × path) may pass with which client certificate.
//!
//! Pure: [`evaluate`] takes the compiled [`Rule`]s, what is known about the [`Request`] and the
//! verified [`Client`] (if any), and returns a [`PolicyDecision`] naming the deciding rule and
//! why. The gateway, `moat verify` and the tests all ask this one function.
//!
//! ```text
//! rules (in order) ──first whose hosts × paths cover the request──> action
//!   allow:  any include  ∧  all require  ∧  no exclude  ∧  all expressions  → Allow, else refused
//!   deny:   refused          bypass: Allow without a certificate
//! no rule covers it → refused
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod decide;
mod evaluate;
mod expression;
mod lint;
mod pattern;
mod request;
mod rule;
mod selector;

pub use decide::{Admission, admit_request, decide_connection};
pub use evaluate::{Outcome, PolicyDecision, Refusal, evaluate};
pub use expression::{Expression, ExpressionError};
pub use lint::{Warning, lint};
pub use pattern::{HostPattern, PathPattern, TextPattern};
pub use request::{Client, HttpRequest, Request};
pub use rule::{
    Action, Rule, RuleError, RuleParts, certificate_required_at_handshake,
    rules_use_connection_facts, rules_use_issuer,
};
pub use selector::{Selector, SelectorError, SelectorValue};
