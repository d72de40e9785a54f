/**
 * `npm run pretrain`: how the shipped models in models/ were made, as one resumable command.
 * Each step is an occmap CLI command (this script is a client of the CLI, like a Makefile);
 * a step whose output exists is skipped, and the exact-map step resumes from its shards, so a
 * killed run continues where it stopped. The last step installs the classifier, the explainer
 * and a sample of held-out stamps with their exact maps into the repository.
 *
 *   node dist/scripts/pretrain.js [--work DIR] [--until STEP] [--install] [--ensemble K]
 *
 * --install copies the models and a sample of held-out stamps into models/hits2015/ with a
 * model card (scripts/pretrain-install.ts).
 *
 * Hours of CPU on a 2-core machine (exact maps for ~21,700 stamps, then the explainer
 * trainings); see docs/pretrained.md for the figures of the shipped run.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { installPretrained } from './pretrain-install.js';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const bin = path.join(root, 'bin', 'occmap.js');

interface Step {
  name: string;
  /** Done when this exists. */
  output: string;
  args: string[];
}

function argValue(flag: string, fallback: string): string {
  const i = process.argv.indexOf(flag);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

export function steps(work: string, ensemble: number): Step[] {
  const w = (f: string) => path.join(work, f);
  const list: Step[] = [
    {
      name: 'dataset',
      output: w('hits-scale.npz'),
      // Every kept epoch; the rare supernova stamps x8 (rotations and flips, same object ids).
      args: ['dataset', 'hits2015', '--out', w('hits-scale.npz'), '--balance', 'none', '--augment', 'dihedral', '--augment-labels', 'supernova'],
    },
    {
      name: 'classifier',
      output: w('classifier'),
      args: ['train-classifier', '--data', w('hits-scale.npz'), '--out', w('classifier'), '--seed', '0', '--checkpoint', w('classifier-ck')],
    },
    {
      name: 'maps',
      output: w('maps.npz'),
      args: ['occlude', '--model', w('classifier'), '--data', w('hits-scale.npz'), '--out', w('maps.npz'), '--resume'],
    },
    {
      name: 'explainer',
      output: w('explainer'),
      // Held out: exactly the classifier's validation objects (and their augmented copies).
      args: [
        'train-explainer', '--data', w('maps.npz'), '--classifier', w('classifier'), '--holdout-from', w('classifier'),
        '--variant', 'unet', '--condition', 'onehot', '--target-units', 'log-rest',
        ...(ensemble > 1 ? ['--ensemble', String(ensemble), '--no-bootstrap'] : []),
        // an hour or more of training: a killed run resumes from its last epoch
        '--checkpoint', w('explainer-ck'),
        '--out', w('explainer'),
      ],
    },
    {
      name: 'evaluate',
      output: w('evaluation.json'),
      args: ['evaluate', '--explainer', w('explainer'), '--data', w('maps.npz'), '--out', w('evaluation.json')],
    },
  ];
  return list;
}

async function main(): Promise<void> {
  const work = path.resolve(argValue('--work', path.join(root, '.pretrain')));
  const until = argValue('--until', '');
  const ensemble = Number(argValue('--ensemble', '1'));
  const list = steps(work, ensemble);
  mkdirSync(work, { recursive: true });
  for (const s of list) {
    if (existsSync(s.output)) {
      process.stderr.write(`pretrain: ${s.name}: ${s.output} exists, skipped\n`);
    } else {
      process.stderr.write(`pretrain: ${s.name}: occmap ${s.args.join(' ')}\n`);
      const r = spawnSync(process.execPath, [bin, ...s.args], { stdio: 'inherit' });
      if (r.status !== 0) {
        process.stderr.write(`pretrain: step ${s.name} failed (exit ${r.status ?? r.signal}); rerun to continue\n`);
        process.exit(r.status ?? 1);
      }
    }
    if (s.name === until) return;
  }
  if (process.argv.includes('--install')) {
    const out = path.join(root, 'models', 'hits2015');
    const notes = process.argv.includes('--note') ? [argValue('--note', '')] : [];
    await installPretrained({ work, out, notes, command: 'npm run pretrain -- --install', log: (m) => process.stderr.write(`pretrain: ${m}\n`) });
    process.stderr.write(`pretrain: installed into ${out}\n`);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  main().catch((e: unknown) => {
    process.stderr.write(`pretrain: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
