/**
 * The BullMQ sandboxed processor of `occmap worker`: runs in a worker thread that BullMQ
 * keeps for the next shard (so the model and data stay loaded), while the main thread
 * renews the job locks, whatever blocks this thread (loading GBs of stamps, a tfjs batch).
 */
import { workerData } from 'node:worker_threads';
import { shardProcessor } from './queue.js';

const o = (workerData ?? {}) as { threads?: number };

export default shardProcessor({ threads: o.threads });
