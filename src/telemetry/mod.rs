//! What the process tells about itself while it runs: the metric registry every layer
//! counts into, the relying parties' requests per document (reach), and the batched log
//! sink every log line goes through.

pub mod connections;
pub mod documents;
pub mod histogram;
pub mod lazy;
pub mod log_sink;
pub mod metrics;
pub mod publish;
pub mod reach;
