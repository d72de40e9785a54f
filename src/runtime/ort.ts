/**
 * Which ONNX Runtime occmap runs on in Node: the native onnxruntime-node when it is installed,
 * else onnxruntime-web's wasm build, with a one-line note saying how to get the native one.
 *
 * Why a fallback: onnxruntime-node's postinstall downloads CUDA libraries from outside the npm
 * registry, so on a registry-only machine `npm install occmap` would abort there. occmap lists
 * onnxruntime-node as an optional dependency (npm then drops it when its script fails, and the
 * install goes on) and onnxruntime-web as a regular one. Both implement onnxruntime-common's
 * API, so sessions and tensors are used the same way; only speed differs.
 */
import type * as Ort from 'onnxruntime-common';

export interface OrtModule {
  InferenceSession: typeof Ort.InferenceSession;
  Tensor: typeof Ort.Tensor;
  env: Ort.Env;
}

export type OrtName = 'onnxruntime-node' | 'onnxruntime-web';

let loading: Promise<{ ort: OrtModule; name: OrtName }> | undefined;
let loaded: { ort: OrtModule; name: OrtName } | undefined;

export const NATIVE_INSTALL_HINT = 'ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node';

async function load(): Promise<{ ort: OrtModule; name: OrtName }> {
  const forced = process.env.OCCMAP_ORT;
  if (forced !== 'web') {
    try {
      return { ort: (await import('onnxruntime-node')) as unknown as OrtModule, name: 'onnxruntime-node' };
    } catch (err) {
      if (forced === 'node') throw err;
      process.stderr.write(
        `occmap: note: onnxruntime-node is not installed (${String((err as Error)?.message ?? err).split('\n')[0]}); running ONNX models on onnxruntime-web (wasm, several times slower). For the native runtime: ${NATIVE_INSTALL_HINT}\n`,
      );
    }
  }
  return { ort: (await import('onnxruntime-web')) as unknown as OrtModule, name: 'onnxruntime-web' };
}

/** The ONNX Runtime module, loaded once (OCCMAP_ORT=web|node forces one, for tests). */
export async function loadOrt(): Promise<OrtModule> {
  loading ??= load().then((r) => (loaded = r));
  return (await loading).ort;
}

/** The module after loadOrt() resolved (every session is created through it first). */
export function ortLoaded(): OrtModule {
  if (!loaded) throw new Error('ONNX Runtime used before loadOrt()');
  return loaded.ort;
}

/** 'onnxruntime' (native) or 'onnxruntime-web (wasm)', for engine names in reports. */
export function ortEngineName(): string {
  return loaded?.name === 'onnxruntime-web' ? 'onnxruntime-web (wasm)' : 'onnxruntime';
}
