//! Errors you can match and read: custom models and tools registered under the wrong name.

use super::*;
use baton_actors::{Component, RuntimeError};

#[tokio::test]
async fn a_misnamed_registration_gets_a_did_you_mean() {
    let topology = || {
        TopologyBuilder::new("t")
            .model("fake", dollar_per_mtok())
            .tool("echo", ToolSpec::custom())
            .agent("solo", AgentSpec::new(["fake"]).tools(["echo"]))
            .build()
            .expect("valid")
    };
    let Err(e) = Runtime::builder(topology())
        .model("Fake", ScriptedModel::always("Fake", "hi"))
        .tool(echo())
        .start()
        .await
    else {
        panic!("started with a misnamed model");
    };
    match &e {
        RuntimeError::NotRegistered {
            kind: Component::Model,
            name,
            registered,
        } => assert_eq!(
            (name.as_str(), registered.as_deref()),
            ("fake", Some("Fake"))
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        e.to_string(),
        "model `fake` is declared `provider: custom` but no implementation was registered under that name (RuntimeBuilder::model); code registered `Fake`: did you mean to register it as `fake`?"
    );
    // Registered under the right name, plus one the topology does not declare.
    let Err(e) = Runtime::builder(topology())
        .model("fake", ScriptedModel::always("fake", "hi"))
        .model("fakes", ScriptedModel::always("fakes", "hi"))
        .tool(echo())
        .start()
        .await
    else {
        panic!("started with an undeclared model");
    };
    assert!(
        matches!(&e, RuntimeError::Undeclared { kind: Component::Model, name, declared }
                if name == "fakes" && declared.as_deref() == Some("fake")),
        "{e:?}"
    );
    assert!(e.to_string().ends_with("did you mean `fake`?"), "{e}");
}
