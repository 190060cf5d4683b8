//! STUB
#[derive(Debug, thiserror::Error, PartialEq, Eq)] pub enum PathError { #[error("x")] X }
pub fn normalize_path(p: &str) -> Result<std::borrow::Cow<'_, str>, PathError> { Ok(p.into()) }
