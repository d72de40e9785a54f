/**
 * Experiment, not product code: tfjs' multi-threaded wasm build (XNNPACK over a pthread pool)
 * under Node, to compare with data-parallel worker threads. tfjs refuses it under Node
 * (WASM_HAS_MULTITHREAD_SUPPORT is false when IS_NODE, tfjs issue 3830) and its loader hands
 * Emscripten Blob URLs that Node's worker_threads cannot start. The build itself supports
 * Node, so this loads it directly: the pthread worker script written to a temp file, the main
 * script and .wasm by path. Two more catches: the C++ side caps the pool at
 * emscripten_num_logical_cores() / 2 (it assumes 2 hyper-threads per core), which is 1 on a
 * 2-CPU machine, so os.cpus() is doubled while the module initialises; and the memory is
 * made large up front, because occmap's gradient kernels read the heap through views that a
 * shared-memory growth would leave short.
 *
 *   node dist/bench/wasm-threaded.js [--threads 2] [--batch 64] [--steps 6] [--models classifier,unet]
 */
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { tf } from '../src/runtime/tfjs.js';
import { runParallelTrainBench, type ParallelBenchModel } from './train-parallel.js';

const require = createRequire(import.meta.url);

interface EmscriptenModule {
  cwrap(name: string, ret: string | null, args: string[]): (...a: unknown[]) => unknown;
  tfjs?: Record<string, unknown>;
}

/** Register the threaded build as tfjs' 'wasm' backend with `threads` XNNPACK threads. */
export async function useThreadedWasm(threads: number): Promise<void> {
  const wasmPkg = require('@tensorflow/tfjs-backend-wasm') as {
    BackendWasm: new (m: unknown) => tf.KernelBackend;
    setThreadsCount(n: number): void;
  };
  const factory = require('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.js') as (cfg: object) => Promise<EmscriptenModule>;
  const { wasmWorkerContents } = require('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.worker.js') as { wasmWorkerContents: string };
  const workerFile = path.join(os.tmpdir(), `occmap-tfjs-pthread-${process.pid}.js`);
  // The same escaping tfjs applies before making its Blob.
  writeFileSync(workerFile, wasmWorkerContents.replace(/\n/g, '\\n'));
  const mainJs = require.resolve('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.js');
  const wasmFile = require.resolve('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.wasm');
  const realCpus = os.cpus;
  const cpus = realCpus();
  os.cpus = () => Array.from({ length: 2 * Math.max(threads, cpus.length) }, (_, i) => cpus[i % cpus.length]);
  let mod: EmscriptenModule;
  try {
    mod = await factory({
      locateFile: (p: string) => (p.endsWith('.worker.js') ? workerFile : p.endsWith('.wasm') ? wasmFile : p),
      mainScriptUrlOrBlob: mainJs,
      INITIAL_MEMORY: 1024 * 1024 * 1024,
    });
  } finally {
    os.cpus = realCpus;
  }
  mod.tfjs = {
    init: mod.cwrap('init', null, []),
    initWithThreadsCount: mod.cwrap('init_with_threads_count', null, ['number']),
    getThreadsCount: mod.cwrap('get_threads_count', 'number', []),
    registerTensor: mod.cwrap('register_tensor', null, ['number', 'number', 'number']),
    disposeData: mod.cwrap('dispose_data', null, ['number']),
    dispose: mod.cwrap('dispose', null, []),
  };
  wasmPkg.setThreadsCount(threads);
  tf.removeBackend('wasm');
  tf.registerBackend('wasm', () => new wasmPkg.BackendWasm(mod), 3);
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const opt = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const threads = Number(opt('--threads') ?? 2);
  await useThreadedWasm(threads);
  const log = (s: string) => process.stdout.write(s + '\n');
  const r = await runParallelTrainBench({
    batchSize: opt('--batch') ? Number(opt('--batch')) : undefined,
    steps: opt('--steps') ? Number(opt('--steps')) : undefined,
    models: opt('--models')?.split(',') as ParallelBenchModel[] | undefined,
    workers: [1],
    log,
  });
  const threadsUsed = (require('@tensorflow/tfjs-backend-wasm') as { getThreadsCount(): number }).getThreadsCount();
  log(`threaded wasm build, ${threadsUsed} XNNPACK thread(s); load average ${r.loadAverage.map((v) => v.toFixed(2)).join(' ')}`);
  process.exit(0); // the pthread pool keeps the process alive
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((e) => {
    process.stderr.write(`wasm-threaded: ${e instanceof Error ? e.stack : String(e)}\n`);
    process.exit(1);
  });
}
