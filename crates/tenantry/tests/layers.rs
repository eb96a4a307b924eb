//! The library's layers point down: a module imports only modules of its own layer or
//! lower ones (see ARCHITECTURE.md, "Layers"). This reads the sources, so an upward
//! import fails CI the moment it is written.

use tenantry_testing::imports::{Sources, read_sources, upward_imports};

/// The layers, bottom first. A module sits in the layer of its longest listed prefix.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "base",
        &[
            "caller",
            "checkpoint",
            "cluster",
            "cycles",
            "error",
            "failure",
            "identity",
            "key",
            "params",
            "partition",
            "store",
        ],
    ),
    (
        "services",
        &[
            "store::memory",
            "store::redb",
            "telemetry",
            "reactive",
            "config",
            "scope",
            "quota",
        ],
    ),
    ("instance", &["instance", "component"]),
    ("managers", &["manager"]),
    ("kernel", &["kernel"]),
    ("bus", &["bus"]),
    ("pods", &["pod"]),
    ("runtime", &["runtime", "providers", "crate"]),
];

fn sources() -> Sources {
    read_sources(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
        .expect("the crate's sources are readable")
}

#[test]
fn no_module_imports_a_higher_layer() {
    let problems = upward_imports(&sources(), LAYERS);
    assert!(
        problems.is_empty(),
        "upward imports:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_check_fails_on_an_upward_import_into_any_lower_layer() {
    // The same sources with one upward import written into each layer below the top.
    for (layer, members) in &LAYERS[..LAYERS.len() - 1] {
        let mut src = sources();
        let module = src
            .keys()
            .find(|m| members.contains(&m.as_str()))
            .cloned()
            .unwrap_or_else(|| panic!("layer {layer} has a module"));
        src.get_mut(&module)
            .expect("module present")
            .push_str("\nuse crate::runtime::RuntimeBuilder;\n");
        let problems = upward_imports(&src, LAYERS);
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with(&format!("{module} (layer {layer}) imports runtime"))),
            "an upward import from {module} went unnoticed: {problems:?}"
        );
    }
}
