import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { flagOf, OptionError, UserError } from '../util/errors.js';
import { registerDataset } from './dataset.js';
import { registerEvaluate } from './evaluate.js';
import { registerBench } from './bench.js';
import { registerOcclude } from './occlude.js';
import { registerWorker } from './worker.js';
import { registerTrainClassifier } from './train-classifier.js';
import { registerTrainExplainer } from './train-explainer.js';
import { registerExplain } from './explain.js';
import { registerServe } from './serve.js';
import { registerExportWeb } from './export-web.js';
import { registerExperiments } from './experiments.js';
import { registerDemo } from './demo.js';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8'));

export function buildProgram(): Command {
  const program = new Command('occmap')
    .description('Occlusion maps for image classifiers: exact (one inference per patch position) and amortized (one inference per map).')
    .version(pkg.version)
    .showHelpAfterError()
    .exitOverride();
  registerDataset(program);
  registerEvaluate(program);
  registerBench(program);
  registerOcclude(program);
  registerWorker(program);
  registerTrainClassifier(program);
  registerTrainExplainer(program);
  registerExplain(program);
  registerServe(program);
  registerExportWeb(program);
  registerExperiments(program);
  registerDemo(program);
  return program;
}

/**
 * A reader that stops early (`occmap x --help | head`) closes the pipe: that is not an error of
 * ours, so stop quietly instead of dying on an unhandled EPIPE with a stack trace.
 */
export function exitQuietlyOnClosedPipe(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw err;
    });
  }
}

export async function main(argv: string[]): Promise<void> {
  exitQuietlyOnClosedPipe();
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode;
      return;
    }
    if (err instanceof UserError) {
      // Library errors name option fields (templateEpochs); the CLI says the flag (--template-epochs).
      const message = err instanceof OptionError ? err.worded(flagOf) : err.message;
      process.stderr.write(`occmap: ${message}\n`);
      process.exitCode = 2;
      return;
    }
    throw err;
  }
}
