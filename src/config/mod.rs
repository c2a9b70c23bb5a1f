//! Configuration: the project file (`klines.yml`) and, for warehouses, `profiles.yml`.

pub mod profiles;
pub mod project;
pub mod template;

pub use project::Project;
