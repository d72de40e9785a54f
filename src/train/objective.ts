/**
 * What the training loop minimises: the losses (as Keras computes them), the accuracy count,
 * the optimisers, and the network the loss sees. Shared by the loop (src/train/loop.ts) and its
 * data-parallel replicas (src/train/replica.ts), so both compute exactly the same thing.
 */
import { tf, tfl } from '../runtime/tfjs.js';

type LayersModel = tfl.LayersModel;

export type LossName = 'sparse_categorical_crossentropy' | 'mse' | 'binary_crossentropy';
export type OptimizerName = 'adam' | 'adadelta';

const EPS = 1e-7; // Keras backend epsilon, used to clip probabilities in cross-entropies.

/**
 * Mean loss over the batch, the way Keras computes it for these outputs. `fromLogits`: `yPred`
 * holds the logits of a softmax output (sparse cross-entropy only).
 */
export function lossTensor(name: LossName, yTrue: tf.Tensor, yPred: tf.Tensor, fromLogits = false): tf.Scalar {
  return tf.tidy(() => {
    if (name === 'sparse_categorical_crossentropy' && fromLogits) {
      const k = yPred.shape[yPred.shape.length - 1]!;
      const oneHot = tf.oneHot(tf.cast(tf.reshape(yTrue, [-1]), 'int32') as tf.Tensor1D, k);
      return tf.neg(tf.mean(tf.sum(tf.mul(oneHot, tf.logSoftmax(tf.reshape(yPred, [-1, k]))), -1)));
    }
    if (name === 'sparse_categorical_crossentropy') {
      const k = yPred.shape[yPred.shape.length - 1]!;
      const oneHot = tf.oneHot(tf.cast(tf.reshape(yTrue, [-1]), 'int32') as tf.Tensor1D, k);
      const logp = tf.log(tf.clipByValue(tf.reshape(yPred, [-1, k]), EPS, 1 - EPS));
      return tf.neg(tf.mean(tf.sum(tf.mul(oneHot, logp), -1)));
    }
    if (name === 'mse') return tf.mean(tf.squaredDifference(yTrue, yPred));
    const p = tf.clipByValue(yPred, EPS, 1 - EPS);
    return tf.neg(tf.mean(tf.add(tf.mul(yTrue, tf.log(p)), tf.mul(tf.sub(1, yTrue), tf.log(tf.sub(1, p))))));
  }) as tf.Scalar;
}

export function correctCount(yTrue: tf.Tensor, yPred: tf.Tensor): tf.Scalar {
  return tf.tidy(() => {
    const k = yPred.shape[yPred.shape.length - 1]!;
    return tf.sum(tf.cast(tf.equal(tf.argMax(tf.reshape(yPred, [-1, k]), -1), tf.cast(tf.reshape(yTrue, [-1]), 'int32')), 'float32')) as tf.Scalar;
  });
}

export function makeOptimizer(name: OptimizerName, lr: number | undefined): tf.Optimizer {
  if (name === 'adadelta') return tf.train.adadelta(lr ?? 1.0, 0.95, 1e-7);
  return tf.train.adam(lr ?? 1e-3, 0.9, 0.999, 1e-7);
}

/**
 * The network the loss sees: for sparse cross-entropy on a model whose last layer is a softmax
 * Activation, the same layers up to the logits (shared weights; never dispose it).
 */
export function lossView(model: LayersModel, loss: LossName): { net: LayersModel; fromLogits: boolean } {
  const last = model.layers[model.layers.length - 1];
  if (
    loss === 'sparse_categorical_crossentropy' &&
    model.outputs.length === 1 &&
    last.getClassName() === 'Activation' &&
    last.getConfig().activation === 'softmax'
  ) {
    return { net: tfl.model({ inputs: model.inputs, outputs: last.input as tfl.SymbolicTensor }), fromLogits: true };
  }
  return { net: model, fromLogits: false };
}
