/**
 * Gradient kernels the tfjs wasm backend lacks or runs slowly. Placeholder: filled by the
 * kernels work (Conv2DBackpropFilter etc.).
 */
export function registerWasmGradKernels(): void {}
