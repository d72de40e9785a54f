/** `occmap experiments --data FILE --out DIR`: the seed's Exp. 1-4 and a report, resumable. */
import type { Command } from 'commander';
import { presetOf } from '../experiments/plan.js';
import { runExperiments, type RunExperimentsSummary } from '../experiments/seed.js';
import { describeRun } from '../experiments/report.js';
import { UserError } from '../util/errors.js';
import { formatDuration, ProgressPrinter } from '../util/progress.js';

export interface ExperimentsCliOptions {
  data: string;
  out: string;
  preset: string;
  classifier?: string;
  seed: string;
  quiet?: boolean;
}

const EXAMPLES = `
Examples:
  $ occmap dataset hits2015 --out hits.npz
  $ occmap experiments --data hits.npz --out study --preset quick
      every supernova map (up to 500) and as many others; Exp. 1-4; about half an hour here
  $ occmap experiments --data hits2013.pkl --out study-paper --preset paper --classifier clf
      the seed's sizes (20,000 maps per class when the data has them) with a given classifier
  $ occmap experiments --data maps.npz --classifier clf --out study-paper --preset paper
      on maps 'occmap occlude' already made with clf (seed parameters): they are used as they
      are, and the objects clf held out are the study's held-out objects
  $ occmap experiments --data hits.npz --out study --preset quick
      (again) continues an interrupted study; a finished one only rewrites the report

What it does, as the seed (docs/seed.md, "Experiments"): trains the classifier (unless
--classifier), maps the selected stamps exactly (resumable shards), builds the supernova,
non-supernova and mixed map datasets, then trains and evaluates
  Exp. 1  normal vs frozen autoencoder on the three datasets,
  Exp. 2  numeral vs one-hot conditioning (frozen, mixed),
  Exp. 3  cuts 0 / 1 / 2 (frozen, mixed) with loss curves,
  Exp. 4  the best Exp. 1 model on supernova data and the best Exp. 2 model, 5 seeds each.
Every run holds out the same objects (by id). Writes DIR/index.html (self-contained),
DIR/report.md (+ DIR/figures/), DIR/results.json; models under DIR/runs/<name>/.`;

function seedOf(v: string): number {
  const n = Number(v);
  if (!/^\s*\d+\s*$/.test(v) || !Number.isSafeInteger(n)) throw new UserError(`--seed must be a non-negative integer, got '${v}'`);
  return n;
}

/** The headline lines printed at the end of a study. */
export function headline(s: RunExperimentsSummary): string[] {
  const r = s.results;
  const lines: string[] = [];
  const run = (n: string) => r.runs.find((x) => x.name === n)!;
  if (r.exp1) lines.push(`Exp 1: best ${describeRun(run(r.exp1.bestOverall))}, val MSE ${run(r.exp1.bestOverall).mse.val.toFixed(5)} (seed: frozen on supernova data 0.01170)`);
  if (r.exp2) lines.push(`Exp 2: ${describeRun(run(r.exp2.best))}, val MSE ${run(r.exp2.best).mse.val.toFixed(5)} (seed: one-hot 0.01052)`);
  if (r.exp3) lines.push(`Exp 3: val MSE by cut ${r.exp3.runs.map((n) => run(n).mse.val.toFixed(5)).join(' / ')} (seed: uncut 0.01416, every cut worse)`);
  if (r.exp4) {
    for (const g of r.exp4.groups) lines.push(`Exp 4: ${describeRun(run(g.base))}: val MSE ${g.val.mean.toFixed(5)} +- ${g.val.std.toFixed(5)} over ${g.val.n}`);
    lines.push(`       (seed: frozen SN 0.01309 +- 0.00132; frozen + one-hot mixed 0.00909 +- 0.00131)`);
  }
  if (r.timing) lines.push(`speed: exact ${(r.timing.exactPerMap * 1e3).toFixed(1)} ms/map vs estimated ${(r.timing.estimatedPerMap * 1e3).toFixed(3)} ms/map: ${r.timing.speedupThroughput.toFixed(0)}x (one stamp: ${r.timing.speedupLatency.toFixed(0)}x)`);
  return lines;
}

export async function runExperimentsCli(o: ExperimentsCliOptions): Promise<RunExperimentsSummary> {
  const preset = presetOf(o.preset, true);
  const s = await runExperiments({
    data: o.data,
    out: o.out,
    preset,
    classifier: o.classifier,
    seed: seedOf(o.seed),
    command: ['occmap', ...process.argv.slice(2)].join(' '),
    quiet: o.quiet,
    log: (line) => process.stderr.write(line + '\n'),
    onProgress: o.quiet ? undefined : new ProgressPrinter().callback,
  });
  process.stdout.write(
    [
      `experiments: ${s.trained} explainer(s) trained, ${s.reused} found done, ${s.evaluated} evaluated, ${s.mapsComputed} exact maps computed; ${formatDuration(s.results.wallSeconds)}`,
      ...headline(s),
      `report: ${s.files.html} (also ${s.files.markdown}, ${s.files.json})`,
    ].join('\n') + '\n',
  );
  return s;
}

export function registerExperiments(program: Command): void {
  program
    .command('experiments')
    .description("the seed's four experiments (Exp. 1-4) on a stamp dataset, with an HTML/Markdown report; resumable")
    .requiredOption('--data <file>', 'labelled stamp dataset (.npz from occmap dataset, .npy/.npz arrays, HiTS 2013 pickle)')
    .requiredOption('--out <dir>', 'study directory (created; rerun with the same options to continue)')
    .option('--preset <name>', 'quick | paper', 'quick')
    .option('--classifier <dir>', 'use this classifier (from train-classifier) instead of training one')
    .option('--seed <n>', 'seed: selection, held-out objects, classifier and explainer training (Exp. 4 uses seed..seed+4)', '0')
    .option('--quiet', 'less progress output')
    .addHelpText('after', EXAMPLES)
    .action(async (o: ExperimentsCliOptions) => {
      await runExperimentsCli(o);
    });
}
