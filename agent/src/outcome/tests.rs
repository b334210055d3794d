use super::*;

fn recreate() -> Step {
    Step::RecreateContainer {
        service: "web/api".into(),
        container: "web-api-1".into(),
        id: "abc".into(),
        reasons: vec!["environment changed".into()],
    }
}

#[test]
fn a_plan_step_becomes_a_typed_change_with_its_diff_line() {
    let c = Change::of_step(&recreate()).expect("a change");
    assert_eq!(
        c.subject,
        Subject {
            kind: SubjectKind::Service,
            stack: Some("web".into()),
            name: "api".into()
        }
    );
    assert_eq!(
        c.action,
        Action::Recreate {
            reasons: vec!["environment changed".into()]
        }
    );
    assert_eq!(c.line, recreate().to_string());
    let blocked = Step::Blocked {
        subject: "container x".into(),
        reason: "taken".into(),
    };
    assert!(Change::of_step(&blocked).is_none());
}

#[test]
fn outcome_round_trips_through_json_and_renders_once() {
    let mut o = Outcome {
        host: "h".into(),
        revision: Some("c0ffee".into()),
        ..Default::default()
    };
    o.absorb(
        3,
        1,
        vec![Change::of_step(&recreate()).expect("change")],
        vec![ItemError::new(
            Some(Subject::service("web/db")),
            "container web-db-1: port taken",
        )],
    );
    let o = o.settle();
    assert_eq!(o.result, PassResult::Failed);
    let json = serde_json::to_value(&o).expect("serialises");
    assert_eq!(json["result"]["kind"], "failed");
    assert_eq!(json["changes"][0]["action"]["action"], "recreate");
    assert_eq!(json["changes"][0]["subject"]["kind"], "service");
    assert_eq!(json["errors"][0]["subject"]["name"], "db");
    let back: Outcome = serde_json::from_value(json).expect("deserialises");
    assert_eq!(back, o);
    let t = o.text();
    assert_eq!(
        t.out,
        "~ container web-api-1 (web/api): recreate, environment changed\n1 failed, 3 tried (1 changed)\n"
    );
    assert_eq!(t.err, "failed: container web-db-1: port taken\n");
    assert_eq!(o.result.label(), "error");
}

#[test]
fn a_pass_that_stopped_says_why() {
    let held = Outcome::stopped(
        "h",
        None,
        PassResult::Held {
            reason: Hold::Suspended,
        },
    );
    assert_eq!(held.result.label(), "held");
    assert!(!held.result.ran());
    assert_eq!(held.error_summary().as_deref(), Some("suspended"));
    let invalid = Outcome::stopped(
        "h",
        Some("c1".into()),
        PassResult::Invalid {
            diagnostics: vec![DiagnosticView {
                file: "stacks/web/compose.yaml".into(),
                line: Some(3),
                path: "services.api.image".into(),
                message: "must not be empty".into(),
                severity: Severity::Error,
            }],
        },
    );
    let err = invalid.text().err;
    assert!(err.contains("stacks/web/compose.yaml:3"), "{err}");
    assert!(
        err.ends_with("1 problem(s) in the desired state; nothing was changed\n"),
        "{err}"
    );
}
