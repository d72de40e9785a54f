/**
 * Dropout masks that do not depend on how a batch is split between data-parallel replicas.
 *
 * tfjs' Dropout draws its mask for the tensor it is given: seeded, but a replica holding items
 * 32..63 of a 64-item batch would draw the mask of a 32-item batch, not rows 32..63 of the
 * 64-item mask. While training, the loop swaps each Dropout layer's `call` for one that draws
 * the mask of the whole step's batch (same seed, same op sequence as tf.dropout) and keeps the
 * rows of this replica's shard. With one replica (offset 0, total = batch) the mask equals
 * tf.dropout's exactly, so single-worker training is unchanged; with several, every item sees
 * the mask it would have seen in single-worker training. Masks are over a Dense layer's units
 * in our models, so drawing the whole batch's mask costs nothing measurable.
 */
import { tf, tfl } from '../runtime/tfjs.js';

/** Rows `[offset, offset + n)` of a step's batch of `total` items are in this replica's shard. */
export interface ShardWindow {
  offset: number;
  total: number;
}

interface DropoutLike {
  rate: number;
  seed?: number;
  noiseShape?: unknown;
  call: (inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>) => tf.Tensor | tf.Tensor[];
}

export function dropoutLayers(model: tfl.LayersModel): DropoutLike[] {
  return model.layers.filter((l) => l.getClassName() === 'Dropout') as unknown as DropoutLike[];
}

/**
 * Install the shard-aware call on every Dropout layer of `model`; `window` is read at every
 * call, so the loop updates it per step. Returns the function that restores the originals.
 */
export function installShardDropout(model: tfl.LayersModel, window: ShardWindow): () => void {
  const layers = dropoutLayers(model);
  for (const layer of layers) {
    if (layer.noiseShape != null) throw new Error('data-parallel training does not support Dropout with a noiseShape');
    layer.call = (inputs, kwargs) =>
      tf.tidy(() => {
        const x = Array.isArray(inputs) ? inputs[0] : inputs;
        const rate = layer.rate;
        if (!kwargs['training'] || !(rate > 0 && rate < 1)) return x;
        const keep = 1 - rate;
        const rest = x.shape.slice(1);
        const u = tf.randomUniform([window.total, ...rest], 0, 1, 'float32', layer.seed);
        const rows = window.offset === 0 && x.shape[0] === window.total ? u : tf.slice(u, window.offset, x.shape[0]);
        return tf.mul(x, tf.div(tf.floor(tf.add(rows, keep)), keep));
      });
  }
  return () => {
    for (const layer of layers) delete (layer as Partial<DropoutLike>).call;
  };
}
