/**
 * `occmap demo` (= `npm start`): the whole system on the shipped HiTS 2015 stamps in minutes:
 * dataset -> classifier -> exact maps -> the best explainer -> evaluation -> report, through
 * the same resumable study code as `occmap experiments` (preset 'demo': one explainer).
 */
import { refuseOutputOverInput } from '../util/paths.js';
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { writeDataset } from '../data/dataset.js';
import { defaultArchivePath } from '../data/hits2015.js';
import { buildHits2015Parallel } from '../data/hits2015/derive-parallel.js';
import { PRESETS } from '../experiments/plan.js';
import { runExperiments, type RunExperimentsSummary } from '../experiments/seed.js';
import { describeRun } from '../experiments/report.js';
import { ensureDir } from '../util/atomic.js';
import { UserError } from '../util/errors.js';
import { formatDuration, ProgressPrinter } from '../util/progress.js';

export interface DemoOptions {
  out: string;
  seed: string;
  quiet?: boolean;
}

/** The short summary printed at the end (pure: tested on a results object). */
export function demoSummary(s: RunExperimentsSummary, wallSeconds: number, datasetSeconds = 0): string[] {
  const r = s.results;
  const run = r.runs.find((x) => x.name === r.demo?.run) ?? r.runs[0];
  const e = run.metrics.explainer;
  const mm = run.metrics.meanMap;
  const snr = run.metrics.snrSaliency;
  const ex = run.metrics.exactMap;
  const f = (v: number | undefined, d = 3) => (v === undefined || !Number.isFinite(v) ? 'n/a' : v.toFixed(d));
  const lines = [
    `occmap demo: done in ${formatDuration(wallSeconds)}`,
    `  data        ${r.data.stamps} HiTS 2015 stamps (${r.data.supernova} supernova, ${r.data.nonSupernova} not) from ${r.data.objects ?? '?'} objects`,
    `  classifier  validation accuracy ${f(r.classifier.valAccuracy)} (balanced ${f(r.classifier.valBalancedAccuracy)}) on ${r.classifier.heldOut ?? '?'} held-out stamps`,
    `  exact maps  ${r.occlusion.maps} maps, ${r.occlusion.inferencesPerMap} classifier inferences each`,
    `  explainer   ${describeRun(run)}: ${run.epochsRun} epochs; held-out maps of ${r.data.datasets.mixed.heldOutObjects} unseen objects:`,
    `              MSE ${f(run.mse.val, 5)} (train ${f(run.mse.train, 5)}; seed's best on HiTS 2013: 0.00909)`,
    `              SSIM ${f(e.ssim?.mean)}  Spearman ${f(e.spearman?.mean)} (top 10%: ${f(e.spearmanTop?.mean)})  top-10% IoU ${f(e.iou?.mean)}`,
    `              baselines: mean map SSIM ${f(mm?.ssim?.mean)} / Spearman ${f(mm?.spearman?.mean)} / IoU ${f(mm?.iou?.mean)}; |SNR| ${f(snr?.ssim?.mean)} / ${f(snr?.spearman?.mean)} / ${f(snr?.iou?.mean)}`,
    `              deletion AUC ${f(e.deletion?.mean)} (exact map ${f(ex?.deletion?.mean)}), insertion AUC ${f(e.insertion?.mean)} (exact ${f(ex?.insertion?.mean)})`,
  ];
  if (r.timing) {
    const t = r.timing;
    lines.push(
      `  speed       exact ${(t.exactPerMap * 1e3).toFixed(1)} ms/map, estimated ${(t.estimatedPerMap * 1e3).toFixed(3)} ms/map: ${t.speedupThroughput.toFixed(0)}x faster (one stamp alone: ${(t.exactLatency * 1e3).toFixed(1)} vs ${(t.estimatedLatency * 1e3).toFixed(2)} ms, ${t.speedupLatency.toFixed(0)}x)`,
    );
  }
  const phases = Object.entries({ dataset: datasetSeconds, ...r.phases }).filter(([, v]) => v >= 0.05);
  lines.push(`  phases      ${phases.map(([k, v]) => `${k} ${v < 60 ? `${v.toFixed(1)}s` : formatDuration(v)}`).join(', ')}`);
  lines.push(`  report      ${s.files.html}`);
  return lines;
}

export async function runDemo(o: DemoOptions): Promise<{ summary: RunExperimentsSummary; lines: string[] }> {
  const seed = Number(o.seed);
  if (!/^\s*\d+\s*$/.test(o.seed) || !Number.isSafeInteger(seed)) throw new UserError(`--seed must be a non-negative integer, got '${o.seed}'`);
  const t0 = performance.now();
  const stamp = () => `[${formatDuration((performance.now() - t0) / 1000).padStart(6)}]`;
  const log = (s: string) => process.stderr.write(`${stamp()} ${s}\n`);
  // The shipped stamps are the demo's input: an --out over the package's data must not touch them.
  refuseOutputOverInput([{ flag: 'the shipped HiTS 2015 stamps', path: defaultArchivePath() }], [{ flag: '--out', path: o.out, kind: 'tree', owns: ['hits2015.npz'] }]);
  ensureDir(o.out);
  const data = path.join(o.out, 'hits2015.npz');
  const td = performance.now();
  if (!existsSync(data)) {
    log('demo: deriving the HiTS 2015 dataset from the shipped stamps (template, science, difference, SNR difference; balanced)');
    const { dataset, summary } = await buildHits2015Parallel({ balance: 'undersample', seed: 1, onProgress: o.quiet ? undefined : new ProgressPrinter().callback, command: 'occmap demo' });
    await writeDataset(data, dataset);
    log(`demo: ${summary.final.n} stamps from ${summary.final.objects} objects (${summary.final.label1} supernova, ${summary.final.label0} not) -> ${data}`);
  } else log(`demo: dataset ${data} (made by an earlier run)`);
  const datasetSeconds = (performance.now() - td) / 1000;
  const summary = await runExperiments({
    data,
    out: o.out,
    preset: PRESETS.demo,
    seed,
    command: ['occmap', ...process.argv.slice(2)].join(' ') || 'occmap demo',
    quiet: o.quiet,
    log,
    onProgress: o.quiet ? undefined : new ProgressPrinter().callback,
  });
  const lines = demoSummary(summary, (performance.now() - t0) / 1000, datasetSeconds);
  process.stdout.write(lines.join('\n') + '\n');
  return { summary, lines };
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('the whole pipeline on the shipped HiTS 2015 stamps in minutes: data, classifier, exact maps, explainer, evaluation, report')
    .option('--out <dir>', 'output directory (rerun to continue an interrupted demo)', 'occmap-demo')
    .option('--seed <n>', 'seed for the split, the training and the held-out objects', '0')
    .option('--quiet', 'less progress output')
    .addHelpText(
      'after',
      `
Same as 'npm start'. 3.5-6.5 minutes on an idle 2-core machine (the shorter with AVX-512):
derives the 966-stamp balanced HiTS 2015 dataset, trains the seed's CNN classifier, computes the exact occlusion map of every
stamp (the map 626 classifier inferences give, computed by the incremental engine for a
quarter of their arithmetic on ONNX Runtime), trains the U-Net explainer (encoder from
the classifier, skip connections) conditioned one-hot on the class (the best variant measured
on held-out HiTS 2015 objects), evaluates it on held-out objects against the
mean-map and |SNR| baselines, times exact vs estimated maps and writes OUT/index.html.

Examples:
  $ occmap demo
  $ occmap demo --out /tmp/demo --seed 1`,
    )
    .action(async (o: DemoOptions) => {
      await runDemo(o);
    });
}
