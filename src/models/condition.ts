/**
 * How an explainer is told which class to draw the map for, pure (no tfjs), so the browser
 * bundle and the Node loaders share it with the model builders.
 */
export type Condition = 'none' | 'numeral' | 'onehot';

/** Label units in the bottleneck (the model's second input) for a conditioning mode. */
export function labelUnits(condition: Condition, numClasses: number): number {
  return condition === 'onehot' ? numClasses : condition === 'numeral' ? 1 : 0;
}
