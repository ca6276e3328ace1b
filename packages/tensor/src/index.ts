export * from './dtype';
export * from './io';
export * from './pool';
export * from './device';
export * from './tensor';
export * from './safetensors/format';
export * from './safetensors/read';
export * from './safetensors/write';
export * as cpu from './cpu/index';
