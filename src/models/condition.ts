/**
 * How an explainer is told which class to draw the map for, pure (no tfjs), so the browser
 * bundle and the Node loaders share it with the model builders.
 */
export type Condition = 'none' | 'numeral' | 'onehot';

/** Class names from a card's `classes`, else 'class k' for each of the k classes. */
export function classNames(fromCard: unknown, k: number): string[] {
  return Array.isArray(fromCard) ? (fromCard as unknown[]).map(String) : Array.from({ length: k }, (_, i) => `class ${i}`);
}

/** Label units in the bottleneck (the model's second input) for a conditioning mode. */
export function labelUnits(condition: Condition, numClasses: number): number {
  return condition === 'onehot' ? numClasses : condition === 'numeral' ? 1 : 0;
}
