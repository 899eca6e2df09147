//! Fuzzes `Expression::compile` on CEL text, then evaluates it in a rule over a fixed request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_policy::{Action, Expression, Rule, RuleParts};

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let expression = match Expression::compile(source) {
        Ok(expression) => expression,
        Err(error) => return drop(error.to_string()),
    };
    let rule = Rule::new(RuleParts {
        name: "cel".to_owned(),
        hosts: Vec::new(),
        paths: Vec::new(),
        action: Action::Allow,
        include: Vec::new(),
        require: Vec::new(),
        exclude: Vec::new(),
        expressions: vec![expression],
    })
    .expect("an allow rule with an expression is valid");
    moat_fuzz::judge(&[rule]);
});
