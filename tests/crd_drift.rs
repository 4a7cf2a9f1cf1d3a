//! `crds/` must hold exactly what `idbind crd` generates: the checked-in CRDs are what users apply.

#[test]
fn checked_in_crds_match_generated() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let files = idbind::api::crd::crd_files().expect("CRDs serialize");
    assert_eq!(files.len(), 2, "one file per CRD");
    for (name, generated) in files {
        let path = dir.join(name);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "{} is stale or missing: run `make crds` and commit the result",
            path.display()
        );
    }
}
