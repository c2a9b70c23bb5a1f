//! `ephemeral`: nothing to build; the model is inlined as a CTE where it is used.

use super::{Build, Built, Materialization};

pub struct Ephemeral;

#[async_trait::async_trait]
impl Materialization for Ephemeral {
    fn name(&self) -> &'static str {
        "ephemeral"
    }

    fn inlined(&self) -> bool {
        true
    }

    async fn build(&self, _b: &Build<'_>) -> anyhow::Result<Built> {
        Ok(Built::new(0, "nothing to build"))
    }
}
