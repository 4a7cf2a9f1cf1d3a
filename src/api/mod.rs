//! The custom resources idbind serves (group `idbind.dev`, version `v1alpha1`) and their CRDs.

pub mod binding;
pub mod crd;
pub mod policy;
