/**
 * The one place that chooses the TensorFlow.js backend. Order: tfjs-node (or -gpu) when the
 * user has installed it (never required: its install script downloads libtensorflow, which
 * these machines cannot), else the wasm backend with occmap's own gradient kernels
 * registered, else the plain-JS cpu backend. Everything else imports tf from here.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';

export { tf, tfl };

export type BackendChoice = 'auto' | 'node' | 'wasm' | 'cpu';

let initialised: string | null = null;

async function tryNode(): Promise<boolean> {
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      await import(pkg);
      if (tf.findBackend('tensorflow')) {
        await tf.setBackend('tensorflow');
        return true;
      }
    } catch {
      // not installed or not loadable on this machine: fall through.
    }
  }
  return false;
}

/**
 * Initialise once and return the backend name. `OCCMAP_BACKEND` overrides `auto`.
 */
export async function initTf(choice: BackendChoice = 'auto'): Promise<string> {
  const wanted = choice === 'auto' ? ((process.env.OCCMAP_BACKEND as BackendChoice | undefined) ?? 'auto') : choice;
  if (initialised && (wanted === 'auto' || wanted === initialised || (wanted === 'node' && initialised === 'tensorflow'))) {
    return initialised;
  }
  if ((wanted === 'auto' || wanted === 'node') && (await tryNode())) {
    initialised = 'tensorflow';
  } else if (wanted === 'auto' || wanted === 'wasm') {
    const { registerWasmGradKernels } = await import('./wasm-kernels.js');
    registerWasmGradKernels();
    await tf.setBackend('wasm');
    initialised = 'wasm';
  } else {
    await tf.setBackend('cpu');
    initialised = 'cpu';
  }
  await tf.ready();
  return initialised;
}

/** A one-line description for progress output: which backend trains or predicts. */
export function backendDescription(): string {
  const b = tf.getBackend();
  if (b === 'wasm') return 'tfjs wasm backend (SIMD, 1 thread) with occmap gradient kernels';
  if (b === 'tensorflow') return 'tfjs-node (libtensorflow)';
  return `tfjs ${b} backend`;
}
