/** Engine name of the incremental engine in shard identities and outputs (thread count stripped there). */
export const INCREMENTAL_ENGINE = 'onnxruntime-incremental';
