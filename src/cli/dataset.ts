import type { Command } from 'commander';

/** `occmap dataset hits2015|simulate|import`: registered by the data builders. */
export function registerDataset(program: Command): void {
  program.command('dataset').description('build a stamp dataset (.npz): hits2015 | simulate');
}
