/**
 * Keras activations (by their serialised names) as ONNX nodes: a table, one small builder per
 * activation; softmax and log-softmax run over Keras axis -1.
 */
import type { AttributeValue } from '../onnx-proto.js';
import { float, int, type Builder, type Val } from './graph.js';
import { like, onnxAxis } from './context.js';

interface ActArgs {
  b: Builder;
  v: Val;
  /** The name of the input value (v.name). */
  x: string;
  /** Base name of the nodes this activation adds (`<layer>_<activation>`). */
  base: string;
  /** One unary node on v. */
  one(op: string, attrs?: Record<string, AttributeValue>): Val;
}

type ActivationBuilder = (a: ActArgs) => Val;

const gelu: ActivationBuilder = ({ b, v, x, base }) => {
  // 0.5 x (1 + erf(x / sqrt 2)), as tfjs-layers computes it
  const n = `${base}_gelu`;
  const e = b.op('Erf', [b.op('Div', [x, b.scalar(Math.SQRT2)], n)], n);
  const cdf = b.op('Mul', [b.scalar(0.5), b.op('Add', [b.scalar(1), e], n)], n);
  return like(v, b.op('Mul', [x, cdf], n));
};

const geluNew: ActivationBuilder = ({ b, v, x, base }) => {
  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  const n = `${base}_gelu`;
  const x3 = b.op('Mul', [x, b.op('Mul', [x, x], n)], n);
  const inner = b.op('Add', [x, b.op('Mul', [b.scalar(0.044715), x3], n)], n);
  const t = b.op('Tanh', [b.op('Mul', [b.scalar(Math.sqrt(2 / Math.PI)), inner], n)], n);
  const half = b.op('Mul', [b.scalar(0.5), x], n);
  return like(v, b.op('Mul', [half, b.op('Add', [b.scalar(1), t], n)], n));
};

const hardSigmoid: ActivationBuilder = ({ one }) => one('HardSigmoid', { alpha: float(0.2), beta: float(0.5) });
const logSoftmax: ActivationBuilder = ({ one, v }) => one('LogSoftmax', { axis: int(onnxAxis(v, -1)) });

export const ACTIVATIONS: Readonly<Record<string, ActivationBuilder>> = {
  linear: ({ v }) => v,
  relu: ({ one }) => one('Relu'),
  relu6: ({ b, v, x, base }) => like(v, b.op('Clip', [x, b.scalar(0), b.scalar(6)], `${base}_relu6`)),
  elu: ({ one }) => one('Elu', { alpha: float(1) }),
  selu: ({ one }) => one('Selu'),
  sigmoid: ({ one }) => one('Sigmoid'),
  hardSigmoid,
  hard_sigmoid: hardSigmoid,
  softplus: ({ one }) => one('Softplus'),
  softsign: ({ one }) => one('Softsign'),
  tanh: ({ one }) => one('Tanh'),
  softmax: ({ one, v }) => one('Softmax', { axis: int(onnxAxis(v, -1)) }),
  logSoftmax,
  log_softmax: logSoftmax,
  swish: ({ b, v, x, base }) => like(v, b.op('Mul', [b.op('Sigmoid', [x], `${base}_swish`), x], `${base}_swish`)),
  mish: ({ b, v, x, base }) => {
    const t = b.op('Tanh', [b.op('Softplus', [x], `${base}_mish`)], `${base}_mish`);
    return like(v, b.op('Mul', [x, t], `${base}_mish`));
  },
  gelu,
  gelu_new: geluNew,
};

/** Apply a Keras activation (by its serialised name) to `v`. */
export function activation(b: Builder, v: Val, act: string, base: string, unsupported: (why: string) => never): Val {
  const build = Object.hasOwn(ACTIVATIONS, act) ? ACTIVATIONS[act] : undefined;
  if (!build) unsupported(`activation '${act}'`);
  const x = v.name;
  const one = (op: string, attrs: Record<string, AttributeValue> = {}): Val => like(v, b.op(op, [x], `${base}_${act}`, attrs));
  return build({ b, v, x, base, one });
}

/** The activation name of a layer config (a string, absent = linear, or a serialised {className}). */
export function activationName(cfg: Record<string, unknown>): string {
  const a = cfg.activation;
  if (a === undefined || a === null) return 'linear';
  if (typeof a === 'string') return a;
  const cn = (a as { className?: string; class_name?: string }).className ?? (a as { class_name?: string }).class_name;
  return typeof cn === 'string' ? cn : JSON.stringify(a);
}
