//! Reporting an error with its whole cause chain, for one structured log field. The
//! platform uses this same function (`petportrait_core::errors::error_chain`).

/// `outer: inner: innermost`.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
