//! Shared by the fuzz targets: the property checks live in `props.rs`, which the stable test
//! suite (`tests/properties.rs`) includes as well, so both check the same properties.

#[path = "props.rs"]
pub mod props;
