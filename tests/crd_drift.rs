//! `crds/` must hold exactly what `idbind crd` prints: the checked-in CRD is what users apply.

#[test]
fn checked_in_crd_matches_generated() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds").join(idbind::crd::CRD_FILE);
    let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let generated = idbind::crd::crds_yaml().expect("CRD serializes");
    assert!(
        on_disk == generated,
        "{} is stale: run `make crds` and commit the result",
        path.display()
    );
}
