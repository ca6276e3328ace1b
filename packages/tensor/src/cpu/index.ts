// CPU reference implementations of every kernel (plain TS, float64 math), used by tests.
export * from './elementwise.js';
export * from './matmul.js';
export * from './conv2d.js';
export * from './layout.js';
export * from './embedding.js';
export * from './norm.js';
export * from './attention.js';
