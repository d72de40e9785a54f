import type { Command } from 'commander';
import { writeFileAtomic, assertWritable } from '../util/atomic.js';
import { UserError } from '../util/errors.js';

export function registerBench(program: Command): void {
  program
    .command('bench')
    .description('measure inference (and with --train, training) speed of the seed models on this machine, as ratios from one run')
    .option('--train', 'also measure training samples/s (seed autoencoder and classifier, batch 10 and 64, fast vs naive kernels; classifier, seed autoencoder and U-Net with 1 thread and all cores; the default explainer estimate vs the exact map)')
    .option('--only-train', 'measure training only')
    .option('--only-incremental', 'measure exact maps on the full vs the incremental engine only')
    .option('--sweep', 'incremental engine: also race every switch point to full computation and window-class count')
    .option('--seconds <s>', 'seconds per inference measurement', '3')
    .option('--steps <n>', 'timed optimiser steps per training measurement', '10')
    .option('--json <file>', 'also write all figures as JSON')
    .addHelpText(
      'after',
      `
Examples:
  occmap bench                         # classifier inferences/s per engine, exact vs estimated maps
  occmap bench --train --json b.json   # plus training speed; figures also as JSON
  occmap bench --only-incremental      # exact maps/s: full vs incremental engine, FLOPs, profile
  npm run bench                        # the same as 'occmap bench --train --json bench-results.json'

Figures depend on what else runs: close other work first; the load average is printed.`,
    )
    .action(async (o: { train?: boolean; onlyTrain?: boolean; onlyIncremental?: boolean; sweep?: boolean; seconds: string; steps: string; json?: string }) => {
      const seconds = Number(o.seconds);
      const steps = Number(o.steps);
      if (!(seconds > 0)) throw new UserError(`--seconds must be a positive number, got ${o.seconds}`);
      if (!(Number.isInteger(steps) && steps > 0)) throw new UserError(`--steps must be a positive integer, got ${o.steps}`);
      if (o.json) await assertWritable(o.json);
      const out: Record<string, unknown> = {};
      if (!o.onlyTrain && !o.onlyIncremental) {
        process.stderr.write('== inference ==\n');
        const { runInferenceBench } = await import('../../bench/inference-speed.js');
        out.inference = await runInferenceBench({ seconds });
      }
      if (!o.onlyTrain) {
        process.stderr.write('== exact maps: full vs incremental engine ==\n');
        const { runIncrementalBench } = await import('../../bench/incremental-speed.js');
        out.incremental = await runIncrementalBench({ seconds: 2 * seconds, sweep: o.sweep });
      }
      if (o.train || o.onlyTrain) {
        process.stderr.write('== training ==\n');
        const { runTrainBench, printTrainBench } = await import('../../bench/train-speed.js');
        const log = (line: string) => process.stderr.write(line + '\n');
        const r = await runTrainBench({ steps, profile: true, log });
        printTrainBench(r, log);
        out.training = r;
        process.stderr.write('\n== training threads (data-parallel through the training loop, batch 64) ==\n');
        const { runParallelTrainBench } = await import('../../bench/train-parallel.js');
        out.trainingThreads = await runParallelTrainBench({ log });
        process.stderr.write('\n== default explainer vs exact map (U-Net + one-hot with its classifier, one fused ONNX call) ==\n');
        const { runEstimateSpeedBench } = await import('../../bench/estimate-speed.js');
        out.estimate = await runEstimateSpeedBench({ seconds, log });
      }
      if (o.json) await writeFileAtomic(o.json, JSON.stringify(out, null, 2));
    });
}
