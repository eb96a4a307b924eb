//! The crate's files form no import cycle: the connection layer (`conn.rs`) sits under
//! the direct operations (`store.rs`) and the batchers (`batch.rs`), which do not import
//! each other's internals back.

use tenantry_testing::imports::{cycles, read_sources};

#[test]
fn no_two_files_import_each_other() {
    let src = read_sources(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
        .expect("the crate's sources are readable");
    assert_eq!(cycles(&src), Vec::<Vec<String>>::new(), "import cycles");
}
