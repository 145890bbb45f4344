//! Why a config was refused.

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {file}: {message}")]
    Read { file: String, message: String },
    #[error("invalid config {file}: `{path}`: {message}")]
    Invalid {
        file: String,
        /// The key path, e.g. `models[1].input-usd-per-mtok`.
        path: String,
        message: String,
    },
}
