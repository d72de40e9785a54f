/**
 * Export a tfjs LayersModel (Sequential or functional, nested models inlined) to an ONNX model
 * that ONNX Runtime runs with the same numbers.
 *
 * Layout: Keras tensors are NHWC; ONNX's Conv/Pool/Resize are NCHW. Every rank-4 value is
 * carried in whichever layout its producer made, and converted with a Transpose only where a
 * consumer needs the other one (Conv wants NCHW; Flatten, Dense and Reshape need Keras's NHWC
 * element order, or Dense weights trained after a Flatten would read the wrong pixels). The
 * graph's inputs and outputs keep the tfjs shapes, so callers feed both engines the same arrays.
 *
 * This module walks the graph; each layer class is converted by its entry in the table of
 * onnx-export/layers.ts (LAYER_CONVERTERS).
 */
import { tfl } from '../runtime/tfjs.js';
import { fileError, UserError } from '../util/errors.js';
import { writeFileAtomic } from '../util/atomic.js';
import { META_LAYOUT, encodeOnnxModel, type OnnxModel, type OnnxValueInfo } from './onnx-proto.js';
import { Builder, pruneDead, type Layer, type Shape, type Val } from './onnx-export/graph.js';
import type { LayerCtx } from './onnx-export/context.js';
import { translateLayer } from './onnx-export/layers.js';

export { META_LAYOUT, META_SOURCE_HASH } from './onnx-proto.js';
export { permute, samePadding } from './onnx-export/graph.js';
export { LAYER_CONVERTERS, type LayerConverter } from './onnx-export/layers.js';

/** Opset 13: Softmax on one axis, Pad/Slice/Clip/Resize with tensor inputs; ORT 1.30 reads 7..23. */
export const ONNX_OPSET = 13;
/** IR version 8 (ONNX 1.10), well inside what onnxruntime-node 1.30 accepts. */
export const ONNX_IR_VERSION = 8;
export interface OnnxExportOptions {
  docString?: string;
  /** Extra metadata_props (e.g. { [META_SOURCE_HASH]: card.hash }). */
  metadata?: Record<string, string>;
}

/** The parts of tfjs's (unexported) Node and SymbolicTensor classes the walk needs. */
interface SymTensor {
  id: number;
  shape: Shape;
  sourceLayer: Layer;
  nodeIndex: number;
  tensorIndex: number;
}
interface TfNode {
  inputTensors: SymTensor[];
  outputTensors: SymTensor[];
}
interface Container {
  inputs: SymTensor[];
  outputs: SymTensor[];
}

// ---------------------------------------------------------------- graph walk

function isContainer(layer: Layer): boolean {
  return layer instanceof tfl.LayersModel;
}

class Exporter {
  readonly b = new Builder();

  /** Emit the graph for `t` in `scope` (symbolic tensor id -> value), memoised. */
  emit(t: SymTensor, scope: Map<number, Val>, prefix: string): Val {
    const known = scope.get(t.id);
    if (known) return known;
    const layer = t.sourceLayer;
    const cls = layer.getClassName();
    if (cls === 'InputLayer') throw new UserError(`model input ${layer.name} is not connected to the model's inputs`);
    const node = (layer as unknown as { inboundNodes: TfNode[] }).inboundNodes[t.nodeIndex];
    const inputs = node.inputTensors.map((it) => this.emit(it, scope, prefix));
    let outs: Val[];
    if (isContainer(layer)) {
      // A nested model: run its own graph with its inputs bound to this call's inputs.
      const inner = layer as unknown as Container;
      const innerScope = new Map<number, Val>();
      inner.inputs.forEach((it, i) => innerScope.set(it.id, inputs[i]));
      outs = inner.outputs.map((ot) => this.emit(ot, innerScope, `${prefix}${layer.name}/`));
    } else {
      const ctx: LayerCtx = {
        b: this.b,
        layer,
        cls,
        cfg: layer.getConfig() as Record<string, unknown>,
        outShapes: node.outputTensors.map((o) => o.shape),
        unsupported: (why: string): never => {
          throw new UserError(`cannot export layer '${prefix}${layer.name}' (${cls}) to ONNX: ${why}`);
        },
      };
      outs = translateLayer(ctx, inputs);
    }
    node.outputTensors.forEach((o, i) => scope.set(o.id, outs[i]));
    const v = scope.get(t.id);
    if (!v) throw new Error(`internal: layer ${layer.name} did not produce tensor ${t.id}`);
    return v;
  }
}

function dimsOf(shape: Shape, what: string): (number | string)[] {
  return shape.map((d, i) => (d === null ? (i === 0 ? 'N' : `${what}_d${i}`) : d));
}

export interface OnnxExportInfo {
  inputs: { name: string; shape: Shape }[];
  outputs: { name: string; shape: Shape }[];
  nodes: number;
  bytes: number;
}

/** The ONNX encoding of `model` (NHWC inputs and outputs, batch dimension 'N'). */
export function modelToOnnx(model: InstanceType<typeof tfl.LayersModel>, opts: OnnxExportOptions = {}): { bytes: Uint8Array; info: OnnxExportInfo } {
  const ex = new Exporter();
  const b = ex.b;
  const container = model as unknown as Container;
  const scope = new Map<number, Val>();
  const graphInputs: OnnxValueInfo[] = [];
  const inputsInfo: OnnxExportInfo['inputs'] = [];
  for (const t of container.inputs) {
    const name = t.sourceLayer.name;
    b.reserve(name);
    scope.set(t.id, { name, shape: t.shape, nchw: false });
    graphInputs.push({ name, shape: dimsOf(t.shape, name) });
    inputsInfo.push({ name, shape: t.shape });
  }
  const outNames = container.outputs.map((t) => t.sourceLayer.name);
  outNames.forEach((n) => b.reserve(n));
  const graphOutputs: OnnxValueInfo[] = [];
  const outputsInfo: OnnxExportInfo['outputs'] = [];
  container.outputs.forEach((t, i) => {
    const v = ex.emit(t, scope, '');
    // outputs stay in tfjs's layout (NHWC) so both engines return the same arrays
    b.op('Identity', [b.keras(v)], outNames[i], {}, outNames[i]);
    graphOutputs.push({ name: outNames[i], shape: dimsOf(t.shape, outNames[i]) });
    outputsInfo.push({ name: outNames[i], shape: t.shape });
  });
  const onnx: OnnxModel = {
    irVersion: ONNX_IR_VERSION,
    opsetVersion: ONNX_OPSET,
    producerName: 'occmap',
    producerVersion: `tfjs-layers ${tfl.version_layers}`,
    docString: opts.docString,
    graph: {
      name: model.name,
      ...pruneDead(b.nodes, b.initializers, outNames),
      inputs: graphInputs,
      outputs: graphOutputs,
    },
    metadata: { ...opts.metadata, [META_LAYOUT]: 'NHWC' },
  };
  const bytes = encodeOnnxModel(onnx);
  return { bytes, info: { inputs: inputsInfo, outputs: outputsInfo, nodes: b.nodes.length, bytes: bytes.length } };
}

/** Export `model` to `outFile` (written whole or not at all). Unsupported layers: a UserError naming the file. */
export async function exportModelToOnnx(model: InstanceType<typeof tfl.LayersModel>, outFile: string, opts: OnnxExportOptions = {}): Promise<OnnxExportInfo> {
  let result: ReturnType<typeof modelToOnnx>;
  try {
    result = modelToOnnx(model, opts);
  } catch (err) {
    if (err instanceof UserError) throw fileError(outFile, err.message);
    throw err;
  }
  await writeFileAtomic(outFile, result.bytes);
  return result.info;
}
